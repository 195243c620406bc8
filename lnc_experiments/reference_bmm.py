"""A straightforward re-implementation of the paper's Beta-mixture fit (Arazo et al., 2019, section 3).

Written as the reference code behaves, on purpose without any of lnc's improvements: it is
the baseline that ``detector_speed.py`` times and that the tests compare
``BetaMixtureNoiseDetector(max_iter=10, tol=0, anchored=False, rate_estimate="mixture")`` against.
"""

import numpy as np
from scipy import stats
from scipy.special import expit


def normalise_like_reference(losses, eps=1e-4):
    """5th/95th percentiles, values outside them dropped, min-max map, clamp to [eps, 1-eps]."""
    p5, p95 = np.percentile(losses, 5), np.percentile(losses, 95)
    kept = losses[(losses >= p5) & (losses <= p95)]
    x = (kept - p5) / (p95 - p5)
    x[x >= 1 - eps] = 1 - eps
    x[x <= eps] = eps
    return x, (p5, p95)


def _weighted_beta_moments(x, w):
    mean = np.sum(w * x) / np.sum(w)
    var = np.sum(w * (x - mean) ** 2) / np.sum(w)
    alpha = mean * (mean * (1 - mean) / var - 1)
    return alpha, alpha * (1 - mean) / mean


def reference_bmm_fit(losses, max_iters=10):
    """Fit as the reference: init alpha=(1,2), beta=(2,1), weights=(.5,.5), ten EM steps.

    Returns ``(alphas, betas, weights, bounds)`` with components in the reference's order.
    """
    x, bounds = normalise_like_reference(np.asarray(losses, dtype=np.float64))
    alphas, betas, weights = np.array([1.0, 2.0]), np.array([2.0, 1.0]), np.array([0.5, 0.5])
    for _ in range(max_iters):
        r = np.array([weights[k] * stats.beta.pdf(x, alphas[k], betas[k]) for k in range(2)])
        r[r <= 1e-12] = 1e-12
        r /= r.sum(axis=0)
        for k in range(2):
            alphas[k], betas[k] = _weighted_beta_moments(x, r[k])
        weights = r.sum(axis=1)
        weights /= weights.sum()
    return alphas, betas, weights, bounds


def reference_high_end_fix(detector, losses, resolution=100, nearest=False):
    """The reference's posterior: a 100-point table over [0, 1], made non-decreasing past
    its maximum only (as in the authors' code), indexed as the reference code does it:
    ``table[int(100 * x)]`` on ``linspace(0, 1, 100)``. That reads a value at
    ``floor(100 x) / 99``, on average at ``x + (x - 0.5) / 99``: a little towards the clean
    end below x = 0.5 and towards the noisy end above it. ``nearest=True`` reads the grid
    point nearest to x instead, to tell that offset from the table itself."""
    grid = np.linspace(0, 1, resolution)
    table = expit(detector._log_odds_on_unit(np.clip(grid, detector.clip_eps, 1 - detector.clip_eps)))
    table[table.argmax():] = table.max()
    x = detector._to_unit(losses)
    index = np.rint(x * (resolution - 1)) if nearest else x * resolution
    return table[np.clip(index.astype(int), 0, resolution - 1)]
