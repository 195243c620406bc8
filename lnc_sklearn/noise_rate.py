"""The log-odds count: whether a group of disbelieved labels stands apart from the rest, and
how large it is. One of the counts of :mod:`lnc_sklearn.noise_count`, and the one that works
from the losses alone.

A two-component mixture fitted to losses always finds two components, so its weight reports
noise where there is none: on clean labels the hard samples' long tail becomes the "noisy"
component. This count works on the scale where a loss has a meaning:

- A cross-entropy loss ``l`` is the network's probability ``p = exp(-l)`` for the given label;
  the count works on that probability's log-odds ``v = log p - log(1 - p)``, which needs no
  normalisation. Clean samples form one hump (far right for a network that fits them) and
  wrongly labelled samples, whose labels the network does not believe, a hump at ``v < 0``.
- Gaussian mixtures of 2 to ``max_components`` components are fitted to ``v`` (EM from two
  starts, equal slices of the sorted values and a thin lowest slice, keeping the likelier
  fit); several Gaussians may together describe a skewed clean hump.
- In each fit, the lowest components form a candidate group when their mean log-odds is below
  0, they hold fewer than half of the samples and at least 1%. It counts only when it stands
  apart from the rest: Ashman's D between the two groups at least ``min_separation`` (2.5;
  two equal-weight Gaussians are bimodal from 2 on). A heavy clean tail falls off the hump
  without a gap and stays below it; a group of wrong labels sits several spreads away.
- The most separated group over the fits gives the rate: its components' share of the
  samples; no separated group, rate 0.

Losses below ``1e-5`` (``v`` above 11.5) are left out of the fits and counted clean: float32
cross-entropy is quantised there, which makes spikes a mixture chases. The log-odds are binned
(512 bins) before the fits, so the cost does not grow with the data.
"""

import numpy as np
from scipy.special import expit

__all__ = ["label_log_odds", "fit_gaussian_mixture_1d", "separation", "estimate_noise_rate", "shift_to_mean",
           "count_threshold"]

#: Log-odds above which a sample is left out of the fit and counted clean (loss below 1e-5).
SURE_CLEAN_LOG_ODDS = float(np.log((1 - 1e-5) / 1e-5))
#: Log-odds below this are taken as this (a loss of about 60).
LOWEST_LOG_ODDS = -60.0
#: A group of fewer than this share of the values is not counted: a few isolated losses far out
#: (a Gaussian's own tail has them) can stand apart by chance.
MIN_GROUP_SHARE = 0.01
#: The second EM start's lowest slice (a share of the values).
LOW_SLICE = 0.05


def label_log_odds(values, input_type="loss"):
    """Log-odds ``log p - log(1 - p)`` of the probability ``p`` given to the label.

    ``input_type="loss"``: ``p = exp(-loss)`` (the cross-entropy's own probability), so the
    log-odds is ``-log(expm1(loss))``; ``"confidence"``: ``p`` is the value itself. A loss of 0
    (or a confidence of 1) gives ``+inf``.

    >>> [round(float(v), 6) + 0.0 for v in label_log_odds(np.array([np.log(2.0), np.log(4.0)]))]
    [0.0, -1.098612]
    """
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        if input_type == "loss":
            return -np.log(np.expm1(values))
        return np.log(values) - np.log1p(-values)


def _log_sum_exp_rows(a):
    """``log(sum(exp(a), axis=1))`` for finite ``a`` (scipy's ``logsumexp`` costs more than
    the sums themselves on these small arrays)."""
    top = a.max(axis=1)
    return top + np.log(np.exp(a - top[:, None]).sum(axis=1))


def fit_gaussian_mixture_1d(x, n_components, *, counts=None, init=None, cuts=None, max_iter=200, tol=1e-6,
                            reg_covar=1e-4):
    """EM for a 1-D Gaussian mixture, started from ``n_components`` equal-count slices of the
    sorted data (deterministic; ``cuts``, increasing fractions in (0, 1), place the slices'
    ends instead), or from ``init`` (``(weights, means, variances)``, as from an earlier fit). ``counts`` weighs each value (a histogram's bin centres and counts fit like
    the binned data). Returns ``(weights, means, variances, mean_log_likelihood)``.

    >>> x = np.r_[np.linspace(-5, -3, 50), np.linspace(2, 4, 200)]
    >>> w, m, v, _ = fit_gaussian_mixture_1d(x, 2)
    >>> [round(float(a), 2) for a in w], [round(float(a), 2) for a in m]
    ([0.2, 0.8], [-4.0, 3.0])
    """
    x = np.asarray(x, dtype=np.float64)
    c = np.ones_like(x) if counts is None else np.asarray(counts, dtype=np.float64)
    total = c.sum()
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(c[order])
    position = (cum - 0.5 * c[order]) / total
    if cuts is None:
        slot = np.minimum(position * n_components // 1, n_components - 1).astype(int)
    else:
        slot = np.searchsorted(np.asarray(cuts, dtype=np.float64), position, side="right")
    weights, means, variances = (np.empty(n_components) for _ in range(3))
    for k in range(n_components if init is None else 0):
        xs, cs = x[order][slot == k], c[order][slot == k]
        weights[k] = max(cs.sum(), 1e-12) / total
        means[k] = np.average(xs, weights=cs) if cs.sum() > 0 else np.median(x)
        variances[k] = (np.average((xs - means[k]) ** 2, weights=cs) if cs.sum() > 0 else 1.0) + reg_covar
    if init is not None:
        weights, means, variances = (np.array(a, dtype=np.float64) for a in init)
    previous = -np.inf
    log_likelihood = -np.inf
    column, weight_column = x[:, None], c[:, None]
    x2 = x * x
    for _ in range(max_iter):
        diff = column - means
        log_p = diff * diff
        log_p *= -0.5 / variances
        log_p += np.log(weights) - 0.5 * np.log(2 * np.pi * variances)
        top = log_p.max(axis=1, keepdims=True)
        log_p -= top
        np.exp(log_p, out=log_p)
        row_sum = log_p.sum(axis=1, keepdims=True)
        log_likelihood = float(c @ (np.log(row_sum[:, 0]) + top[:, 0]) / total)
        log_p *= weight_column / row_sum  # now the count-weighted responsibilities
        nk = log_p.sum(axis=0) + 1e-12
        weights = nk / total
        means = (x @ log_p) / nk
        variances = np.maximum((x2 @ log_p) / nk - means * means, 0.0) + reg_covar
        if log_likelihood - previous < tol:
            break
        previous = log_likelihood
    return weights, means, variances, log_likelihood


def separation(weights, means, variances, noisy):
    """Ashman's D between two groups of a mixture's components, each group taken as one
    distribution with its mean and variance: ``sqrt(2) |m1 - m0| / sqrt(s0^2 + s1^2)``. Two
    equal-weight Gaussians are bimodal from D > 2 on.

    >>> round(separation([0.5, 0.5], [0.0, 3.0], [1.0, 1.0], np.array([True, False])), 2)
    3.0
    """
    weights, means, variances = (np.asarray(a, dtype=np.float64) for a in (weights, means, variances))
    moments = []
    for group in (~noisy, noisy):
        w = weights[group].sum()
        m = (weights[group] * means[group]).sum() / w
        moments.append((m, (weights[group] * (variances[group] + means[group] ** 2)).sum() / w - m * m))
    (m0, v0), (m1, v1) = moments
    return float(np.sqrt(2) * abs(m0 - m1) / np.sqrt(v0 + v1))


def _binned_log_odds(values, input_type, n_bins, log_odds=None):
    """``(centres, counts, n_total)``: the histogram of the log-odds that the fits use (values
    whose log-odds is above ``SURE_CLEAN_LOG_ODDS`` are not in it, only in ``n_total``);
    ``log_odds``, when given, are the values' log-odds already computed."""
    v_all = label_log_odds(values, input_type) if log_odds is None else log_odds
    if v_all.size == 0 or np.isnan(v_all).any():
        raise ValueError(
            "the noise-rate estimate needs cross-entropy losses >= 0 (or confidences in [0, 1]); "
            "got negative losses or confidences outside [0, 1]"
        )
    # A loss past ~60 (or a confidence of 0) is as wrong as a label gets; the floor keeps the
    # bins finite when a few losses are huge.
    fit_part = np.maximum(v_all[v_all <= SURE_CLEAN_LOG_ODDS], LOWEST_LOG_ODDS)
    if fit_part.size == 0:
        return np.empty(0), np.empty(0), v_all.size
    # About ten values a bin at least: on sparser bins EM fits narrow components to chance clumps.
    counts, edges = np.histogram(fit_part, bins=int(np.clip(fit_part.size // 10, 32, n_bins)))
    centres = 0.5 * (edges[1:] + edges[:-1])
    return centres, counts.astype(np.float64), v_all.size


def _rate_from_bins(centres, counts, n_total, *, min_separation, max_components, max_iter, starts=None):
    """The estimate of :func:`estimate_noise_rate` from binned log-odds; ``starts`` (the
    ``"params"`` of an earlier result) starts each fit from that one's parameters."""
    keep = counts > 0
    centres, counts = centres[keep], counts[keep]
    result = {"rate": 0.0, "separation": 0.0, "fits": [], "params": {}}
    if counts.sum() < 10 or centres.size < 2:
        return result
    share = counts.sum() / n_total  # the rest is counted clean
    best = None
    for k in range(2, max_components + 1):
        if starts is not None:
            fit = fit_gaussian_mixture_1d(centres, k, counts=counts, init=starts[k], max_iter=max_iter)
        else:
            # two starts: equal slices, and a thin lowest slice (a small group of wrong labels at
            # the low end); the fit with the higher likelihood is kept
            tail = np.r_[LOW_SLICE, LOW_SLICE + (1 - LOW_SLICE) * np.arange(1, k - 1) / (k - 1)]
            fit = max((fit_gaussian_mixture_1d(centres, k, counts=counts, cuts=cuts, max_iter=max_iter)
                       for cuts in (None, tail)), key=lambda f: f[3])
        weights, means, variances, _ = fit
        result["params"][k] = (weights, means, variances)
        order = np.argsort(means)
        weights, means, variances = weights[order], means[order], variances[order]
        fit_best = (0.0, None)
        for j in range(1, k):  # the j lowest components against the rest
            noisy = np.arange(k) < j
            if weights[noisy] @ means[noisy] >= 0:  # the group's labels are not disbelieved
                break
            if weights[noisy].sum() * share >= 0.5:  # most samples: a hard class, not wrong labels
                break
            if weights[noisy].sum() * share < MIN_GROUP_SHARE:  # a few isolated losses far out
                continue
            d = separation(weights, means, variances, noisy)
            if d > fit_best[0]:
                fit_best = (d, noisy)
        d, noisy = fit_best
        if noisy is None:
            result["fits"].append({"n_components": k, "separation": 0.0, "rate": 0.0})
            continue
        diff = centres[:, None] - means
        log_p = -0.5 * (diff * diff / variances + np.log(variances)) + np.log(weights)
        resp = np.exp(log_p - _log_sum_exp_rows(log_p)[:, None])
        rate = float(share * (counts @ resp[:, noisy].sum(axis=1)) / counts.sum())
        result["fits"].append({"n_components": k, "separation": d, "rate": rate})
        if best is None or d > best[0]:
            best = (d, rate)
    if best is not None:
        result["separation"] = best[0]
        if best[0] >= min_separation:
            result["rate"] = best[1]
    return result


def estimate_noise_rate(values, input_type="loss", *, min_separation=2.5, max_components=4, n_bins=512,
                        max_iter=200, log_odds=None):
    """Estimate the fraction of wrong labels and how clearly they stand apart.

    Parameters
    ----------
    values : array-like of shape (n_samples,)
        Per-sample cross-entropy losses, or confidences in the given label.
    input_type : {"loss", "confidence"}
    min_separation : float, default=2.5
        The lowest components of a fit count as a noisy group only when their mean log-odds is
        below 0 (the network gives their labels less than even odds) and their Ashman's D from
        the rest is at least this; of the fits' and splits' groups, the most separated is used.
    max_components : int, default=4
        Largest Gaussian mixture tried on the log-odds (2 to ``max_components`` are tried).
    n_bins : int, default=512
        The log-odds are binned into at most this many equal bins (and about ten values a bin
        at least) before the fits (EM on the counts), so a fit costs the same for a thousand
        values or a billion.
    max_iter : int, default=200
        Most EM iterations per fit.

    Returns
    -------
    dict with ``rate`` (estimated fraction of wrong labels among all ``values``; 0 when no fit
    has a separate noisy group), ``separation`` (the largest Ashman's D of a noisy group over
    the fits, 0 if none has components on both sides of 0), and ``fits``: per number of
    components, its separation and rate.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clean = rng.exponential(0.05, 9000)          # losses of samples the network fits
    >>> wrong = rng.normal(4.0, 0.8, 1000).clip(0)   # labels it does not believe
    >>> round(float(estimate_noise_rate(np.r_[clean, wrong])["rate"]), 2)
    0.1
    >>> estimate_noise_rate(clean)["rate"]
    0.0
    """
    centres, counts, n_total = _binned_log_odds(values, input_type, n_bins, log_odds)
    return _rate_from_bins(centres, counts, n_total, min_separation=min_separation,
                           max_components=max_components, max_iter=max_iter)


def shift_to_mean(log_odds, target, *, n_bins=8192, limit=200.0):
    """The constant ``c`` for which ``expit(log_odds + c)`` averages to ``target``.

    Adding one constant to every sample's log-odds keeps their order (and so every ranking
    metric) and moves the mean posterior to the estimated noise rate. ``target`` 0 gives
    ``-inf`` (every posterior 0), 1 gives ``+inf``.

    >>> from scipy.special import expit
    >>> z = np.linspace(-3, 3, 1001)
    >>> c = shift_to_mean(z, 0.1)
    >>> round(float(expit(z + c).mean()), 6)
    0.1
    """
    if target <= 0:
        return -np.inf
    if target >= 1:
        return np.inf
    z = np.clip(np.asarray(log_odds, dtype=np.float64), -limit, limit)
    counts, edges = np.histogram(z, bins=n_bins, range=(-limit, limit))
    centres = 0.5 * (edges[1:] + edges[:-1])
    keep = counts > 0
    centres, weights = centres[keep], counts[keep] / z.size
    low, high = -2 * limit, 2 * limit
    for _ in range(60):  # bisection on the binned values
        mid = 0.5 * (low + high)
        if weights @ expit(centres + mid) < target:
            low = mid
        else:
            high = mid
    c = 0.5 * (low + high)
    p = expit(z + c)  # a Newton step on the values themselves
    slope = float(np.mean(p * (1 - p)))
    if slope > 0:
        c -= (float(p.mean()) - target) / slope
    return float(c)


def count_threshold(values, rate, input_type="loss"):
    """The value from which the ``round(rate * n)`` noisiest of ``values`` are flagged: the
    k-th largest loss (or k-th smallest confidence); ``+inf`` for losses (``-inf`` for
    confidences) when that count is 0. Ties at the threshold are all flagged.

    >>> count_threshold(np.array([0.1, 3.0, 0.2, 2.5]), 0.5)
    2.5
    >>> count_threshold(np.array([0.1, 3.0]), 0.0)
    inf
    """
    values = np.asarray(values, dtype=np.float64)
    k = int(round(rate * values.size))
    if k == 0:
        return float(np.inf) if input_type == "loss" else float(-np.inf)
    noisiness = values if input_type == "loss" else -values
    kth = float(np.partition(noisiness, values.size - k)[values.size - k])
    return kth if input_type == "loss" else -kth
