import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score

from lnc_experiments.reference_bmm import reference_bmm_fit
from lnc_sklearn import BetaMixtureNoiseDetector, DegenerateFitWarning, GaussianMixtureNoiseDetector
from lnc_sklearn.beta_mixture import (
    anchor_to_ends,
    beta_from_moments,
    beta_log_pdf,
    fit_beta_mixture,
)
from lnc_sklearn.normalization import percentile_bounds, to_unit_interval

PAPER = dict(max_iter=10, tol=0, anchored=False, rate_estimate="mixture")
# The mixture's own reading of p(noisy), for tests of the mixture rather than the count.
MIXTURE = dict(rate_estimate="mixture")
CONVERGED = dict(max_iter=1000, tol=1e-6)


def _synthetic(n_clean=8000, n_noisy=2000, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.beta(1, 8, n_clean), rng.beta(6, 2, n_noisy)])


# -- the maths, against numbers computed by hand ------------------------------------------
def test_beta_log_pdf_matches_scipy_and_hand_values():
    x = np.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(beta_log_pdf(x, 0.7, 3.2), stats.beta.logpdf(x, 0.7, 3.2))
    # Beta(2, 2) at 0.5: 6 * 0.5 * 0.5 = 1.5
    assert np.exp(beta_log_pdf(np.array([0.5]), 2, 2))[0] == pytest.approx(1.5)


def test_beta_from_moments_by_hand():
    # Beta(2, 6): mean 0.25, var 2*6 / (8^2 * 9) = 12 / 576
    alpha, beta, ok = beta_from_moments(0.25, 12 / 576)
    assert ok and alpha == pytest.approx(2) and beta == pytest.approx(6)
    alpha, beta, ok = beta_from_moments(0.5, 0.3)  # var >= mean (1 - mean): no Beta
    assert not ok and alpha > 0 and beta > 0
    alpha, beta, ok = beta_from_moments(0.5, 0.0)  # a collapsed component
    assert not ok and np.isfinite([alpha, beta]).all()


def test_normalisation_by_hand():
    values = np.arange(101.0)
    assert percentile_bounds(values, (5, 95)) == (5.0, 95.0)
    x = to_unit_interval(np.array([0.0, 50.0, 100.0]), 5.0, 95.0, eps=1e-4)
    np.testing.assert_allclose(x, [1e-4, 0.5, 1 - 1e-4])


def test_em_recovers_a_known_mixture():
    fit = fit_beta_mixture(_synthetic(), (1, 2), (2, 1), (0.5, 0.5), max_iter=2000, tol=1e-10)
    assert fit["converged"]
    np.testing.assert_allclose(fit["weights"], [0.8, 0.2], atol=0.02)
    np.testing.assert_allclose(fit["alphas"], [1, 6], rtol=0.15)
    np.testing.assert_allclose(fit["betas"], [8, 2], rtol=0.15)


# -- the paper's configuration reproduces the paper's algorithm ---------------------------
def test_paper_configuration_matches_reference_on_real_losses(digits_loss_trace):
    losses_by_epoch, _ = digits_loss_trace
    for losses in losses_by_epoch:
        alphas, betas, weights, bounds = reference_bmm_fit(losses)
        order = np.argsort(alphas / (alphas + betas))
        detector = BetaMixtureNoiseDetector(**PAPER).fit(losses)
        np.testing.assert_allclose(detector.alphas_, alphas[order], rtol=1e-3)
        np.testing.assert_allclose(detector.betas_, betas[order], rtol=1e-3)
        np.testing.assert_allclose(detector.weights_, weights[order], rtol=1e-3)
        np.testing.assert_allclose(detector.bounds_, bounds)
        assert detector.n_iter_ == 10 and not detector.converged_


def test_paper_configuration_matches_reference_on_synthetic_losses():
    losses = _synthetic() * 5
    alphas, betas, weights, _ = reference_bmm_fit(losses)
    detector = BetaMixtureNoiseDetector(**PAPER).fit(losses)
    order = np.argsort(alphas / (alphas + betas))
    np.testing.assert_allclose(
        np.r_[detector.alphas_, detector.betas_, detector.weights_],
        np.r_[alphas[order], betas[order], weights[order]],
        rtol=1e-3,
    )


# -- the improvements -------------------------------------------------------------------
def test_anchor_to_ends_by_hand():
    # Admissible shapes are left alone.
    alphas, betas = anchor_to_ends([0.5, 3.0], [4.0, 0.7])
    np.testing.assert_array_equal(alphas, [0.5, 3.0])
    np.testing.assert_array_equal(betas, [4.0, 0.7])
    # Clean Beta(0.78, 0.23) piles up at 1: Beta(0.78 / 0.23, 1), same mean.
    # Noisy Beta(0.5, 2) piles up at 0: Beta(1, 4), same mean 0.2.
    alphas, betas = anchor_to_ends([0.78, 0.5], [0.23, 2.0])
    np.testing.assert_allclose(alphas, [0.78 / 0.23, 1.0])
    np.testing.assert_allclose(betas, [1.0, 4.0])
    np.testing.assert_allclose(alphas / (alphas + betas), [0.78 / 1.01, 0.2])


def test_default_is_the_paper_schedule_with_anchored_m_steps():
    losses = _synthetic()
    default = BetaMixtureNoiseDetector().fit(losses)
    assert default.n_iter_ == 10 and not default.converged_
    x = default.to_unit_interval(losses[(losses >= default.bounds_[0]) & (losses <= default.bounds_[1])])
    fit = fit_beta_mixture(x, (1, 2), (2, 1), (0.5, 0.5), max_iter=10, tol=0, anchored=True)
    np.testing.assert_allclose(default.alphas_, fit["alphas"], rtol=1e-12)
    np.testing.assert_allclose(default.weights_, fit["weights"], rtol=1e-12)
    # Here the paper's noisy component passes through alpha < 1 (a pole at the clean end)
    # on its way; anchored, it ends nearer the true 20% and fits the data better.
    paper = BetaMixtureNoiseDetector(**PAPER).fit(losses)
    assert abs(default.weights_[1] - 0.2) < abs(paper.weights_[1] - 0.2)
    assert default.log_likelihood_ > paper.log_likelihood_


def test_anchoring_keeps_noisy_the_noisy_component_on_real_losses():
    # Per-sample losses of a small CNN after 10 epochs of cross-entropy on Fashion-MNIST
    # with 80% symmetric noise (every 2nd sample of the trace written by
    # `benchmarks/make_loss_traces.py --dataset fashion_mnist --noise 0.8`, as float16).
    # The paper's fit ends with its clean component U-shaped (alpha, beta < 1), holding
    # the cleanest and the noisiest samples, and with the higher mean: it is then called
    # noisy, the bulk of the samples clean, and p(noisy) averages 0.25 where 72% of the
    # labels are wrong.
    data = np.load(Path(__file__).parent / "data" / "fashion_mnist_sym80_epoch10.npz")
    losses = data["losses"].astype(np.float64)
    changed = np.unpackbits(data["changed"])[: int(data["n"])]
    paper = BetaMixtureNoiseDetector(**PAPER).fit(losses)
    anchored = BetaMixtureNoiseDetector(**MIXTURE).fit(losses)
    assert paper.alphas_[1] < 1 and paper.betas_[1] < 1  # U-shaped, and "noisy" by its mean
    assert anchored.betas_[0] >= 1 and anchored.alphas_[1] >= 1
    p_paper, p_anchored = (d.predict_proba(losses)[:, 1] for d in (paper, anchored))
    assert abs(p_paper.mean() - changed.mean()) > 0.4
    assert abs(p_anchored.mean() - changed.mean()) < 0.05
    assert np.mean((p_anchored - changed) ** 2) < 0.5 * np.mean((p_paper - changed) ** 2)
    # Both posteriors are monotone, so both rank the samples as the loss does.
    auc = roc_auc_score(changed, losses)
    assert roc_auc_score(changed, p_anchored) == pytest.approx(auc, abs=1e-3)


@pytest.mark.parametrize("init_params", ["fixed", "kmeans"])
def test_em_to_convergence_where_ten_iterations_do_not(init_params):
    losses = _synthetic()
    paper = BetaMixtureNoiseDetector(**PAPER).fit(losses)
    converged = BetaMixtureNoiseDetector(**CONVERGED, init_params=init_params, anchored=False).fit(losses)
    assert converged.converged_
    assert converged.log_likelihood_ > paper.log_likelihood_
    assert abs(converged.weights_[1] - 0.2) < abs(paper.weights_[1] - 0.2)


def test_components_are_ordered_clean_then_noisy():
    # Started with the components the wrong way round, EM ends with noisy = component 0.
    x = _synthetic()
    fit = fit_beta_mixture(x, (6, 1), (2, 8), (0.2, 0.8), max_iter=500, tol=1e-9)
    assert fit["alphas"][0] / fit["alphas"].sum() > 0.5  # EM's own order: noisy first
    detector = BetaMixtureNoiseDetector(**CONVERGED, warm_start=True)
    detector.alphas_, detector.betas_, detector.weights_ = (
        np.array([6.0, 1.0]), np.array([2.0, 8.0]), np.array([0.2, 0.8])
    )
    detector.fit(x)
    means = detector.alphas_ / (detector.alphas_ + detector.betas_)
    assert means[0] < means[1]
    assert detector.weights_[1] == pytest.approx(0.2, abs=0.03)


@pytest.mark.parametrize("detector_class", [BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector])
def test_posterior_is_monotone_in_the_loss_on_real_losses(detector_class, digits_loss_trace):
    losses_by_epoch, changed = digits_loss_trace
    grid = np.linspace(-1, 15, 4001)
    for losses in losses_by_epoch:
        for kwargs in ({}, CONVERGED) if detector_class is BetaMixtureNoiseDetector else ({},):
            detector = detector_class(**kwargs).fit(losses)
            p = detector.predict_proba(grid)[:, 1]
            assert np.all(np.diff(p) >= 0)
            # it ranks samples as the loss does: the same AUC, up to clamping ties
            p_samples = detector.predict_proba(losses)[:, 1]
            assert roc_auc_score(changed, p_samples) >= roc_auc_score(changed, losses) - 1e-3


def _detector_with(alphas, betas, weights=(0.5, 0.5)):
    detector = BetaMixtureNoiseDetector(max_iter=1, tol=0, percentiles=(0, 100), **MIXTURE)
    detector.fit(np.linspace(0, 1, 100))
    detector.alphas_, detector.betas_ = np.asarray(alphas, float), np.asarray(betas, float)
    detector.weights_ = np.asarray(weights, float)
    return detector


def _log_odds(p):
    return np.log(p) - np.log1p(-p)


def test_monotone_fix_at_the_clean_end():
    # Clean alpha > 1 vanishes at 0, the broad noisy component wins there: the raw
    # posterior says the cleanest samples are noisy.
    detector = _detector_with(alphas=(2.0, 0.9), betas=(8.0, 1.2))
    x = np.linspace(0.001, 0.999, 999)
    raw = detector.set_params(monotone=False).predict_proba(x)[:, 1]
    assert raw[0] > 0.9 and raw.min() < 0.3
    turn = (0.9 - 2.0) / ((0.9 - 2.0) + (1.2 - 8.0))  # the trough, by hand
    below, above = x < turn, x > turn
    assert x[raw.argmin()] == pytest.approx(turn, abs=1e-3)
    at_turn = _log_odds(detector.predict_proba([turn])[:, 1])[0]

    held = detector.set_params(monotone="hold").predict_proba(x)[:, 1]
    assert np.all(np.diff(held) >= 0)
    np.testing.assert_allclose(held[below], raw.min(), rtol=1e-5)  # held at the trough
    np.testing.assert_allclose(held[above], raw[above])  # unchanged past it

    for setting in ["reflect", True]:
        reflected = detector.set_params(monotone=setting).predict_proba(x)[:, 1]
        assert np.all(np.diff(reflected) >= 0)
        # strictly increasing (it ranks as the loss does) until float64 rounds p to 1
        assert np.all(np.diff(reflected[reflected < 1 - 1e-12]) > 0)
        np.testing.assert_allclose(reflected[above], raw[above])
        np.testing.assert_allclose(
            _log_odds(reflected[below]), 2 * at_turn - _log_odds(raw[below]), rtol=1e-6
        )
        assert reflected[0] < 0.05  # the cleanest samples are called clean


def test_monotone_fix_at_the_noisy_end():
    # A noisy component narrower than the clean tail: the raw posterior falls past a peak.
    detector = _detector_with(alphas=(1.0, 8.0), betas=(3.0, 6.0))
    x = np.linspace(0.001, 0.999, 999)
    raw = detector.set_params(monotone=False).predict_proba(x)[:, 1]
    assert raw[-1] < raw.max() - 0.5
    held = detector.set_params(monotone="hold").predict_proba(x)[:, 1]
    assert np.all(np.diff(held) >= 0) and held[-1] == pytest.approx(raw.max(), abs=1e-6)
    reflected = detector.set_params(monotone="reflect").predict_proba(x)[:, 1]
    assert np.all(np.diff(reflected[reflected < 1 - 1e-12]) > 0)
    assert reflected[-1] > raw.max()


def test_confidence_input_is_the_mirror_of_loss_input():
    losses = _synthetic()
    from_loss = BetaMixtureNoiseDetector(**MIXTURE).fit(losses)
    from_confidence = BetaMixtureNoiseDetector(input_type="confidence", **MIXTURE).fit(-losses)
    np.testing.assert_allclose(
        from_confidence.predict_proba(-losses), from_loss.predict_proba(losses), atol=1e-9
    )
    confidences = np.exp(-losses)
    p = BetaMixtureNoiseDetector(input_type="confidence", **MIXTURE).fit(confidences)
    noisy = p.predict_proba(np.sort(confidences))[:, 1]
    assert np.all(np.diff(noisy) <= 0)


def test_new_values_are_mapped_with_the_stored_bounds():
    losses = _synthetic()
    detector = BetaMixtureNoiseDetector().fit(losses)
    one = detector.predict_proba(losses[:1])
    together = detector.predict_proba(np.r_[losses[:1], 100 * losses])[:1]
    np.testing.assert_array_equal(one, together)
    low, high = detector.bounds_
    assert (low, high) == tuple(np.percentile(losses, [5, 95]))


def test_warm_start_starts_from_the_previous_fit():
    losses = _synthetic()
    # Plain M-steps: on this mixture anchored EM creeps, and tol=1e-6 stops the cold run
    # short of where the warm one ends (they agree at tol=1e-9).
    cold = BetaMixtureNoiseDetector(**CONVERGED, anchored=False).fit(losses)
    warm = BetaMixtureNoiseDetector(**CONVERGED, anchored=False, warm_start=True).fit(losses)
    again = warm.fit(losses * 1.01)
    assert again.n_iter_ < cold.n_iter_
    np.testing.assert_allclose(again.weights_, cold.weights_, atol=1e-3)


def test_warm_start_leaves_coinciding_components():
    from lnc_sklearn.beta_mixture import fit_beta_mixture

    losses = _synthetic()
    fresh = BetaMixtureNoiseDetector().fit(losses)
    x = fresh.to_unit_interval(losses[(losses >= fresh.bounds_[0]) & (losses <= fresh.bounds_[1])])
    # Identical components are a fixed point of EM: a refit from them cannot separate them.
    stuck = fit_beta_mixture(x, (0.3, 0.3), (0.6, 0.6), (0.5, 0.5), max_iter=10, tol=0)
    assert stuck["alphas"][0] == pytest.approx(stuck["alphas"][1])
    warm = BetaMixtureNoiseDetector(warm_start=True).fit(losses)
    warm.alphas_, warm.betas_ = np.array([0.3, 0.3]), np.array([0.6, 0.6])  # as if a refit had collapsed
    warm.fit(losses)
    np.testing.assert_allclose(warm.alphas_, fresh.alphas_)
    np.testing.assert_allclose(warm.weights_, fresh.weights_)


def test_convergence_warning_only_when_asked_to_converge():
    losses = _synthetic()
    with pytest.warns(ConvergenceWarning):
        BetaMixtureNoiseDetector(max_iter=3, tol=1e-9).fit(losses)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BetaMixtureNoiseDetector(**PAPER).fit(losses)


def test_scores_and_information_criteria():
    losses = _synthetic()
    detector = BetaMixtureNoiseDetector(**CONVERGED).fit(losses)
    low, high = detector.bounds_
    x = to_unit_interval(losses, low, high)
    by_hand = np.log(
        sum(
            w * stats.beta.pdf(x, a, b)
            for a, b, w in zip(detector.alphas_, detector.betas_, detector.weights_)
        )
    ) - np.log(high - low)
    np.testing.assert_allclose(detector.score_samples(losses), by_hand, rtol=1e-10)
    assert detector.score(losses) == pytest.approx(by_hand.mean())
    n = losses.size
    assert detector.bic(losses) == pytest.approx(-2 * by_hand.sum() + 5 * np.log(n))
    assert detector.aic(losses) == pytest.approx(-2 * by_hand.sum() + 10)
    # a converged fit scores its own data better than ten paper iterations
    inside = (losses >= low) & (losses <= high)
    paper = BetaMixtureNoiseDetector(**PAPER).fit(losses)
    assert detector.score(losses[inside]) > paper.score(losses[inside])


def test_predict_and_fit_predict_agree_with_predict_proba():
    losses = _synthetic()
    detector = BetaMixtureNoiseDetector(**MIXTURE)
    labels = detector.fit_predict(losses)
    np.testing.assert_array_equal(labels, detector.predict_proba(losses).argmax(axis=1))
    assert set(np.unique(labels)) == {0, 1}


# -- degenerate input ---------------------------------------------------------------------
def _check_outputs_finite(detector, values):
    proba = detector.predict_proba(values)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1)
    assert np.isfinite(detector.score_samples(values)).all()
    for name in ["alphas_", "betas_", "weights_"]:
        assert np.isfinite(getattr(detector, name)).all() and (getattr(detector, name) > 0).all()


def test_constant_input_is_a_clear_error():
    with pytest.raises(ValueError, match="all 50 values are equal"):
        BetaMixtureNoiseDetector().fit(np.full(50, 0.3))


def test_mostly_tied_input_falls_back_to_the_full_range():
    values = np.r_[np.zeros(97), np.linspace(1, 2, 3)]
    with pytest.warns(UserWarning, match="full range"):
        detector = BetaMixtureNoiseDetector().fit(values)
    assert detector.bounds_ == (0.0, 2.0)
    _check_outputs_finite(detector, values)


def test_two_distinct_values_give_a_valid_fit_with_a_warning():
    values = np.r_[np.zeros(60), np.ones(40)]
    with pytest.warns(DegenerateFitWarning):
        detector = BetaMixtureNoiseDetector(**MIXTURE).fit(values)
    _check_outputs_finite(detector, values)
    assert detector.predict([0.0, 1.0]).tolist() == [0, 1]


def test_no_nan_on_extreme_magnitudes():
    rng = np.random.default_rng(0)
    for scale in [1e-300, 1e-8, 1e8, 1e300]:
        values = rng.gamma(1.0, 1.0, 200) * scale
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector = BetaMixtureNoiseDetector().fit(values)
        _check_outputs_finite(detector, values)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_a_clear_error(bad):
    values = np.r_[np.linspace(0, 1, 20), bad]
    with pytest.raises(ValueError, match="NaN|infinity"):
        BetaMixtureNoiseDetector().fit(values)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"percentiles": (95, 5)}, "percentiles"),
        ({"percentiles": (5,)}, "percentiles"),
        ({"init_params": "random"}, "init_params"),
        ({"input_type": "probability"}, "input_type"),
        ({"max_iter": 0}, "max_iter"),
    ],
)
def test_bad_parameters_are_clear_errors(params, message):
    with pytest.raises(ValueError, match=message):
        BetaMixtureNoiseDetector(**params).fit(_synthetic())


def test_anchoring_is_its_own_parameter_and_the_old_spelling_says_so():
    losses = np.random.default_rng(0).gamma(1.0, 0.5, 500)
    default = BetaMixtureNoiseDetector().fit(losses)
    assert (default.init_params, default.anchored) == ("fixed", True) and np.isfinite(default.log_likelihood_)
    kmeans_anchored = BetaMixtureNoiseDetector(init_params="kmeans", anchored=True).fit(losses)  # now possible
    assert np.all(np.isfinite(kmeans_anchored.predict_proba(losses)))
    # The old spellings meant something else: they fail, saying what to write now, never silently change.
    with pytest.raises(ValueError, match=r"init_params='anchored' is now init_params='fixed', anchored=True"):
        BetaMixtureNoiseDetector(init_params="anchored").fit(losses)
    with pytest.raises(ValueError, match=r"init_params='paper' is now init_params='fixed', anchored=False"):
        BetaMixtureNoiseDetector(init_params="paper").fit(losses)


@pytest.mark.parametrize("old_init, anchored", [("anchored", True), ("paper", False), ("kmeans", False)])
def test_detectors_saved_under_the_old_names_load(tmp_path, old_init, anchored):
    """A detector file written before anchoring had its own parameter (when only
    ``init_params="anchored"`` anchored) and before ``lower_bound_`` was renamed loads as the
    detector it was."""
    import json

    from lnc_sklearn import load_detector, save_detector

    losses = np.random.default_rng(0).gamma(1.0, 0.5, 500)
    init = "kmeans" if old_init == "kmeans" else "fixed"
    fitted = BetaMixtureNoiseDetector(init_params=init, anchored=anchored).fit(losses)
    path = save_detector(fitted, tmp_path / "new.json") or tmp_path / "new.json"
    state = json.loads(path.read_text())
    saved = state["detector"]
    saved["params"].pop("anchored")
    saved["params"]["init_params"] = old_init
    saved["fitted"]["lower_bound_"] = saved["fitted"].pop("log_likelihood_")
    (tmp_path / "old.json").write_text(json.dumps(state))
    loaded = load_detector(tmp_path / "old.json")
    assert (loaded.init_params, loaded.anchored) == (init, anchored)
    assert loaded.log_likelihood_ == fitted.log_likelihood_
    np.testing.assert_array_equal(loaded.predict_proba(losses), fitted.predict_proba(losses))
    assert np.array_equal(loaded.fit(losses).alphas_, fitted.alphas_)  # and refits the same way
