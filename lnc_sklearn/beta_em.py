"""The two-component Beta mixture's maths (Arazo et al., ICML 2019): densities, the method of
moments, EM with streamed E-steps. :class:`lnc_sklearn.BetaMixtureNoiseDetector` is the
scikit-learn glue on top.

Speed and memory: ``log x`` and ``log(1 - x)`` are computed once per fit, and each EM
iteration streams over them in cache-sized chunks, reducing every chunk to the five sums
the M-step needs. A fit therefore holds three float64 copies of the data (``x``, ``log x``,
``log(1 - x)``) whatever the number of iterations, and never calls ``scipy.stats``.
"""

import numpy as np
from scipy.special import betaln

__all__ = [
    "DegenerateFitWarning",
    "beta_log_pdf",
    "beta_from_moments",
    "anchor_to_ends",
    "e_step_statistics",
    "fit_beta_mixture",
    "components_coincide",
    "PAPER_INIT",
]

PAPER_INIT = {"alphas": (1.0, 2.0), "betas": (2.0, 1.0), "weights": (0.5, 0.5)}
# The reference floors each weighted likelihood at 1e-12 before normalising.
LOG_LIKELIHOOD_FLOOR = np.log(1e-12)
# Below this variance (or weight) a component has collapsed onto a point.
MIN_VARIANCE = 1e-8
MIN_WEIGHT = 1e-8
_CHUNK = 1 << 15


class DegenerateFitWarning(UserWarning):
    """A mixture component collapsed or had no valid Beta by the method of moments."""


def beta_log_pdf(x, alpha, beta):
    """Log-density of Beta(alpha, beta) at ``x`` in (0, 1).

    >>> float(np.exp(beta_log_pdf(np.array([0.25]), 1.0, 2.0))[0])
    1.5
    """
    x = np.asarray(x, dtype=np.float64)
    return (alpha - 1) * np.log(x) + (beta - 1) * np.log1p(-x) - betaln(alpha, beta)


def beta_from_moments(mean, var):
    """Beta parameters with the given mean and variance (the method of moments).

    Returns ``(alpha, beta, ok)``; ``ok`` is False when no Beta has these moments (a
    variance of ``mean * (1 - mean)`` or more, or a collapsed component) and the variance
    was moved into the valid range to give the nearest usable Beta.

    >>> beta_from_moments(0.5, 1 / 12)  # the uniform distribution
    (1.0, 1.0, True)
    """
    mean = min(max(float(mean), 1e-6), 1 - 1e-6)
    var = float(var)
    limit = mean * (1 - mean)
    ok = MIN_VARIANCE <= var < limit
    if not ok:
        var = min(max(var, MIN_VARIANCE), limit * (1 - 1e-3))
    alpha = mean * (limit / var - 1)
    return alpha, alpha * (1 - mean) / mean, ok


class _UnitData:
    """The fit's data and the per-fit constants the EM iterations reuse."""

    def __init__(self, x):
        self.x = x
        self.log_x = np.log(x)
        self.log_1mx = np.log1p(-x)
        self.n = x.size
        self.sum_x = float(x.sum())
        self.sum_x2 = float(x @ x)
        self.sum_log_x = float(self.log_x.sum())
        self.sum_log_1mx = float(self.log_1mx.sum())
        self.log_x_range = (float(self.log_x.min()), float(self.log_x.max()))
        self.log_1mx_range = (float(self.log_1mx.min()), float(self.log_1mx.max()))

    def lowest_log_density(self, am1, bm1, const):
        """A lower bound of ``const + am1 log x + bm1 log(1 - x)`` over the data."""
        return const + min(am1 * v for v in self.log_x_range) + min(
            bm1 * v for v in self.log_1mx_range
        )


def _sigmoid(d):
    """expit(d), as 0.5 + 0.5 tanh(d / 2): exact to rounding, and faster than expit."""
    out = np.multiply(d, 0.5)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def e_step_statistics(data, alphas, betas, weights, *, floor=True, log_likelihood=True):
    """One pass of the E-step, reduced to what the M-step and the stopping rule need.

    Returns ``(r, rx, rx2, mean_log_likelihood)``, where ``r``, ``rx``, ``rx2`` are the sums
    over samples of the noisy component's responsibility times 1, x and x^2 (the clean
    component's sums follow by subtraction from the data's own sums). The log-likelihood
    (NaN unless asked for) is that of the unfloored densities.
    """
    const = np.log(weights) - betaln(alphas, betas)
    am1, bm1 = np.asarray(alphas) - 1, np.asarray(betas) - 1
    # Only the log-odds of the two components is needed per sample; the floor can only
    # change it where a weighted density falls below 1e-12, which a cheap bound rules out
    # for most fits.
    floor_may_act = floor and min(
        data.lowest_log_density(am1[k], bm1[k], const[k]) for k in range(2)
    ) < LOG_LIKELIHOOD_FLOOR
    d_am1, d_bm1, d_const = am1[1] - am1[0], bm1[1] - bm1[0], const[1] - const[0]
    r = rx = rx2 = 0.0
    # sum of log(e^lp0 + e^lp1) = sum of lp0 + softplus(log_odds); the first sum comes from
    # the data's own sums, and softplus(d) = max(d, 0) - log(max(r, 1 - r)) with
    # r = expit(d): no overflow, no log(0), and far cheaper than np.logaddexp.
    loglik = const[0] * data.n + am1[0] * data.sum_log_x + bm1[0] * data.sum_log_1mx
    for start in range(0, data.n, _CHUNK):
        part = slice(start, start + _CHUNK)
        log_x, log_1mx, x = data.log_x[part], data.log_1mx[part], data.x[part]
        log_odds = d_am1 * log_x
        log_odds += d_bm1 * log_1mx
        log_odds += d_const
        resp = _sigmoid(log_odds)
        if log_likelihood:
            loglik += float(np.maximum(log_odds, 0).sum())
            loglik -= float(np.log(np.maximum(resp, 1 - resp)).sum())
        if floor_may_act:
            lp0 = am1[0] * log_x
            lp0 += bm1[0] * log_1mx
            lp0 += const[0]
            lp1 = lp0 + log_odds
            if min(lp0.min(), lp1.min()) < LOG_LIKELIHOOD_FLOOR:
                np.maximum(lp0, LOG_LIKELIHOOD_FLOOR, out=lp0)
                np.maximum(lp1, LOG_LIKELIHOOD_FLOOR, out=lp1)
                resp = _sigmoid(lp1 - lp0)
        r += float(resp.sum())
        resp *= x
        rx += float(resp.sum())
        rx2 += float(resp @ x)
    return r, rx, rx2, (loglik / data.n if log_likelihood else np.nan)


def anchor_to_ends(alphas, betas):
    """Keep component 0 (clean) without a pole at 1 and component 1 (noisy) without one at 0.

    A Beta density has a pole at 1 when beta < 1 and at 0 when alpha < 1. Where the moments
    ask for the clean component to pile up at the noisy end (or the noisy one at the clean
    end), that exponent is set to 1, the boundary of the admissible shapes, and the other
    is chosen to keep the component's mean. Returns new arrays.

    >>> anchor_to_ends([0.78, 6.98], [0.23, 2.33])  # clean U-shaped, piling up at 1
    (array([3.39130435, 6.98      ]), array([1.  , 2.33]))
    """
    alphas, betas = np.array(alphas, dtype=np.float64), np.array(betas, dtype=np.float64)
    if betas[0] < 1:
        alphas[0], betas[0] = alphas[0] / betas[0], 1.0  # mean a/(a+b) kept: a/b unchanged
    if alphas[1] < 1:
        alphas[1], betas[1] = 1.0, betas[1] / alphas[1]
    return alphas, betas


def _m_step(data, r, rx, rx2, alphas, betas, weights, anchored):
    """Weighted method of moments; returns new parameters and whether any were degenerate."""
    stats = ((data.n - r, data.sum_x - rx, data.sum_x2 - rx2), (r, rx, rx2))
    new_alphas, new_betas, new_weights, problems = [], [], [], []
    for k, (w, wx, wx2) in enumerate(stats):
        if w < MIN_WEIGHT * data.n:
            problems.append(f"component {k} collapsed (weight {w / data.n:.2g})")
            new_alphas.append(alphas[k])
            new_betas.append(betas[k])
            new_weights.append(max(w / data.n, MIN_WEIGHT))
            continue
        mean = wx / w
        alpha, beta, ok = beta_from_moments(mean, wx2 / w - mean * mean)
        if not ok:
            problems.append(
                f"component {k} has no Beta with mean {mean:.3g} and variance "
                f"{wx2 / w - mean * mean:.3g}"
            )
        new_alphas.append(alpha)
        new_betas.append(beta)
        new_weights.append(w / data.n)
    new_weights = np.asarray(new_weights)
    new_alphas, new_betas = np.asarray(new_alphas), np.asarray(new_betas)
    if anchored:
        new_alphas, new_betas = anchor_to_ends(new_alphas, new_betas)
    return new_alphas, new_betas, new_weights / new_weights.sum(), problems


def fit_beta_mixture(x, alphas, betas, weights, *, max_iter, tol, anchored=False):
    """EM for a two-component Beta mixture with method-of-moments M-steps.

    ``x`` must lie strictly inside (0, 1). With ``tol=0`` exactly ``max_iter`` iterations
    run (the reference); otherwise EM stops when the mean log-likelihood per sample changes
    by less than ``tol``. With ``anchored=True`` every M-step is followed by
    ``anchor_to_ends``, so component 0 must start as the clean one. Returns a dict with
    ``alphas``, ``betas``, ``weights``, ``n_iter``, ``converged``, ``log_likelihood`` (mean
    per sample, final parameters), ``noisy_sum`` (the final fit's p(noisy) summed over ``x``,
    as the components come out of EM) and ``problems`` (the degeneracies met, for a warning).

    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.beta(1, 8, 8000), rng.beta(6, 2, 2000)])
    >>> fit = fit_beta_mixture(x, (1, 2), (2, 1), (0.5, 0.5), max_iter=500, tol=1e-8)
    >>> np.round(fit["weights"], 1)
    array([0.8, 0.2])
    """
    data = _UnitData(np.asarray(x, dtype=np.float64))
    alphas, betas, weights = (np.asarray(v, dtype=np.float64) for v in (alphas, betas, weights))
    previous, converged, problems = -np.inf, False, []
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        r, rx, rx2, loglik = e_step_statistics(
            data, alphas, betas, weights, log_likelihood=tol > 0
        )
        if tol > 0 and abs(loglik - previous) < tol:
            converged = True
            n_iter -= 1  # the parameters did not change in this pass
            break
        previous = loglik
        alphas, betas, weights, step_problems = _m_step(
            data, r, rx, rx2, alphas, betas, weights, anchored
        )
        problems.extend(step_problems)
    # the raw posterior's sum over the data (no floor): the mixture's mean p(noisy) without a pass
    noisy_sum, _, _, final_loglik = e_step_statistics(data, alphas, betas, weights, floor=False)
    return {
        "alphas": alphas,
        "betas": betas,
        "weights": weights,
        "n_iter": n_iter,
        "converged": converged,
        "log_likelihood": final_loglik,
        "noisy_sum": noisy_sum,
        "problems": problems,
    }


def _kmeans_split_init(x, n_steps=30):
    """Initial parameters from a 1-D two-means split of ``x`` (data-driven, order-free)."""
    centers = np.percentile(x, [25, 75])
    for _ in range(n_steps):
        threshold = centers.mean()
        high = x > threshold
        if high.all() or not high.any():
            break
        new = np.array([x[~high].mean(), x[high].mean()])
        if np.allclose(new, centers):
            break
        centers = new
    high = x > centers.mean()
    params = []
    for part in (x[~high], x[high]):
        if part.size < 2:  # one side empty: fall back to a broad component
            params.append((1.0, 1.0, max(part.size, 1) / x.size))
            continue
        alpha, beta, _ = beta_from_moments(part.mean(), part.var())
        params.append((alpha, beta, part.size / x.size))
    alphas, betas, weights = (np.array(v) for v in zip(*params))
    return alphas, betas, weights / weights.sum()


def components_coincide(alphas, betas, rtol=0.05):
    """Whether two Beta components are (nearly) the same distribution.

    >>> components_coincide([0.20, 0.201], [0.5, 0.5]), components_coincide([1, 2], [2, 1])
    (True, False)
    """
    return bool(np.allclose(alphas[0], alphas[1], rtol=rtol) and np.allclose(betas[0], betas[1], rtol=rtol))
