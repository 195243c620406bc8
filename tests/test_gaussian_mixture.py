import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from lnc_sklearn import GaussianMixtureNoiseDetector


def _losses(seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.gamma(1.0, 0.3, 3000), rng.normal(3, 0.5, 1000)])


def test_matches_dividemix_recipe():
    # DivideMix: min-max normalise, GaussianMixture(2, max_iter=10, tol=1e-2, reg_covar=5e-4),
    # p(clean) = posterior of the lower-mean component.
    losses = _losses()
    x = (losses - losses.min()) / (losses.max() - losses.min())
    gmm = GaussianMixture(2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=0).fit(x[:, None])
    clean = gmm.means_.argmin()
    expected = gmm.predict_proba(x[:, None])[:, clean]
    detector = GaussianMixtureNoiseDetector(random_state=0, monotone=False, rate_estimate="mixture").fit(losses)
    np.testing.assert_allclose(detector.predict_proba(losses)[:, 0], expected, atol=1e-8)
    assert detector.bounds_ == (losses.min(), losses.max())
    assert detector.means_[0] < detector.means_[1]
    assert detector.weights_[1] == pytest.approx(0.25, abs=0.03)


def test_monotone_at_the_noisy_end():
    # A narrow noisy Gaussian falls below the broad clean one's tail: on the normalised
    # scale, with these parameters, the raw posterior peaks at x = 0.62 and falls after.
    detector = GaussianMixtureNoiseDetector(random_state=0, rate_estimate="mixture").fit(np.linspace(0, 1, 100))
    detector.means_, detector.variances_ = np.array([0.3, 0.6]), np.array([0.04, 0.0025])
    detector.weights_ = np.array([0.5, 0.5])
    grid = np.linspace(0, 1, 2001)
    raw = detector.set_params(monotone=False).predict_proba(grid)[:, 1]
    assert raw[-1] < 0.5 < raw.max() and grid[raw.argmax()] == pytest.approx(0.62, abs=1e-3)
    held = detector.set_params(monotone="hold").predict_proba(grid)[:, 1]
    assert np.all(np.diff(held) >= 0) and held[-1] == pytest.approx(raw.max(), abs=1e-6)
    reflected = detector.set_params(monotone="reflect").predict_proba(grid)[:, 1]
    assert np.all(np.diff(reflected) > 0)
    for fixed in (held, reflected):
        np.testing.assert_allclose(fixed[grid < 0.62], raw[grid < 0.62])


def test_warm_start_and_scores():
    losses = _losses()
    detector = GaussianMixtureNoiseDetector(random_state=0, warm_start=True, rate_estimate="mixture").fit(losses)
    first = detector._gaussian_mixture
    detector.fit(losses * 1.01)
    assert detector._gaussian_mixture is first
    n = losses.size
    assert detector.bic(losses) == pytest.approx(-2 * detector.score(losses) * n + 5 * np.log(n))
    assert detector.aic(losses) == pytest.approx(-2 * detector.score(losses) * n + 10)
    assert np.isfinite(detector.score_samples(losses)).all()
    np.testing.assert_array_equal(
        detector.fit_predict(losses), detector.predict_proba(losses).argmax(axis=1)
    )


def test_confidence_input():
    losses = _losses()
    a = GaussianMixtureNoiseDetector(random_state=0, rate_estimate="mixture").fit(losses).predict_proba(losses)
    b = GaussianMixtureNoiseDetector(random_state=0, input_type="confidence", rate_estimate="mixture").fit(-losses)
    np.testing.assert_allclose(b.predict_proba(-losses), a, atol=1e-8)
