"""What every two-component noise detector shares: input checks, normalisation, the noise count
and the monotone posterior read out by ``predict_proba``, ``predict``, ``score`` and friends.

A subclass fits its mixture on values already mapped to the unit interval (0 = cleanest)
and answers questions about it: the weighted log-density of each component
(``_weighted_log_prob``), the interval outside which its raw posterior would stop rising
(``_monotone_range``), how many free parameters it has (``_n_parameters``) and where its
densities live (``_density_support``). How the count is read out per sample (flags and the
shifted posterior) is :mod:`lnc_sklearn._readout`'s.
"""

import numbers
import warnings
from abc import ABCMeta, abstractmethod

import numpy as np
from scipy.sparse import issparse
from scipy.special import expit
from sklearn.base import BaseEstimator, DensityMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _readout
from .normalization import log_span, percentile_bounds, to_unit_interval
from .probabilities import check_pred_probs, given_labels, label_columns, label_indices

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
        "rate_estimate": [StrOptions({"count", "mixture", "log-odds"}, deprecated={"log-odds"})],
        "min_separation": [Interval(numbers.Real, 0, None, closed="left")],
        "classes": ["array-like", None],
    }

    def __init__(self, *, input_type, percentiles, clip_eps, monotone, rate_estimate, min_separation, classes):
        self.input_type = input_type
        self.percentiles = percentiles
        self.clip_eps = clip_eps
        self.monotone = monotone
        self.rate_estimate = rate_estimate
        self.min_separation = min_separation
        self.classes = classes

    # -- subclass hooks -------------------------------------------------------------------
    @abstractmethod
    def _fit_unit(self, x):
        """Fit the mixture on ``x`` in ``[0, 1]``; return the sum of the fitted mixture's raw
        p(noisy) over ``x`` where it is at hand (else None)."""

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

    def _labels_and_probs(self, n, y, pred_probs):
        """At fit: the labels as indices into ``classes_`` and the probabilities (or None)."""
        y = given_labels(n, y, pred_probs)
        if y is None:
            return None, None
        if pred_probs is None:
            if self.classes is not None:
                return label_columns(y, len(self.classes), self.classes), None
            return label_indices(y), None
        probs = check_pred_probs(pred_probs, n)
        columns, classes = label_columns(y, probs.shape[1], self.classes)
        return (columns, classes), probs

    # -- fitting --------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, *, pred_probs=None):
        """Fit the mixture to per-sample values and count the wrong labels.

        Parameters
        ----------
        X : array-like of shape (n_samples,) or (n_samples, 1)
            One loss (or, with ``input_type="confidence"``, one confidence in the given
            label) per training sample.
        y : array-like of shape (n_samples,), optional
            The given (possibly wrong) label of each sample: class indices or names. The
            noise is then counted within each label, which finds wrong labels flipped into a
            few classes that a count over all samples misses.
        pred_probs : array-like of shape (n_samples, n_classes), optional
            A model's predicted class probabilities for the same samples (with ``y``): the
            count is then confident learning's, and p(noisy) uses every class's probability.
            Columns are classes in the order of ``classes`` (by default the labels' sorted
            order, as a scikit-learn classifier's ``classes_``; integer labels 0..K-1 are the
            column numbers). Out-of-fold probabilities (``cross_val_predict``) count the
            noise; a model's probabilities on its own training labels under-count the wrong
            labels it has memorised.

        Returns
        -------
        self : object
            The fitted detector.
        """
        percentiles = self._validate_settings()
        values = self._check_values(X, reset=True)
        labels, probs = self._labels_and_probs(values.size, y, pred_probs)
        if probs is not None and self.rate_estimate == "mixture":
            raise ValueError("pred_probs are read by the count (rate_estimate='count'); rate_estimate='mixture' reads "
                             "the mixture alone")
        self.bounds_ = percentile_bounds(values, percentiles)
        low, high = self.bounds_
        inside = (values >= low) & (values <= high)
        inside_sum = self._fit_unit(self._to_unit(values[inside]))
        self.classes_ = None if labels is None else labels[1]
        if self.rate_estimate == "mixture":
            self.noise_rate_ = self._mixture_rate(values, inside, inside_sum)
            self.noise_rate_interval_ = self.noise_matrix_ = self.noise_count_ = None
            self._readout = None
            return self
        if self.rate_estimate == "log-odds":
            warnings.warn("rate_estimate='log-odds' is now called 'count'", FutureWarning, stacklevel=2)
        problem = _domain_problem(values, self.input_type)
        if problem is not None:
            warnings.warn(f"the count needs {problem}; the noise rate is the mixture's mean p(noisy) instead",
                          UserWarning, stacklevel=2)
            self.noise_rate_ = self._mixture_rate(values, inside, None)
            self.noise_rate_interval_ = self.noise_matrix_ = self.noise_count_ = None
            self._readout = None
            return self
        raw_log_odds = self._monotone_log_odds(self._to_unit(values))
        count, self._readout = _readout.fit_readout(
            values, None if labels is None else labels[0], probs, raw_log_odds, self.input_type,
            min_separation=self.min_separation)
        if self.classes_ is not None:
            count = _readout.with_classes(count, self.classes_)
        self.noise_count_ = count
        self.noise_rate_ = count.rate
        self.noise_rate_interval_ = count.interval
        self.noise_matrix_ = count.noise_matrix
        return self

    def _mixture_rate(self, values, inside, inside_sum):
        """The mixture's mean p(noisy) over all values. Where the fit gives the sum over the
        values inside the bounds and no value there needs the monotone fix, the values outside
        (all mapped to the two ends) are added from two read-outs, without a pass over the data."""
        lo, hi = self._monotone_range() if self.monotone else (-np.inf, np.inf)
        ends = np.array([self.clip_eps, 1.0 - self.clip_eps])
        if inside_sum is None or lo > ends[0] or hi < ends[1]:
            return float(expit(self._monotone_log_odds(self._to_unit(values))).mean())
        below = int(np.count_nonzero(values < self.bounds_[0]))
        above = values.size - below - int(inside.sum())
        at_ends = expit(self._log_odds_on_unit(ends))
        clean_end, noisy_end = at_ends if self.input_type == "loss" else at_ends[::-1]
        return float((inside_sum + below * clean_end + above * noisy_end) / values.size)

    def _evidence_at_predict(self, n, y, pred_probs):
        """At predict: ``(label indices or None, probabilities or None)`` as the fit can use them."""
        y = given_labels(n, y, pred_probs)
        if y is None:
            return None, None
        classes = getattr(self, "classes_", None)
        if pred_probs is not None and "posterior" not in (getattr(self, "_readout", None) or {}):
            raise ValueError("this detector was fitted without pred_probs; predict without them, or refit with them")
        if pred_probs is None:
            return (None if classes is None else _readout.class_index(classes, y)), None
        probs = check_pred_probs(pred_probs, n)
        if classes is None or probs.shape[1] != len(classes):
            raise ValueError(f"pred_probs has {probs.shape[1]} columns but the detector was fitted with "
                             f"{'no' if classes is None else len(classes)} classes")
        return label_columns(y, len(classes), classes)[0], probs

    def fit_predict(self, X, y=None, *, pred_probs=None):
        """Fit, then return ``predict(X, y, pred_probs=pred_probs)`` (1 = noisy, 0 = clean)."""
        return self.fit(X, y, pred_probs=pred_probs).predict(X, y, pred_probs=pred_probs)

    # -- read-outs ------------------------------------------------------------------------
    def predict_proba(self, X, y=None, *, pred_probs=None):
        """Probability of each sample being clean (column 0) and noisy (column 1).

        With the default ``rate_estimate="count"``, p(noisy) averages the count: the
        mixture's monotone posterior below with one constant added to its log-odds per given
        label (given ``y``) or over all samples, so that it averages each label's estimated
        share of wrong labels over the training values. Given ``pred_probs`` too (after a fit
        with them), it reads every class's probability instead of the loss: the posterior
        that the label is wrong under the estimated noise matrix, blended with the given
        label's own probability (see :func:`lnc_sklearn._readout.probability_log_odds`), which
        ranks class-conditional noise better than the loss does.

        By the method's premise, a higher loss never makes a sample less likely noisy, but
        a fitted mixture's raw posterior can turn: past a peak at the noisy end, where the
        clean component's tail overtakes a narrow noisy one, or (on real losses, often)
        below a trough at the clean end, where a clean component with alpha > 1 vanishes
        at zero and the cleanest samples come out "noisy". The log-odds of these mixtures
        turns at most once, at a point known in closed form, so the fix is exact:

        - ``monotone="reflect"`` (default; ``True`` means the same): beyond the turning
          point the log-odds is reflected about its value there, ``2 f(turn) - f(x)``. The
          posterior is then strictly increasing in the loss (decreasing in the confidence)
          over the whole range and ranks samples exactly as the loss does.
        - ``monotone="hold"``: the posterior is held at its value at the turning point (the
          reference code's fix, applied at both ends); samples beyond it tie.
        - ``monotone=False``: the mixture's raw posterior.
        """
        check_is_fitted(self)
        values = self._check_values(X, reset=False)
        log_odds = self._monotone_log_odds(self._to_unit(values))
        readout = getattr(self, "_readout", None)
        if readout is not None:
            labels, probs = self._evidence_at_predict(values.size, y, pred_probs)
            log_odds = _readout.shifted_log_odds(readout, log_odds, labels, probs)
        p_noisy = expit(log_odds)
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

    def predict(self, X, y=None, *, pred_probs=None):
        """1 for a sample flagged as mislabelled, else 0.

        With ``rate_estimate="count"`` (the default) the flags match the count: within each
        given label (given ``y``), the ``round(rate * n)`` highest losses of the training
        values and anything at least as noisy, so on the training data the estimated share
        is flagged (more only where values tie). Given ``pred_probs`` too (after a fit with
        them), confident learning's choice instead: per given label ``i`` and class ``j``,
        the estimated number of samples labelled ``i`` that are ``j``, taken where the
        probability of ``j`` most exceeds that of ``i``, of the samples the model does not
        predict as their label. With ``rate_estimate="mixture"``: p(noisy) > 0.5, as in the
        paper.
        """
        check_is_fitted(self)
        readout = getattr(self, "_readout", None)
        if readout is None:
            return (self.predict_proba(X)[:, 1] > 0.5).astype(np.int64)
        values = self._check_values(X, reset=False)
        labels, probs = self._evidence_at_predict(values.size, y, pred_probs)
        noisiness = values if self.input_type == "loss" else -values
        return _readout.flags(readout, noisiness, labels, probs).astype(np.int64)

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
        clamped to, so this is not a density over the whole line. Compare scores between fits
        with the same normalisation (same ``percentiles``, same training data).
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
        super().__setstate__(_readout.migrate_state(type(self).__name__, state))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = True
        return tags


def _domain_problem(values, input_type):
    """Why ``values`` cannot be read as a label's probability, or None."""
    if input_type == "loss" and values.min() < 0:
        return f"cross-entropy losses (>= 0); the smallest value is {values.min()!r}"
    if input_type == "confidence" and (values.min() < 0 or values.max() > 1):
        return f"confidences in [0, 1]; the values span [{values.min()!r}, {values.max()!r}]"
    return None
