"""The count from every kind of evidence: predicted probabilities (confident learning, against
cleanlab), losses with labels, the interval and the verdict; the detectors' ``pred_probs``,
class order, noise matrix, metadata routing, errors, and detectors saved by earlier versions."""

import base64
import json
import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

from lnc_sklearn import (BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector, asymmetric_noise, count_label_noise,
                         noise_report, noise_summary, symmetric_noise)
from lnc_sklearn.confident_joint import calibrated_joint, class_thresholds, confident_joint, noise_matrix
from lnc_sklearn.noise_count import FOUND, LITTLE, count_from_losses, noise_interval, verdict
from lnc_sklearn.persistence import detector_from_dict, detector_to_dict

DATA = __import__("pathlib").Path(__file__).parent / "data"


def _f1(flags, mask):
    return 2 * np.sum(flags & mask) / (flags.sum() + mask.sum())


@pytest.fixture(scope="module")
def digits_flips():
    """Out-of-fold probabilities of a logistic regression on the digits, 20% of five classes
    flipped to a similar one (class-conditional noise)."""
    X, y = load_digits(return_X_y=True)
    noisy, mask = asymmetric_noise(y, 0.2, {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}, random_state=0)
    probs = cross_val_predict(LogisticRegression(max_iter=2000), X / 16, noisy, method="predict_proba",
                              cv=StratifiedKFold(5, shuffle=True, random_state=0))
    losses = -np.log(np.clip(probs[np.arange(y.size), noisy], 1e-12, None))
    return losses, noisy, probs, mask


@pytest.fixture(scope="module")
def cancer_sym():
    """Out-of-fold probabilities of a logistic regression on breast_cancer, 20% of labels flipped."""
    X, y = load_breast_cancer(return_X_y=True)
    noisy, mask = symmetric_noise(y, 0.2, include_true_class=False, random_state=0)
    probs = cross_val_predict(LogisticRegression(max_iter=5000), (X - X.mean(0)) / X.std(0), noisy,
                              method="predict_proba", cv=StratifiedKFold(5, shuffle=True, random_state=0))
    losses = -np.log(np.clip(probs[np.arange(y.size), noisy], 1e-12, None))
    return losses, noisy, probs, mask


# -- confident learning, the pure functions ---------------------------------------------------
def test_confident_joint_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.7, 0.2, 0.1],
                      [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    labels = np.array([0, 0, 1, 1, 1, 2, 2])
    thresholds = class_thresholds(labels, probs)
    np.testing.assert_allclose(thresholds, [0.65, 1.7 / 3, 0.6])
    joint = confident_joint(labels, probs, thresholds)
    # sample 4 (labelled 1) is confidently 0; samples 1 and 6 are confident of nothing
    np.testing.assert_array_equal(joint, [[1, 0, 0], [1, 2, 0], [0, 0, 1]])
    q = calibrated_joint(joint, np.bincount(labels))
    assert q.sum() == pytest.approx(1.0) and 1 - np.trace(q) == pytest.approx(1 / 7)
    np.testing.assert_allclose(noise_matrix(q).sum(axis=0), 1.0)


def test_the_count_from_probabilities_is_confident_learnings(digits_flips, cancer_sym):
    from cleanlab.count import estimate_joint

    for losses, noisy, probs, mask in (digits_flips, cancer_sym):
        count = count_label_noise(noisy, probs)
        theirs = 1 - np.trace(estimate_joint(labels=noisy, pred_probs=probs))
        assert count.rate == pytest.approx(theirs, abs=0.005) and count.source == "confident joint"
        assert abs(count.rate - mask.mean()) < 0.03
        low, high = count.interval
        assert low <= mask.mean() <= high and high - low < 0.15 and count.verdict == "noise"


def test_with_probabilities_the_detector_finds_class_conditional_noise(digits_flips):
    from cleanlab.filter import find_label_issues

    losses, noisy, probs, mask = digits_flips
    for detector in (BetaMixtureNoiseDetector(), GaussianMixtureNoiseDetector(random_state=0)):
        detector.fit(losses, noisy, pred_probs=probs)
        assert detector.noise_rate_ == count_label_noise(noisy, probs).rate
        matrix = detector.noise_matrix_
        assert matrix.shape == (10, 10) and np.allclose(matrix.sum(axis=0), 1)
        assert matrix[7, 2] > 0.1 and matrix[8, 3] > 0.1 and matrix[9, 4] < 0.02  # the flips, not the rest
        flags = detector.predict(losses, noisy, pred_probs=probs).astype(bool)
        assert _f1(flags, mask) >= _f1(find_label_issues(noisy, probs), mask) - 0.01
        assert not (flags & (probs.argmax(1) == noisy)).any()  # never a label the model predicts
        p = detector.predict_proba(losses, noisy, pred_probs=probs)[:, 1]
        assert p.mean() == pytest.approx(detector.noise_rate_, abs=1e-4)
        # every class's probability ranks flips better than the given label's alone
        assert roc_auc_score(mask, p) > roc_auc_score(mask, losses) + 0.01
        # without the probabilities at read-out: the loss's order, averaging the same count
        p_loss = detector.predict_proba(losses, noisy)[:, 1]
        assert p_loss.mean() == pytest.approx(detector.noise_rate_, abs=1e-4)


def test_two_classes_count_the_same_from_losses_and_labels_as_from_probabilities(cancer_sym):
    losses, noisy, probs, mask = cancer_sym
    from_probs = BetaMixtureNoiseDetector().fit(losses, noisy, pred_probs=probs)
    from_losses = BetaMixtureNoiseDetector().fit(losses, noisy)
    # with two classes the given label's probability is the whole story
    assert from_losses.noise_count_.source == "label confidence"
    assert from_losses.noise_rate_ == pytest.approx(from_probs.noise_rate_, abs=1e-9)
    # the version before this count said 0 here: a calibrated model's two groups are about 2.0 apart
    assert from_losses.noise_count_.separation < 2.5 and abs(from_losses.noise_rate_ - mask.mean()) < 0.03


# -- the interval and the verdict -------------------------------------------------------------
def test_interval_and_verdict_rules():
    low, high = noise_interval(0.1, 80, 120, 1000)
    assert low < 0.08 and high > 0.12 and noise_interval(0.3, 80, 120, 1000)[1] == 0.3  # stretched to the point
    assert verdict((0.0, LITTLE)) == "little or no noise"
    assert verdict((FOUND, 0.2)) == "noise"
    assert verdict((0.0, 0.2)) == "cannot tell"
    assert verdict((0.3, 0.4), most_disbelieved=True) == "cannot tell"  # the network disbelieves most labels


def test_little_or_no_noise_needs_a_network_that_believes_its_labels():
    rng = np.random.default_rng(0)
    confident = rng.exponential(0.01, 5000)  # every label believed
    labels = rng.integers(0, 10, 5000)
    count = count_from_losses(confident, labels)
    assert count.verdict == "little or no noise" and count.interval[1] <= LITTLE and count.rate < 0.01
    hesitant = np.r_[confident[:4000], rng.uniform(0.7, 1.5, 1000)]  # a fifth disbelieved, no group apart
    count = count_from_losses(hesitant, labels)
    assert count.verdict == "cannot tell" and count.interval[1] > 0.2
    assert "cannot tell" in count.reason


def test_a_few_confident_mistakes_are_not_counted_as_noise():
    # half a percent of the labels confidently disbelieved: too few to tell from a model's own
    # mistakes on clean labels, and no group standing apart: the count stays at 0
    rng = np.random.default_rng(2)
    losses = np.r_[rng.exponential(0.01, 9950), rng.normal(6.0, 0.5, 50)]
    count = count_from_losses(losses, rng.integers(0, 10, 10_000))
    assert count.rate == 0.0 and count.source == "log-odds count" and count.verdict == "little or no noise"


def test_verdict_on_a_clearly_separate_group():
    rng = np.random.default_rng(1)
    losses = np.r_[rng.exponential(0.02, 9000), rng.normal(5.0, 0.7, 1000).clip(0.1)]
    count = count_from_losses(losses, rng.integers(0, 3, 10_000))
    assert count.verdict == "noise" and count.interval[0] >= FOUND and abs(count.rate - 0.1) < 0.01


# -- the estimator's inputs -------------------------------------------------------------------
def test_class_names_map_to_the_columns_through_a_stated_order(digits_flips):
    losses, noisy, probs, _ = digits_flips
    names = np.array(list("abcdefghij"))
    by_index = BetaMixtureNoiseDetector().fit(losses, noisy, pred_probs=probs)
    by_name = BetaMixtureNoiseDetector().fit(losses, names[noisy], pred_probs=probs)  # sorted: a..j
    assert by_name.noise_rate_ == by_index.noise_rate_
    np.testing.assert_array_equal(by_name.classes_, names)
    # columns in another order, stated through classes
    order = np.arange(10)[::-1]
    stated = BetaMixtureNoiseDetector(classes=names[order]).fit(losses, names[noisy], pred_probs=probs[:, order])
    assert stated.noise_rate_ == pytest.approx(by_index.noise_rate_)
    np.testing.assert_array_equal(stated.predict(losses, names[noisy], pred_probs=probs[:, order]),
                                  by_index.predict(losses, noisy, pred_probs=probs))


@pytest.mark.parametrize("change, message", [
    (lambda p, y: (p[:, :3] / p[:, :3].sum(1, keepdims=True), y), "labels run from 0 to 9 but pred_probs has 3 columns"),
    (lambda p, y: (p * 0.98, y), "rows must each sum to 1"),
    (lambda p, y: (p * 2 - p.mean(1, keepdims=True), y), "must lie in \\[0, 1\\]"),
    (lambda p, y: (np.where(np.arange(p.shape[0])[:, None] == 5, np.nan, p), y), "NaN or infinite values in 1 rows"),
    (lambda p, y: (p[:-1], y), "pred_probs has 1796 rows but there are 1797 samples"),
    (lambda p, y: (p[:, 0], y), "shape \\(n_samples, n_classes\\)"),
    (lambda p, y: (p, np.where(y == 3, "x", "y")), "2 distinct classes but pred_probs has 10 columns"),
])
def test_bad_probabilities_say_what_is_wrong(digits_flips, change, message):
    losses, noisy, probs, _ = digits_flips
    probs, labels = change(probs.copy(), noisy)
    with pytest.raises(ValueError, match=message):
        BetaMixtureNoiseDetector().fit(losses, labels, pred_probs=probs)


def test_probabilities_need_labels_and_a_detector_fitted_with_them(digits_flips):
    losses, noisy, probs, _ = digits_flips
    with pytest.raises(ValueError, match="need the given labels"):
        BetaMixtureNoiseDetector().fit(losses, pred_probs=probs)
    with pytest.raises(ValueError, match="fitted without pred_probs"):
        BetaMixtureNoiseDetector().fit(losses, noisy).predict(losses, noisy, pred_probs=probs)
    with pytest.raises(ValueError, match="rate_estimate='mixture' reads the mixture alone"):
        BetaMixtureNoiseDetector(rate_estimate="mixture").fit(losses, noisy, pred_probs=probs)
    with pytest.raises(ValueError, match="are not among classes"):
        BetaMixtureNoiseDetector().fit(losses, noisy, pred_probs=probs).predict(losses, noisy + 20, pred_probs=probs)


def test_parameters_on_their_way_out_say_why():
    losses = np.random.default_rng(0).exponential(0.1, 500)
    with pytest.warns(FutureWarning, match="n_bootstrap is ignored and will be removed: every fit now gives a 90%"):
        BetaMixtureNoiseDetector(n_bootstrap=100).fit(losses)
    with pytest.warns(FutureWarning, match="random_state is ignored"):
        BetaMixtureNoiseDetector(random_state=0).fit(losses)
    with pytest.warns(FutureWarning, match="n_bootstrap is ignored"):
        GaussianMixtureNoiseDetector(n_bootstrap=10).fit(losses)
    with pytest.warns(FutureWarning, match="now called 'count'"):
        BetaMixtureNoiseDetector(rate_estimate="log-odds").fit(losses)


def test_a_pipeline_routes_the_probabilities(digits_flips):
    losses, noisy, probs, _ = digits_flips
    with sklearn.config_context(enable_metadata_routing=True):
        detector = BetaMixtureNoiseDetector().set_fit_request(pred_probs=True)
        pipe = Pipeline([("detector", detector)]).fit(losses.reshape(-1, 1), noisy, pred_probs=probs)
        fitted = pipe.named_steps["detector"]
        assert fitted.noise_count_.source == "confident joint"
        assert fitted.noise_rate_ == count_label_noise(noisy, probs).rate
        # without the request, the pipeline refuses the probabilities instead of dropping them
        with pytest.raises(Exception, match="pred_probs"):
            Pipeline([("detector", BetaMixtureNoiseDetector())]).fit(losses.reshape(-1, 1), noisy, pred_probs=probs)


# -- what users read --------------------------------------------------------------------------
def test_labels_and_probabilities_alone_make_a_report(digits_flips):
    losses, noisy, probs, mask = digits_flips
    report = noise_report(labels=noisy, pred_probs=probs, noise_mask=mask)
    np.testing.assert_allclose(report["loss"], losses, rtol=1e-9)
    assert report["is_noisy"].sum() == BetaMixtureNoiseDetector().fit(losses, noisy, pred_probs=probs).predict(
        losses, noisy, pred_probs=probs).sum()
    summary = noise_summary(report)
    assert summary.count.source == "confident joint" and summary.noise_matrix.shape == (10, 10)
    assert summary.noise_matrix.loc["7", "2"] > 0.1
    text = str(summary)
    assert "estimated noise matrix, P(given label | true class)" in text and "[confident joint]" in text
    # the per-class shares are the count's, not the mean p(noisy)
    np.testing.assert_allclose(summary.per_class["noise_fraction"], summary.count.class_rates)
    with pytest.raises(ValueError, match="give the values"):
        noise_report(labels=noisy)


def test_the_cli_reads_probability_columns_and_matrices(tmp_path, digits_flips, capsys):
    from lnc_sklearn.cli import main

    losses, noisy, probs, _ = digits_flips
    frame = pd.DataFrame({"label": noisy, **{f"prob_{c}": probs[:, c] for c in range(10)}})
    frame.to_csv(tmp_path / "probs.csv", index=False)
    assert main([str(tmp_path / "probs.csv"), "--label-column", "label", "--probs-columns", "prob_*", "--top", "0"]) == 0
    from_columns = capsys.readouterr().out
    assert "[confident joint]" in from_columns and "estimated noise matrix" in from_columns
    np.save(tmp_path / "probs.npy", probs)
    pd.DataFrame({"loss": losses, "label": noisy}).to_csv(tmp_path / "losses.csv", index=False)
    assert main([str(tmp_path / "losses.csv"), "--label-column", "label", "--probs", str(tmp_path / "probs.npy"),
                 "--top", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == from_columns.splitlines()[0]
    np.save(tmp_path / "bad.npy", probs[:, :5])
    assert main([str(tmp_path / "losses.csv"), "--label-column", "label", "--probs", str(tmp_path / "bad.npy")]) == 2
    assert "rows must each sum to 1" in capsys.readouterr().err
    assert main([str(tmp_path / "losses.csv"), "--probs", str(tmp_path / "probs.npy")]) == 2
    assert "need the given labels: add --label-column" in capsys.readouterr().err
    assert main([str(tmp_path / "losses.csv"), "--bootstrap", "10"]) == 2
    assert "--bootstrap was removed" in capsys.readouterr().err


# -- saved detectors --------------------------------------------------------------------------
def test_detectors_with_probabilities_save_and_load(digits_flips):
    losses, noisy, probs, _ = digits_flips
    names = np.array(list("abcdefghij"))[noisy]
    fitted = BetaMixtureNoiseDetector().fit(losses, names, pred_probs=probs)
    for copy in (detector_from_dict(json.loads(json.dumps(detector_to_dict(fitted)))), pickle.loads(pickle.dumps(fitted))):
        for kwargs in ({"y": names, "pred_probs": probs}, {"y": names}, {}):
            np.testing.assert_array_equal(copy.predict_proba(losses, **kwargs), fitted.predict_proba(losses, **kwargs))
            np.testing.assert_array_equal(copy.predict(losses, **kwargs), fitted.predict(losses, **kwargs))
        assert copy.noise_count_.reason == fitted.noise_count_.reason
        np.testing.assert_array_equal(copy.noise_matrix_, fitted.noise_matrix_)


def test_detectors_saved_by_earlier_versions_load_as_they_were():
    # saved as JSON and pickled by lnc at 08d510d (before this count): the default, with labels
    # (a pooled small label), the mixture's rate, and the Gaussian mixture with labels
    saved = json.loads((DATA / "detectors_before_the_readout.json").read_text())
    probe, probe_labels = np.array(saved["probe"]), np.array(saved["probe_labels"])
    for name, case in saved["cases"].items():
        kwargs = {"y": probe_labels} if case["with_labels"] else {}
        for detector in (detector_from_dict(case["saved"]), pickle.loads(base64.b64decode(case["pickle"]))):
            np.testing.assert_array_equal(detector.predict_proba(probe, **kwargs)[:, 1], case["proba"], err_msg=name)
            np.testing.assert_array_equal(detector.predict(probe, **kwargs), case["predict"], err_msg=name)
            assert detector.noise_rate_ == case["noise_rate"]
            assert detector.get_params()["n_bootstrap"] == "deprecated"
