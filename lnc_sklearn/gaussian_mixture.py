"""Two-component Gaussian mixture baseline, with DivideMix's settings (and lnc's noise count)."""

import numbers

import numpy as np
from sklearn.mixture import GaussianMixture
from sklearn.utils._param_validation import Interval

from .base import BaseNoiseDetector
from .beta_mixture import warn_deprecated

__all__ = ["GaussianMixtureNoiseDetector"]


class GaussianMixtureNoiseDetector(BaseNoiseDetector):
    """Probability that a training sample is mislabelled, from its loss, by a Gaussian mixture.

    The baseline the paper compares against, and DivideMix's detector (Li et al., ICLR
    2020): scikit-learn's ``GaussianMixture`` with two components on min-max normalised
    losses; the component with the higher mean is "noisy". Same interface as
    ``BetaMixtureNoiseDetector``, including its noise count (``noise_rate_``, the scaled p(noisy) and count-based ``predict``);
    ``rate_estimate="mixture"`` is DivideMix's reading exactly.

    Parameters
    ----------
    max_iter : int, default=10
    tol : float, default=1e-2
    reg_covar : float, default=5e-4
        Passed to ``GaussianMixture`` (DivideMix's values).
    n_init : int, default=1
    random_state : int, RandomState instance or None, default=None
        Seeds ``GaussianMixture``'s k-means initialisation.
    warm_start : bool, default=False
        Start from the previous fit's parameters.
    input_type : {"loss", "confidence"}, default="loss"
    percentiles : tuple of two floats, default=(0, 100)
        Min-max normalisation, as DivideMix.
    clip_eps : float, default=0.0
    monotone : {"reflect", "hold"} or bool, default="reflect"
        Keep p(noisy) increasing in the loss (the Gaussian posterior's log-odds is a
        parabola, so it turns at most once); see ``BetaMixtureNoiseDetector``.
    rate_estimate : {"count", "mixture"}, default="count"
    min_separation : float, default=2.5
    classes : array-like, optional
        As in ``BetaMixtureNoiseDetector``.
    n_bootstrap : deprecated
        Ignored, with a ``FutureWarning``.

    Attributes
    ----------
    means_, variances_, weights_ : ndarray of shape (2,)
        Ordered (clean, noisy), on the normalised scale.
    bounds_, n_iter_, converged_, log_likelihood_, n_features_in_
        As in ``BetaMixtureNoiseDetector``.
    classes_, noise_rate_, noise_rate_interval_, noise_matrix_, noise_count_
        As in ``BetaMixtureNoiseDetector``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> losses = np.concatenate([rng.gamma(1.0, 0.2, 800), rng.normal(2.5, 0.4, 200)])
    >>> detector = GaussianMixtureNoiseDetector(random_state=0).fit(losses)
    >>> detector.predict([0.05, 3.0])
    array([0, 1])
    """

    _parameter_constraints: dict = {
        **BaseNoiseDetector._parameter_constraints,
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "reg_covar": [Interval(numbers.Real, 0, None, closed="left")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "n_bootstrap": "no_validation",
    }

    def __init__(
        self,
        *,
        max_iter=10,
        tol=1e-2,
        reg_covar=5e-4,
        n_init=1,
        random_state=None,
        warm_start=False,
        input_type="loss",
        percentiles=(0, 100),
        clip_eps=0.0,
        monotone="reflect",
        rate_estimate="count",
        min_separation=2.5,
        classes=None,
        n_bootstrap="deprecated",
    ):
        super().__init__(
            input_type=input_type,
            percentiles=percentiles,
            clip_eps=clip_eps,
            monotone=monotone,
            rate_estimate=rate_estimate,
            min_separation=min_separation,
            classes=classes,
        )
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.n_bootstrap = n_bootstrap

    def _validate_params(self):
        warn_deprecated(self, ("n_bootstrap",))
        super()._validate_params()

    def _fit_unit(self, x):
        previous = getattr(self, "_gaussian_mixture", None)
        if self.warm_start and previous is not None:
            gmm = previous
            gmm.set_params(max_iter=self.max_iter, tol=self.tol, reg_covar=self.reg_covar)
        else:
            gmm = GaussianMixture(
                n_components=2,
                max_iter=self.max_iter,
                tol=self.tol,
                reg_covar=self.reg_covar,
                n_init=self.n_init,
                random_state=self.random_state,
                warm_start=self.warm_start,
            )
        gmm.fit(x[:, None])
        order = np.argsort(gmm.means_[:, 0], kind="stable")
        self._gaussian_mixture = gmm  # the fitted scikit-learn model, for warm starts
        self.means_ = gmm.means_[order, 0]
        self.variances_ = gmm.covariances_[order].reshape(-1)
        self.weights_ = gmm.weights_[order]
        self.n_iter_ = gmm.n_iter_
        self.converged_ = gmm.converged_
        self.log_likelihood_ = gmm.lower_bound_  # scikit-learn's name; for a GMM it is the mean log-likelihood
        return None

    def _weighted_log_prob(self, x):
        diff = x[:, None] - self.means_
        return (
            -0.5 * (np.log(2 * np.pi * self.variances_) + diff * diff / self.variances_)
            + np.log(self.weights_)
        )

    def _monotone_range(self):
        # log-odds'(x) = x (1/v0 - 1/v1) + (m1/v1 - m0/v0): linear, one sign change at most.
        (m0, m1), (v0, v1) = self.means_, self.variances_
        curvature = 1 / v0 - 1 / v1
        if curvature == 0:
            return -np.inf, np.inf  # equal variances: the log-odds is linear and rising
        turn = (m1 / v1 - m0 / v0) / (1 / v1 - 1 / v0)
        if curvature < 0:  # noisy narrower: a peak at `turn`
            return -np.inf, turn
        return turn, np.inf  # noisy broader: a trough at `turn`

    def _n_parameters(self):
        return 5

    def _density_support(self):
        # Gaussians spill past [0, 1]; six standard deviations hold all but 2e-9 of each.
        spread = 6 * np.sqrt(self.variances_)
        return min(0.0, float(np.min(self.means_ - spread))), max(1.0, float(np.max(self.means_ + spread)))
