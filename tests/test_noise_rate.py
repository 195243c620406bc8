"""The count from losses: the log-odds count's pure functions, and the detectors' count, flags and
read-outs on a real network's losses (the digits example's MLP) and on constructed ones. The
count from probabilities, the interval and the verdict: ``test_noise_count.py``."""

import json
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from lnc_experiments.digits import digits_training_losses
from lnc_sklearn import BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector, noise_report, noise_summary
from lnc_sklearn.noise_count import count_noise
from lnc_sklearn.noise_rate import (
    count_threshold,
    estimate_noise_rate,
    fit_gaussian_mixture_1d,
    label_log_odds,
    separation,
    shift_to_mean,
)
from lnc_sklearn.persistence import detector_from_dict, detector_to_dict


@pytest.fixture(scope="module")
def digits_runs():
    """The digits example's MLP (20 epochs) at 0, 5, 10 and 20% noise: losses and true mask."""
    return {rate: digits_training_losses(rate, 20)[0::3] for rate in (0.0, 0.05, 0.1, 0.2)}


def _loss_from_log_odds(v):
    return np.log1p(np.exp(-v))


def _f1(flags, mask):
    return 2 * np.sum(flags & mask) / (flags.sum() + mask.sum())


# -- the pure functions ---------------------------------------------------------------------
def test_log_odds_of_a_loss_and_of_its_confidence_agree():
    losses = np.array([1e-6, 0.1, np.log(2.0), 3.0, 30.0])
    from_loss = label_log_odds(losses, "loss")
    np.testing.assert_allclose(from_loss, label_log_odds(np.exp(-losses), "confidence"), rtol=1e-9)
    np.testing.assert_allclose(_loss_from_log_odds(from_loss), losses, rtol=1e-9)
    assert from_loss[2] == pytest.approx(0.0, abs=1e-12)  # p = 1/2


def test_em_recovers_a_known_mixture_from_binned_counts():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(-4, 1, 2000), rng.normal(3, 1.5, 8000)]
    counts, edges = np.histogram(x, bins=512)
    weights, means, variances, _ = fit_gaussian_mixture_1d(0.5 * (edges[1:] + edges[:-1]), 2, counts=counts)
    np.testing.assert_allclose(weights, [0.2, 0.8], atol=0.01)
    np.testing.assert_allclose(means, [-4, 3], atol=0.1)
    np.testing.assert_allclose(np.sqrt(variances), [1, 1.5], atol=0.1)
    assert separation(weights, means, variances, np.array([True, False])) == pytest.approx(
        np.sqrt(2) * 7 / np.sqrt(1 + 1.5**2), rel=0.05
    )


def test_shift_to_mean_and_count_threshold():
    z = np.random.default_rng(0).normal(0, 3, 10_000)
    for target in (1e-5, 0.05, 0.5, 0.9):
        assert expit(z + shift_to_mean(z, target)).mean() == pytest.approx(target, rel=1e-4)
    assert shift_to_mean(z, 0.0) == -np.inf
    values = np.arange(10.0)
    assert count_threshold(values, 0.3) == 7.0 and (values >= 7.0).sum() == 3
    assert count_threshold(values, 0.3, "confidence") == 2.0 and (values <= 2.0).sum() == 3
    assert count_threshold(values, 0.04) == np.inf


@pytest.mark.parametrize(
    "clean_log_odds",
    [
        lambda rng: 4 + 1.5 * rng.standard_t(3, 20_000),  # symmetric, heavy both ways
        lambda rng: 3 + 2 * rng.standard_t(2, 20_000),  # 13% of the clean labels below even odds
        lambda rng: 5 - rng.gumbel(0, 2, 20_000),  # a long tail towards the noisy end only
    ],
    ids=["t3", "t2", "gumbel"],
)
def test_a_heavy_clean_tail_is_not_counted_as_noise(clean_log_odds):
    v = clean_log_odds(np.random.default_rng(0))
    assert (v < 0).mean() > 0.03  # many clean labels the network disbelieves
    estimate = estimate_noise_rate(_loss_from_log_odds(v))
    assert estimate["rate"] == 0.0 and estimate["separation"] < 2.5


def test_a_separate_group_of_disbelieved_labels_is_counted():
    rng = np.random.default_rng(1)
    clean = _loss_from_log_odds(rng.normal(6, 2, 18_000))
    wrong = _loss_from_log_odds(rng.normal(-4, 1.2, 2_000))
    estimate = estimate_noise_rate(np.r_[clean, wrong])
    assert estimate["rate"] == pytest.approx(0.1, abs=0.01) and estimate["separation"] > 4


def test_values_that_are_not_cross_entropy_are_refused_by_the_estimate():
    with pytest.raises(ValueError, match="cross-entropy losses >= 0"):
        estimate_noise_rate(np.array([-1.0, 0.5, 2.0]))
    with pytest.raises(ValueError, match="confidences in \\[0, 1\\]"):
        estimate_noise_rate(np.array([0.2, 1.5]), "confidence")


# -- the detectors, on a real network's losses ----------------------------------------------
def test_clean_digits_count_no_noise_but_cannot_rule_it_out(digits_runs):
    losses, mask = digits_runs[0.0]
    assert not mask.any() and (np.exp(-losses) < 0.5).mean() > 0.1  # a long clean tail
    for detector in (BetaMixtureNoiseDetector(), GaussianMixtureNoiseDetector(random_state=0)):
        detector.fit(losses)
        count = detector.noise_count_
        assert detector.noise_rate_ == 0.0 and count.separation < detector.min_separation
        assert count.source == "log-odds count" and detector.predict(losses).sum() == 0
        # over a tenth of the labels are disbelieved: the interval reaches that far, and without
        # positive evidence the verdict is not "little or no noise"
        assert count.interval[0] == 0.0 and count.interval[1] > 0.1 and count.verdict == "cannot tell"
        p = detector.predict_proba(losses)[:, 1]
        assert p.mean() == pytest.approx(0.1 / losses.size, rel=1e-3)  # no noise counted, ranking kept
        order = np.argsort(losses)
        assert np.all(np.diff(p[order]) >= 0)
    # the mixture's own rate, the default before the count, calls a quarter of these clean digits noisy
    assert BetaMixtureNoiseDetector(rate_estimate="mixture").fit(losses).noise_rate_ > 0.2


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.2])
def test_digits_low_noise_count_and_flags(digits_runs, rate):
    losses, mask = digits_runs[rate]
    detector = BetaMixtureNoiseDetector().fit(losses)
    assert abs(detector.noise_rate_ - mask.mean()) <= 0.03
    flags = detector.predict(losses).astype(bool)
    assert flags.sum() == round(detector.noise_rate_ * losses.size)
    assert losses[flags].min() > losses[~flags].max()  # the highest losses
    assert detector.noise_count_.verdict == "noise" and detector.noise_count_.interval[0] <= detector.noise_rate_
    top_k = np.zeros_like(mask)
    top_k[np.argsort(-losses)[: mask.sum()]] = True
    assert _f1(flags, mask) >= _f1(top_k, mask) - 0.05
    p = detector.predict_proba(losses)[:, 1]
    assert p.mean() == pytest.approx(detector.noise_rate_, abs=1e-4)
    # one constant added to the mixture's log-odds: the same order as the mixture's posterior
    mixture = BetaMixtureNoiseDetector(rate_estimate="mixture").fit(losses).predict_proba(losses)[:, 1]
    order = np.argsort(mixture, kind="stable")
    assert np.all(np.diff(p[order]) >= -1e-15)
    # the Gaussian baseline gets the same count
    gaussian = GaussianMixtureNoiseDetector(random_state=0).fit(losses)
    assert gaussian.noise_rate_ == detector.noise_rate_
    np.testing.assert_array_equal(gaussian.predict(losses), detector.predict(losses))


def test_confidences_give_the_same_count(digits_runs):
    losses, _ = digits_runs[0.1]
    from_loss = BetaMixtureNoiseDetector().fit(losses)
    from_confidence = BetaMixtureNoiseDetector(input_type="confidence").fit(np.exp(-losses))
    assert from_confidence.noise_rate_ == pytest.approx(from_loss.noise_rate_, abs=1e-3)
    np.testing.assert_array_equal(from_confidence.predict(np.exp(-losses)), from_loss.predict(losses))


def test_the_paper_configuration_is_the_plain_mixture(digits_runs):
    losses, _ = digits_runs[0.1]
    paper = BetaMixtureNoiseDetector(max_iter=10, tol=0, anchored=False, rate_estimate="mixture").fit(losses)
    assert paper.noise_count_ is None and paper.noise_rate_interval_ is None
    p = paper.predict_proba(losses)[:, 1]
    assert paper.noise_rate_ == pytest.approx(p.mean(), rel=1e-12)  # from the fit's own sums, no extra pass
    np.testing.assert_array_equal(paper.predict(losses), (p > 0.5).astype(int))
    raw = paper.set_params(monotone=False).predict_proba(losses)[:, 1]
    x = paper.to_unit_interval(losses)
    log_prob = [np.log(w) + (a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - __import__("scipy").special.betaln(a, b)
                for a, b, w in zip(paper.alphas_, paper.betas_, paper.weights_)]
    np.testing.assert_allclose(raw, expit(log_prob[1] - log_prob[0]), rtol=1e-10)


def test_values_that_are_not_cross_entropy_fall_back_to_the_mixture_with_a_warning():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(-1, 0.3, 800), rng.normal(2, 0.4, 200)]
    with pytest.warns(UserWarning, match="needs cross-entropy losses"):
        detector = BetaMixtureNoiseDetector().fit(values)
    assert detector.noise_count_ is None and detector.rate_estimate == "count"
    np.testing.assert_array_equal(detector.predict(values), detector.predict_proba(values)[:, 1] > 0.5)


def test_saved_and_pickled_detectors_keep_their_count(digits_runs):
    losses, _ = digits_runs[0.05]
    for fitted in (BetaMixtureNoiseDetector().fit(losses), BetaMixtureNoiseDetector().fit(digits_runs[0.0][0])):
        copy = detector_from_dict(json.loads(json.dumps(detector_to_dict(fitted))))
        assert copy.noise_rate_ == fitted.noise_rate_ and copy.noise_count_.reason == fitted.noise_count_.reason
        np.testing.assert_array_equal(copy.predict(losses), fitted.predict(losses))
        np.testing.assert_array_equal(copy.predict_proba(losses), fitted.predict_proba(losses))
        again = pickle.loads(pickle.dumps(fitted))
        np.testing.assert_array_equal(again.predict(losses), fitted.predict(losses))


# -- what users read ------------------------------------------------------------------------
def test_summary_gives_the_count_its_interval_and_verdict(digits_runs):
    clean = noise_summary(noise_report(digits_runs[0.0][0]))
    assert clean.noise_fraction == 0.0 and clean.n_flagged == 0
    assert "cannot tell whether there is label noise" in str(clean) and "90% interval" in str(clean)
    losses, mask = digits_runs[0.1]
    summary = noise_summary(noise_report(losses, noise_mask=mask))
    assert summary.noise_fraction == BetaMixtureNoiseDetector().fit(losses).noise_rate_
    assert summary.n_flagged == round(summary.noise_fraction * losses.size)
    assert "label noise found" in str(summary) and "[log-odds count]" in str(summary)


def test_cli_reports_the_count(tmp_path, digits_runs):
    path = tmp_path / "losses.csv"
    pd.DataFrame({"loss": digits_runs[0.0][0]}).to_csv(path, index=False)
    out = subprocess.run([sys.executable, "-m", "lnc_sklearn.cli", str(path), "--top", "3"],
                         capture_output=True, text=True, check=True).stdout
    assert "estimated noise fraction 0.000, 90% interval [0.000," in out and "0 flagged" in out
    assert "cannot tell whether there is label noise" in out
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN warnings on clean data
        noise_summary(noise_report(digits_runs[0.0][0]))


# -- per label, and where the losses cannot count -------------------------------------------
def _two_classes(seed=0):
    """A confident class (8,000 samples) and a harder one (1,800 clean samples) into which 200
    wrong labels were flipped (class-conditional noise): 2% wrong overall, 10% of class 1."""
    rng = np.random.default_rng(seed)
    log_odds = np.r_[rng.normal(9, 3, 8000), rng.normal(1.5, 1.0, 1800), rng.normal(-1.5, 0.6, 200)]
    labels = np.r_[np.zeros(8000, int), np.ones(2000, int)]
    mask = np.r_[np.zeros(9800, bool), np.ones(200, bool)]
    return _loss_from_log_odds(log_odds), labels, mask


def test_given_labels_the_count_finds_noise_flipped_into_one_class():
    losses, labels, mask = _two_classes()
    assert BetaMixtureNoiseDetector().fit(losses).noise_rate_ == 0.0  # hidden among all samples
    detector = BetaMixtureNoiseDetector().fit(losses, labels)
    assert detector.noise_rate_ == pytest.approx(0.02, abs=0.005) and detector.noise_count_.source == "log-odds count"
    np.testing.assert_array_equal(detector.classes_, [0, 1])
    rates = detector.noise_count_.class_rates
    assert rates[0] == 0.0 and rates[1] == pytest.approx(0.1, abs=0.02)
    flags = detector.predict(losses, labels).astype(bool)
    assert not flags[labels == 0].any()  # each label's own count and threshold
    assert flags.sum() == round(rates[1] * 2000)
    assert _f1(flags, mask) > 0.85
    p = detector.predict_proba(losses, labels)[:, 1]
    assert p.mean() == pytest.approx(detector.noise_rate_, abs=1e-4)  # one shift: the loss's order
    assert np.all(np.diff(p[np.argsort(losses)]) >= 0)
    # without labels at read-out: the overall threshold at the overall count
    assert detector.predict(losses).sum() == round(detector.noise_rate_ * losses.size)
    # labels never seen at fit are read with the overall threshold
    assert detector.predict(losses[:3], [7, 7, 7]).tolist() == detector.predict(losses[:3]).tolist()
    # the report and the summary count per label when given the labels
    report = noise_report(losses, labels=labels)
    assert report["is_noisy"].sum() == flags.sum() and not report.loc[labels == 0, "is_noisy"].any()
    assert noise_summary(report).noise_fraction == detector.noise_rate_
    with pytest.raises(ValueError, match="y \\(the given labels\\)"):
        BetaMixtureNoiseDetector().fit(losses, labels[:-1])


def test_string_labels_and_small_classes(tmp_path):
    losses, labels, _ = _two_classes()
    names = np.where(labels == 0, "cat", "dog").astype(object)
    names[:30] = "rare"  # fewer than 200 samples: counted with the other small labels
    detector = BetaMixtureNoiseDetector().fit(losses, pd.Series(names))
    np.testing.assert_array_equal(detector.classes_, ["cat", "dog", "rare"])
    rates = detector.noise_count_.class_rates
    assert rates.size == 3 and rates[0] == 0.0 and rates[1] == pytest.approx(0.1, abs=0.02)
    copy = detector_from_dict(json.loads(json.dumps(detector_to_dict(detector))))
    np.testing.assert_array_equal(copy.predict(losses, names), detector.predict(losses, names))


def test_where_the_network_disbelieves_most_labels_the_count_is_the_mixtures():
    # Heavy noise early in training: the network gives nearly every label the same low odds, no
    # group stands apart, and a count of 0 would mean nothing: the mixture's rate is used.
    rng = np.random.default_rng(0)
    losses = np.log(10) + rng.normal(0, 0.05, 5000) ** 2
    detector = BetaMixtureNoiseDetector().fit(losses)
    mixture = BetaMixtureNoiseDetector(rate_estimate="mixture").fit(losses)
    count = detector.noise_count_
    assert count.source == "mixture" and count.most_disbelieved
    assert detector.noise_rate_ == pytest.approx(mixture.noise_rate_)
    assert count.verdict == "cannot tell" and count.interval[1] == 1.0  # every label is disbelieved
    assert detector.predict(losses).sum() == round(detector.noise_rate_ * losses.size)
    # where it does count, nothing came from the mixture
    clean = BetaMixtureNoiseDetector().fit(_loss_from_log_odds(rng.normal(5, 2, 5000)))
    assert clean.noise_count_.source == "log-odds count" and clean.noise_rate_ == 0.0


def test_a_hard_clean_class_is_not_read_as_noise():
    rng = np.random.default_rng(0)
    losses = np.r_[_loss_from_log_odds(rng.normal(6, 2, 1800)), _loss_from_log_odds(rng.normal(-0.5, 0.8, 400))]
    labels = np.r_[np.zeros(1800, int), np.ones(400, int)]
    detector = BetaMixtureNoiseDetector().fit(losses, labels)
    assert not detector.noise_count_.most_disbelieved and detector.noise_count_.class_rates[1] < 0.2


def test_bad_labels_are_clear_errors_and_fitting_without_labels_still_checks_them():
    losses, labels, _ = _two_classes()
    mixed = np.array([0, "b"] * 5000, dtype=object)
    with pytest.raises(ValueError, match="labels must all be of one kind"):
        BetaMixtureNoiseDetector().fit(losses, mixed)
    fitted = BetaMixtureNoiseDetector().fit(losses)
    with pytest.raises(ValueError, match="one entry per value"):
        fitted.predict(losses, labels[:10])


def test_saved_gaussian_detectors_load():
    losses, labels, _ = _two_classes()
    for fitted in (GaussianMixtureNoiseDetector(random_state=0).fit(losses, labels),
                   GaussianMixtureNoiseDetector(random_state=0, rate_estimate="mixture").fit(losses)):
        copy = detector_from_dict(json.loads(json.dumps(detector_to_dict(fitted))))
        np.testing.assert_array_equal(copy.predict_proba(losses, labels), fitted.predict_proba(losses, labels))


def test_no_values_is_a_clear_error():
    with pytest.raises(ValueError, match="no values to count"):
        count_noise(np.zeros(0), np.zeros(0, int), np.zeros(0))


def test_small_groups_find_their_wrong_labels():
    # a reviewer's case: a few hundred samples (one label's worth), 10% clearly wrong
    for seed in range(10):
        rng = np.random.default_rng(seed)
        losses = np.r_[rng.exponential(0.05, 360), rng.normal(4.0, 0.8, 40).clip(0)]
        assert estimate_noise_rate(losses)["rate"] == pytest.approx(0.1, abs=0.01), seed
