"""What every two-component noise detector shares: input checks, normalisation, and the
monotone posterior read out by ``predict_proba``, ``predict``, ``score`` and friends.

A subclass fits its mixture on values already mapped to the unit interval (0 = cleanest)
and answers three questions about it: the weighted log-density of each component
(``_weighted_log_prob``), the interval outside which its raw posterior would stop rising
(``_monotone_range``), and how many free parameters it has (``_n_parameters``).
"""

import numbers
from abc import ABCMeta, abstractmethod

import numpy as np
from scipy.sparse import issparse
from scipy.special import expit
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

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
    }

    def __init__(self, *, input_type, percentiles, clip_eps, monotone):
        self.input_type = input_type
        self.percentiles = percentiles
        self.clip_eps = clip_eps
        self.monotone = monotone

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
        y : ignored
            Present for API consistency.

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
        return self

    def fit_predict(self, X, y=None):
        """Fit, then return ``predict(X)`` (1 = noisy, 0 = clean)."""
        return self.fit(X, y).predict(X)

    # -- read-outs ------------------------------------------------------------------------
    def predict_proba(self, X):
        """Probability of each sample being clean (column 0) and noisy (column 1).

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
        log_odds = self._log_odds_on_unit(x)
        if self.monotone:
            hold = self.monotone == "hold"
            lo, hi = self._monotone_range()
            for turn, beyond in ((lo, x < lo), (hi, x > hi)):
                if beyond.any():
                    at_turn = self._log_odds_on_unit(np.array([turn], dtype=np.float64))[0]
                    log_odds[beyond] = at_turn if hold else 2 * at_turn - log_odds[beyond]
        p_noisy = expit(log_odds)
        return np.column_stack([1.0 - p_noisy, p_noisy])

    def _log_odds_on_unit(self, x):
        """The mixture's raw log-odds of "noisy" at normalised values ``x``."""
        log_prob = self._weighted_log_prob(x)
        return log_prob[:, 1] - log_prob[:, 0]

    def predict(self, X):
        """1 where a sample is more likely noisy than clean, else 0."""
        return (self.predict_proba(X)[:, 1] > 0.5).astype(np.int64)

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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.one_d_array = True
        return tags
