"""What every two-component noise detector shares: input checks, normalisation, and the
monotone posterior read out by ``predict_proba``, ``predict``, ``score`` and friends.

A subclass fits its mixture on values already mapped to the unit interval (0 = cleanest)
and answers three questions about it: the weighted log-density of each component
(``_weighted_log_prob``), the interval outside which its raw posterior would stop rising
(``_monotone_range``), and how many free parameters it has (``_n_parameters``).
"""

import numbers
import warnings
from abc import ABCMeta, abstractmethod

import numpy as np
from scipy.sparse import issparse
from scipy.special import expit
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .noise_rate import bootstrap_noise_rates, count_noise, count_threshold, shift_to_mean
from .normalization import log_span, percentile_bounds, to_unit_interval

__all__ = ["BaseNoiseDetector"]

# Fewer samples than this cannot support a two-component mixture's five free parameters.
MIN_SAMPLES = 5


class BaseNoiseDetector(DensityMixin, BaseEstimator, metaclass=ABCMeta):
    """Base class of the noise detectors. Not for direct use."""

    _parameter_constraints: dict = {
        "input_type": [StrOptions({"loss", "confidence"})],
        "percentiles": [tuple, list],
        "clip_eps": [Interval(numbers.Real, 0, 0.5, closed="left")],
        "monotone": [StrOptions({"reflect", "hold"}), "boolean"],
        "rate_estimate": [StrOptions({"log-odds", "mixture"})],
        "min_separation": [Interval(numbers.Real, 0, None, closed="left")],
        "n_bootstrap": [Interval(numbers.Integral, 0, None, closed="left")],
    }

    def __init__(self, *, input_type, percentiles, clip_eps, monotone, rate_estimate, min_separation, n_bootstrap):
        self.input_type = input_type
        self.percentiles = percentiles
        self.clip_eps = clip_eps
        self.monotone = monotone
        self.rate_estimate = rate_estimate
        self.min_separation = min_separation
        self.n_bootstrap = n_bootstrap

    # -- subclass hooks -------------------------------------------------------------------
    @abstractmethod
    def _fit_unit(self, x):
        """Fit the mixture on ``x`` in ``[0, 1]``, components in any order."""

    @abstractmethod
    def _weighted_log_prob(self, x):
        """``(n, 2)`` array of ``log weight_k + log p_k(x)``, columns (clean, noisy)."""

    @abstractmethod
    def _monotone_range(self):
        """``(lo, hi)`` such that the posterior of "noisy" is non-decreasing on it."""

    @abstractmethod
    def _n_parameters(self):
        """Number of free parameters of the fitted mixture."""

    @abstractmethod
    def _density_support(self):
        """``(lo, hi)`` on the normalised scale holding all but a negligible part of each
        component's mass (for drawing the densities)."""

    # -- input ----------------------------------------------------------------------------
    def _check_values(self, X, *, reset):
        """Return the values as a float64 vector, accepting a 1-D array or an (n, 1) column."""
        if not issparse(X) and np.ndim(X) == 1:
            X = np.reshape(np.asarray(X), (-1, 1))
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float64, np.float32],
            ensure_min_samples=1 if not reset else MIN_SAMPLES,
        )
        if X.shape[1] != 1:
            raise ValueError(
                f"{type(self).__name__} takes one value per sample (a loss or a "
                "confidence): a 1-D array or an (n_samples, 1) column; got an array "
                f"with shape {X.shape}"
            )
        return X[:, 0].astype(np.float64, copy=False)

    def _validate_settings(self):
        try:
            low, high = (float(p) for p in self.percentiles)
        except (TypeError, ValueError):
            low = high = None
        if low is None or not 0 <= low < high <= 100:
            raise ValueError(
                "percentiles must be two numbers 0 <= low < high <= 100, got "
                f"{self.percentiles!r}"
            )
        return low, high

    def _to_unit(self, values):
        return to_unit_interval(
            values,
            *self.bounds_,
            higher_is_noisier=self.input_type == "loss",
            eps=self.clip_eps,
        )

    # -- fitting --------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Fit the mixture to per-sample values.

        Parameters
        ----------
        X : array-like of shape (n_samples,) or (n_samples, 1)
            One loss (or, with ``input_type="confidence"``, one confidence in the given
            label) per training sample.
        y : array-like of shape (n_samples,), optional
            The given (possibly wrong) label of each sample. With the default
            ``rate_estimate="log-odds"`` the noise is then counted within each label (labels with
            fewer than 200 samples together), which finds wrong labels flipped into a few classes
            that the count over all samples misses; ``predict`` and ``predict_proba`` given the
            labels flag and scale per label. The mixture itself is fitted on all values.

        Returns
        -------
        self : object
            The fitted detector.
        """
        self._validate_params()
        percentiles = self._validate_settings()
        values = self._check_values(X, reset=True)
        self.bounds_ = percentile_bounds(values, percentiles)
        low, high = self.bounds_
        inside = values[(values >= low) & (values <= high)]
        self._fit_unit(self._to_unit(inside))
        self.n_fit_samples_ = inside.size
        self._fit_noise_rate(values, y)
        return self

    def _bootstrap_seed(self):
        """Seed of the bootstrap over samples: the detector's ``random_state`` if it has one."""
        return getattr(self, "random_state", None)

    def _fit_noise_rate(self, values, labels=None):
        """Set ``noise_rate_`` and what goes with it (see the class docstring)."""
        self.log_odds_shift_ = 0.0
        self.noise_separation_ = float("nan")
        self.noise_rate_interval_ = None
        self.noise_evidence_ = None
        self.threshold_ = None
        self.noise_from_mixture_ = None
        self.labels_seen_ = self.label_noise_rates_ = self.label_thresholds_ = self.label_log_odds_shifts_ = None
        method = self.rate_estimate
        if method == "log-odds":
            problem = _log_odds_domain_problem(values, self.input_type)
            if problem is not None:
                warnings.warn(
                    f"rate_estimate='log-odds' needs {problem}; the noise rate is the mixture's mean "
                    "p(noisy) instead (rate_estimate='mixture')",
                    UserWarning,
                    stacklevel=3,
                )
                method = "mixture"
        self.rate_estimate_used_ = method
        raw_log_odds = self._monotone_log_odds(self._to_unit(values))
        p_mixture = expit(raw_log_odds)
        if method == "mixture":
            self.noise_rate_ = float(p_mixture.mean())
            return
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != values.shape:
                raise ValueError(f"y (the given labels) has shape {labels.shape} but X has {values.size} values")
        count = count_noise(values, labels, p_mixture, self.input_type, min_separation=self.min_separation,
                            with_flags=False)
        self.noise_rate_ = count["rate"]
        self.noise_separation_ = float(count["separation"])
        self.noise_from_mixture_ = float(count["from_mixture"])
        if labels is not None:
            names, index, rates = count["names"], count["index"], count["rates"]
            self.labels_seen_ = np.asarray([name for name in names if name is not None])
            self.label_noise_rates_ = rates
            self.label_thresholds_ = np.array([
                count_threshold(values[index == g], rates[g], self.input_type) for g in range(len(names))
            ])
            self.label_log_odds_shifts_ = np.array([
                shift_to_mean(raw_log_odds[index == g], max(rates[g], 0.1 / values.size)) for g in range(len(names))
            ])
        # With no noise found, p(noisy) averages 0.1 / n rather than 0: nothing is flagged, and
        # the posterior still ranks the samples as the loss does.
        self.log_odds_shift_ = shift_to_mean(raw_log_odds, max(self.noise_rate_, 0.1 / values.size))
        self.threshold_ = count_threshold(values, self.noise_rate_, self.input_type)
        if self.n_bootstrap and not self.noise_from_mixture_:  # the mixture's rate has no count to resample
            rates = bootstrap_noise_rates(
                values, self.input_type, self.n_bootstrap, self._bootstrap_seed(), labels=labels,
                min_separation=self.min_separation,
            )
            self.noise_rate_interval_ = (float(np.quantile(rates, 0.05)), float(np.quantile(rates, 0.95)))
            self.noise_evidence_ = float(np.mean(rates > 0))

    def _label_group(self, labels, n):
        """Each sample's group in ``label_*_`` (-1: none, use the overall values), or None when
        the fit had no labels or none are given."""
        if labels is None:
            return None
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"y (the given labels) must have one entry per value ({n}); got shape {labels.shape}")
        if getattr(self, "labels_seen_", None) is None:
            return None
        seen = self.labels_seen_
        group = np.full(n, -1)
        if seen.size:
            try:
                where = np.clip(np.searchsorted(seen, labels), 0, seen.size - 1)
                group = np.where(seen[where] == labels, where, -1)
            except TypeError:  # labels of another type than at fit: none of them was seen
                pass
        pooled = self.label_noise_rates_.size > seen.size  # small labels were counted together
        if pooled:
            group[group == -1] = seen.size  # small and unseen labels: the pooled group
        return group

    def fit_predict(self, X, y=None):
        """Fit, then return ``predict(X, y)`` (1 = noisy, 0 = clean)."""
        return self.fit(X, y).predict(X, y)

    # -- read-outs ------------------------------------------------------------------------
    def predict_proba(self, X, y=None):
        """Probability of each sample being clean (column 0) and noisy (column 1).

        With the default ``rate_estimate="log-odds"``, the mixture's posterior below with one
        constant added to its log-odds so that it averages ``noise_rate_`` over the training
        values; given ``y``, the labels of a fit with labels, each label's constant instead.

        By the method's premise, a higher loss never makes a sample less likely noisy, but
        a fitted mixture's raw posterior can turn: past a peak at the noisy end, where the
        clean component's tail overtakes a narrow noisy one, or (on real losses, often)
        below a trough at the clean end, where a clean component with alpha > 1 vanishes
        at zero and the cleanest samples come out "noisy". The log-odds of these mixtures
        turns at most once, at a point known in closed form, so the fix is exact:

        - ``monotone="reflect"`` (default; ``True`` means the same): beyond the turning
          point the log-odds is reflected about its value there, ``2 f(turn) - f(x)``. The
          posterior is then strictly increasing in the loss (decreasing in the confidence)
          over the whole range and ranks samples exactly as the loss does; it keeps the
          mixture's value up to the turning point, and beyond it moves towards 0 (clean
          end) or 1 (noisy end) as fast as the raw posterior moved the wrong way.
        - ``monotone="hold"``: the posterior is held at its value at the turning point (the
          reference code's fix, applied at both ends and without a table); samples beyond
          it tie.
        - ``monotone=False``: the mixture's raw posterior.
        """
        check_is_fitted(self)
        x = self._to_unit(self._check_values(X, reset=False))
        log_odds = self._monotone_log_odds(x)
        shift = np.full(x.size, getattr(self, "log_odds_shift_", 0.0))  # saved before the shift: none
        group = self._label_group(y, x.size)
        if group is not None:
            shift[group >= 0] = self.label_log_odds_shifts_[group[group >= 0]]
        p_noisy = expit(log_odds + shift)
        return np.column_stack([1.0 - p_noisy, p_noisy])

    def _monotone_log_odds(self, x):
        """The mixture's log-odds of "noisy" at normalised ``x``, made monotone as ``monotone``
        says (before the shift that matches the noise rate)."""
        log_odds = self._log_odds_on_unit(x)
        if self.monotone:
            hold = self.monotone == "hold"
            lo, hi = self._monotone_range()
            for turn, beyond in ((lo, x < lo), (hi, x > hi)):
                if beyond.any():
                    at_turn = self._log_odds_on_unit(np.array([turn], dtype=np.float64))[0]
                    log_odds[beyond] = at_turn if hold else 2 * at_turn - log_odds[beyond]
        return log_odds

    def _log_odds_on_unit(self, x):
        """The mixture's raw log-odds of "noisy" at normalised values ``x``."""
        log_prob = self._weighted_log_prob(x)
        return log_prob[:, 1] - log_prob[:, 0]

    def predict(self, X, y=None):
        """1 for a sample flagged as mislabelled, else 0.

        With ``rate_estimate="log-odds"`` (the default) the flags match the count: a value is
        flagged when it is at least as noisy as ``threshold_``, the ``round(noise_rate_ * n)``-th
        noisiest training value, so on the training data ``noise_rate_`` of the samples are
        flagged (more only where values tie), and none when no noise was found. Given ``y``
        after a fit with labels, each label's own count and threshold (``label_thresholds_``).
        With ``rate_estimate="mixture"``: where p(noisy) > 0.5, as in the paper.
        """
        check_is_fitted(self)
        threshold = getattr(self, "threshold_", None)
        if getattr(self, "rate_estimate_used_", "mixture") == "mixture" or threshold is None:
            return (self.predict_proba(X)[:, 1] > 0.5).astype(np.int64)
        values = self._check_values(X, reset=False)
        thresholds = np.full(values.size, threshold)
        group = self._label_group(y, values.size)
        if group is not None:
            thresholds[group >= 0] = self.label_thresholds_[group[group >= 0]]
        flagged = values >= thresholds if self.input_type == "loss" else values <= thresholds
        return flagged.astype(np.int64)

    def to_unit_interval(self, X):
        """The values on the scale the mixture was fitted on: mapped with the stored bounds,
        0 at the clean end, 1 at the noisy end, clamped into ``[clip_eps, 1 - clip_eps]``."""
        check_is_fitted(self)
        return self._to_unit(self._check_values(X, reset=False))

    def component_densities(self, x):
        """``(n, 2)`` weighted densities ``weight_k * p_k(x)`` (columns clean, noisy) at
        ``x`` on the normalised scale; their sum is the mixture's density there. Each
        column integrates to that component's weight over its support."""
        check_is_fitted(self)
        return np.exp(self._weighted_log_prob(np.asarray(x, dtype=np.float64).ravel()))

    def score_samples(self, X):
        """The mixture's log-density at each value, in the input's own units.

        Inside the fitted bounds this is the density of the normalised value times the
        Jacobian ``1 / (high - low)`` of the normalisation. The mixture is fitted on the values
        inside the bounds only, and values outside them are scored at the bound they are
        clamped to, so this is not a density over the whole line: its exponential does not
        integrate to 1 once the bounds clip data, by an amount that depends on ``percentiles``.
        Compare scores between fits with the same normalisation (same ``percentiles``, same
        training data): EM settings, not ``percentiles``.
        """
        check_is_fitted(self)
        x = self._to_unit(self._check_values(X, reset=False))
        low, high = self.bounds_
        return np.logaddexp.reduce(self._weighted_log_prob(x), axis=1) - log_span(low, high)

    def score(self, X, y=None):
        """Mean of :meth:`score_samples` (higher is better); ``GridSearchCV`` uses it. It compares
        fits of one normalisation (see :meth:`score_samples`), not different ``percentiles``."""
        return float(self.score_samples(X).mean())

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        n = self._check_values(X, reset=False).size
        return -2 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        n = self._check_values(X, reset=False).size
        return -2 * self.score(X) * n + 2 * self._n_parameters()

    def __setstate__(self, state):
        # Detectors pickled before the log-odds noise count had no such parameters: they read
        # p(noisy) and the rate off the mixture, and go on doing so.
        if "rate_estimate" not in state and "input_type" in state:
            state = {"rate_estimate": "mixture", "min_separation": 2.5, "n_bootstrap": 0, **state}
            if type(self).__name__ == "BetaMixtureNoiseDetector":
                state.setdefault("random_state", None)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = True
        return tags


def _log_odds_domain_problem(values, input_type):
    """Why ``values`` cannot be read as a label's probability, or None."""
    if input_type == "loss" and values.min() < 0:
        return f"cross-entropy losses (>= 0); the smallest value is {values.min()!r}"
    if input_type == "confidence" and (values.min() < 0 or values.max() > 1):
        return f"confidences in [0, 1]; the values span [{values.min()!r}, {values.max()!r}]"
    return None
