"""Two-component Beta mixture over normalised per-sample losses (Arazo et al., ICML 2019).

The maths lives in small pure functions (``beta_log_pdf``, ``beta_from_moments``,
``e_step_statistics``, ``fit_beta_mixture``); ``BetaMixtureNoiseDetector`` is the
scikit-learn glue on top.

Speed and memory: ``log x`` and ``log(1 - x)`` are computed once per fit, and each EM
iteration streams over them in cache-sized chunks, reducing every chunk to the five sums
the M-step needs. A fit therefore holds three float64 copies of the data (``x``, ``log x``,
``log(1 - x)``) whatever the number of iterations, and never calls ``scipy.stats``.
"""

import numbers
import warnings

import numpy as np
from scipy.special import betaln
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions

from .base import BaseNoiseDetector

__all__ = [
    "BetaMixtureNoiseDetector",
    "DegenerateFitWarning",
    "beta_log_pdf",
    "beta_from_moments",
    "anchor_to_ends",
    "fit_beta_mixture",
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
    per sample, final parameters) and ``problems`` (the degeneracies met, for a warning).

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
    final_loglik = e_step_statistics(data, alphas, betas, weights)[3]
    return {
        "alphas": alphas,
        "betas": betas,
        "weights": weights,
        "n_iter": n_iter,
        "converged": converged,
        "log_likelihood": final_loglik,
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


# init_params values from before anchoring had a parameter of its own, and what they meant.
RENAMED_INIT = {
    "paper": "init_params='fixed', anchored=False (the paper's plain fit)",
    "anchored": "init_params='fixed', anchored=True (the default)",
}


class BetaMixtureNoiseDetector(BaseNoiseDetector):
    """Probability that a training sample is mislabelled, from its loss, by a Beta mixture.

    Fits a two-component Beta mixture to per-sample training losses (or confidences)
    mapped into the unit interval, as in Arazo et al., "Unsupervised Label Noise Modeling
    and Loss Correction" (ICML 2019). The component with the higher mean is "noisy".

    The defaults are the paper's EM schedule (its fixed initialisation, exactly ten EM
    iterations) with lnc's improvements on top: M-steps that keep each component anchored
    to its own end of the range (``anchored=True``), a posterior monotone in the loss over
    the whole range, components always ordered (clean, noisy), valid parameters on
    degenerate input, a much faster E-step, and a noise count that can say "little or no
    noise" (``rate_estimate="log-odds"``, below). ``max_iter=10, tol=0, anchored=False,
    rate_estimate="mixture"`` is the paper's fit exactly.

    How many labels are wrong. A two-component mixture always finds two components, so its
    weight reports noise where there is none (a quarter of the digits on clean labels). By
    default (``rate_estimate="log-odds"``) the count ``noise_rate_`` comes instead from
    :func:`lnc_sklearn.noise_rate.count_noise`: the losses are read as cross-entropy, turned
    into the log-odds of the probability given to the label, and a group of samples counts as
    noise only when the network gives their labels less than even odds and they stand apart
    from the rest (``noise_separation_`` at least ``min_separation``); otherwise
    ``noise_rate_`` is 0, "little or no noise". Given the labels (``fit(losses, y=labels)``)
    this is done within each label, which finds wrong labels flipped into a few classes that
    the count over all samples misses. Where the network gives most samples less than even
    odds, early in training or under heavy noise, the count's premise fails and the mixture's
    own rate is used (``noise_from_mixture_`` is then 1, and there is no bootstrap interval).
    p(noisy) is the mixture's monotone posterior with one constant added to every log-odds so
    that it averages ``noise_rate_`` (the order of the samples, and so every ranking metric,
    is the mixture's), and ``predict`` flags the ``noise_rate_`` share of samples with the
    highest losses. This needs per-sample cross-entropy losses (or, with
    ``input_type="confidence"``, the probabilities given to the labels); on other values
    (negative losses, confidences outside [0, 1]) the fit warns and uses
    ``rate_estimate="mixture"``, and for other losses (squared error, a transformed loss) set
    ``rate_estimate="mixture"`` yourself. Measured on real training traces in
    ``benchmarks/results/detector_quality.md``.

    EM to convergence (``max_iter=1000, tol=1e-6``) and the ``"kmeans"`` start are there to
    opt into; on real training-loss traces they fit the losses better (higher likelihood) but
    estimated the noise rate and p(noisy) worse than the ten-iteration schedule, so they are
    not the default (``benchmarks/results/detector_quality_mixture_fits.md``).

    Parameters
    ----------
    max_iter : int, default=10
        Most EM iterations.
    tol : float, default=0
        EM stops when the mean log-likelihood per sample changes by less than ``tol``.
        ``tol=0`` runs exactly ``max_iter`` iterations (the reference's behaviour) and
        never warns; with ``tol > 0`` a fit that does not converge warns.
    init_params : {"fixed", "kmeans"}, default="fixed"
        How EM starts. ``"fixed"``: the paper's fixed start, alpha=(1, 2), beta=(2, 1),
        weights=(0.5, 0.5). ``"kmeans"``: a 1-D two-means split of the normalised values,
        each side fitted by moments. (Before ``anchored`` was a parameter of its own,
        ``init_params="paper"`` meant the plain fit and ``"anchored"`` the anchored one;
        both spellings now raise a ``ValueError`` naming their replacement.)
    anchored : bool, default=True
        After every M-step the clean component may not pile up at the noisy end (its beta
        is kept >= 1) nor the noisy one at the clean end (alpha >= 1), see
        ``anchor_to_ends``; ``False`` gives the paper's plain method-of-moments M-steps.
        Without it the clean component can turn U-shaped, take the cleanest and the noisiest
        samples at once and end with the higher mean; it is then called noisy, and the bulk
        of the samples clean: on a Fashion-MNIST run at 80% noise this read p(noisy) = 0.26
        on average where 72% were wrong. Over the real traces of
        ``benchmarks/results/detector_quality_mixture_fits.md`` anchoring gave better mean Brier scores
        and noise-rate estimates than the plain fit (not on every trace); where no component
        tries to pile up at the wrong end it is the paper's fit.
    warm_start : bool, default=False
        Start EM from the previous fit's parameters. The normalisation bounds are always
        re-learned. A previous fit whose two components coincide (alphas and betas within
        5% of each other) is not used: two identical components are a fixed point of EM
        that no refit can leave, and on losses piled up at both ends (a network that has
        fitted the clean labels and not the wrong ones) a run of warm-started fits was
        seen to drift into it and stay, reading p(noisy) = weight for every sample.
    input_type : {"loss", "confidence"}, default="loss"
        ``"loss"``: higher means noisier. ``"confidence"`` (the probability given to the
        label, say): higher means cleaner.
    percentiles : tuple of two floats, default=(5, 95)
        Percentiles of the training values that map to 0 and 1; values outside them are
        left out of the fit and clamped when predicting. ``(0, 100)`` is min-max scaling.
    clip_eps : float, default=1e-4
        Normalised values are clamped into ``[clip_eps, 1 - clip_eps]``.
    monotone : {"reflect", "hold"} or bool, default="reflect"
        How p(noisy) is kept increasing in the loss over the whole range (see
        ``predict_proba``); ``False`` gives the mixture's raw posterior.
    rate_estimate : {"log-odds", "mixture"}, default="log-odds"
        Where the noise rate comes from. ``"log-odds"``: the count described above, which
        also scales p(noisy) and sets what ``predict`` flags. ``"mixture"``: the mean p(noisy)
        of the mixture, whose posterior is used as it is and ``predict`` is p(noisy) > 0.5 (the
        paper's reading, and lnc's default before).
    min_separation : float, default=2.5
        With ``"log-odds"``: how far apart (Ashman's D) the group of disbelieved labels must
        stand from the rest to count as noise.
    n_bootstrap : int, default=0
        With ``"log-odds"``: resamples of the training values for ``noise_rate_interval_`` and
        ``noise_evidence_`` (0: none). About 5 ms each (per label, with labels), whatever the
        number of values; the resamples are drawn from the binned log-odds.
    random_state : int, RandomState instance or None, default=None
        Seeds the bootstrap.

    Attributes
    ----------
    alphas_, betas_, weights_ : ndarray of shape (2,)
        Beta parameters and mixing weights, ordered (clean, noisy).
    bounds_ : tuple of float
        ``(low, high)``: the learned percentiles, in the input's units.
    n_iter_ : int
        EM iterations run.
    converged_ : bool
        Whether EM met ``tol`` (always False with ``tol=0``).
    log_likelihood_ : float
        Mean log-likelihood per sample of the values the mixture was fitted on, on the
        normalised scale (not a bound: EM's last step, as the reference runs it).
    n_fit_samples_ : int
        Values inside the bounds, which the mixture was fitted on.
    noise_rate_ : float
        The estimated fraction of wrong labels among the training values (0: little or no
        noise found).
    noise_separation_ : float
        How clearly the disbelieved group stands apart (Ashman's D; NaN with ``"mixture"``).
        Noise is reported from ``min_separation`` on; values well above it (4 and more on the
        benchmark traces) mean a clear group.
    noise_rate_interval_ : (float, float) or None
        The 5th and 95th percentiles of the rate over the bootstrap resamples (None without).
    noise_evidence_ : float or None
        The share of bootstrap resamples that found noise (None without).
    threshold_ : float or None
        The value from which ``predict`` flags a sample (a loss: at or above it; a confidence:
        at or below); ``inf`` (``-inf``) when nothing is flagged; None with ``"mixture"``.
    log_odds_shift_ : float
        The constant added to the mixture's log-odds (0 with ``"mixture"``).
    rate_estimate_used_ : str
        ``rate_estimate``, or ``"mixture"`` where the values could not be read as
        cross-entropy and the fit fell back to it.
    noise_from_mixture_ : float or None
        With ``"log-odds"``: 1 where the rate is the mixture's (the network gives most samples
        less than even odds), else 0; None with ``"mixture"``.
    labels_seen_, label_noise_rates_, label_thresholds_, label_log_odds_shifts_ : ndarray or None
        After a fit with labels: the labels with 200 samples or more, and per label (one more
        entry at the end for the smaller labels together, where there are any) its rate, its
        threshold and its log-odds constant, used by ``predict(X, y)`` and
        ``predict_proba(X, y)``; None after a fit without labels.
    n_features_in_ : int
        Always 1.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> losses = np.concatenate([rng.gamma(1.0, 0.2, 800), rng.normal(2.5, 0.4, 200)])
    >>> detector = BetaMixtureNoiseDetector().fit(losses)
    >>> detector.predict([0.05, 3.0])
    array([0, 1])
    >>> round(detector.noise_rate_, 2), int(detector.predict(losses).sum())
    (0.2, 198)
    >>> clean_only = BetaMixtureNoiseDetector().fit(losses[:800])
    >>> clean_only.noise_rate_, int(clean_only.predict(losses[:800]).sum())
    (0.0, 0)
    >>> p = detector.predict_proba(np.sort(losses))[:, 1]
    >>> bool(np.all(np.diff(p) >= 0))
    True
    """

    _parameter_constraints: dict = {
        **BaseNoiseDetector._parameter_constraints,
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "init_params": [StrOptions({"fixed", "kmeans"})],
        "anchored": ["boolean"],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        max_iter=10,
        tol=0.0,
        init_params="fixed",
        anchored=True,
        warm_start=False,
        input_type="loss",
        percentiles=(5, 95),
        clip_eps=1e-4,
        monotone="reflect",
        rate_estimate="log-odds",
        min_separation=2.5,
        n_bootstrap=0,
        random_state=None,
    ):
        super().__init__(
            input_type=input_type,
            percentiles=percentiles,
            clip_eps=clip_eps,
            monotone=monotone,
            rate_estimate=rate_estimate,
            min_separation=min_separation,
            n_bootstrap=n_bootstrap,
        )
        self.random_state = random_state
        self.max_iter = max_iter
        self.tol = tol
        self.init_params = init_params
        self.anchored = anchored
        self.warm_start = warm_start

    def _validate_params(self):
        if self.init_params in RENAMED_INIT:  # spellings from before anchoring had a parameter of its own
            raise ValueError(
                f"init_params={self.init_params!r} is now {RENAMED_INIT[self.init_params]}: init_params chooses "
                "the start ('fixed', the paper's, or 'kmeans') and anchored the constraint on every M-step"
            )
        super()._validate_params()

    def _initial_parameters(self, x):
        if self.warm_start and hasattr(self, "alphas_") and not components_coincide(self.alphas_, self.betas_):
            return self.alphas_, self.betas_, self.weights_
        if self.init_params == "fixed":
            return PAPER_INIT["alphas"], PAPER_INIT["betas"], PAPER_INIT["weights"]
        return _kmeans_split_init(x)

    def _fit_unit(self, x):
        fit = fit_beta_mixture(
            x,
            *self._initial_parameters(x),
            max_iter=self.max_iter,
            tol=self.tol,
            anchored=self.anchored,
        )
        alphas, betas, weights = fit["alphas"], fit["betas"], fit["weights"]
        order = np.argsort(alphas / (alphas + betas), kind="stable")  # clean = lower mean
        self.alphas_, self.betas_, self.weights_ = alphas[order], betas[order], weights[order]
        self.n_iter_ = fit["n_iter"]
        self.converged_ = fit["converged"]
        self.log_likelihood_ = fit["log_likelihood"]
        if fit["problems"]:
            warnings.warn(
                f"degenerate Beta mixture fit in {len(fit['problems'])} EM step(s), first: "
                f"{fit['problems'][0]}; the parameters were kept valid",
                DegenerateFitWarning,
                stacklevel=3,
            )
        if self.tol > 0 and not self.converged_:
            warnings.warn(
                f"EM did not converge in max_iter={self.max_iter} iterations (tol={self.tol}); "
                "raise max_iter or tol",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _weighted_log_prob(self, x):
        return beta_log_pdf(x[:, None], self.alphas_, self.betas_) + np.log(self.weights_)

    def _monotone_range(self):
        # The posterior's log-odds is const + da log x + db log(1 - x); its slope
        # da / x - db / (1 - x) changes sign at most once, at x* = da / (da + db).
        da, db = np.diff(self.alphas_)[0], np.diff(self.betas_)[0]
        if da >= 0 and db <= 0:  # rises everywhere
            return 0.0, 1.0
        turn = da / (da + db)
        if da > 0:  # rises, then falls past a peak at `turn` (the reference's fix)
            return 0.0, turn
        if db < 0:  # falls, then rises from a trough at `turn` (the clean end's failure)
            return turn, 1.0
        return 0.5, 0.5  # identical components: the posterior is the constant weight

    def _n_parameters(self):
        return 5

    def _density_support(self):
        return 0.0, 1.0
