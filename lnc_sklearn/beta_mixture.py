"""Two-component Beta mixture over normalised per-sample losses (Arazo et al., ICML 2019):
``BetaMixtureNoiseDetector``, the scikit-learn estimator. The maths is in
:mod:`lnc_sklearn.beta_em`."""

import numbers
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions

from .base import BaseNoiseDetector
from .beta_em import (PAPER_INIT, DegenerateFitWarning, _kmeans_split_init, anchor_to_ends, beta_from_moments,
                      beta_log_pdf, components_coincide, fit_beta_mixture)

__all__ = [
    "BetaMixtureNoiseDetector",
    "DegenerateFitWarning",
    "beta_log_pdf",
    "beta_from_moments",
    "anchor_to_ends",
    "fit_beta_mixture",
    "components_coincide",
]

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
    degenerate input, a much faster E-step, and a count of the wrong labels with a 90%
    interval and a verdict (``rate_estimate="count"``). ``max_iter=10, tol=0,
    anchored=False, rate_estimate="mixture"`` is the paper's fit exactly.

    How many labels are wrong. A two-component mixture always finds two components, so its
    weight reports noise where there is none (a quarter of the digits on clean labels). By
    default the share of wrong labels ``noise_rate_`` is counted instead, from all the
    evidence given to ``fit`` (:mod:`lnc_sklearn.noise_count`): with the labels and a model's
    predicted probabilities (``pred_probs``), confident learning's count; with the labels
    only, a count from each label's probability ``exp(-loss)`` against the other labels'
    typical confidence, or the group of disbelieved labels that stands apart in log-odds;
    from the losses alone, that group. Where the network gives most samples less than even
    odds (early in training, a weak network, heavy noise) no count holds and the mixture's own
    rate is used. ``noise_rate_interval_`` is a 90% interval and ``noise_count_`` says where the
    rate came from (``source``) and what it supports (``verdict``: "noise", "little or no
    noise" where at most 5% of the labels are even disbelieved, or "cannot tell"). p(noisy) is
    shifted to average the count within each label, and ``predict`` flags the counted samples.
    The count reads the values as cross-entropy (or, with ``input_type="confidence"``, as the
    probabilities given to the labels); on other values the fit warns and uses the mixture's
    rate, and for other losses set ``rate_estimate="mixture"`` yourself.

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
        each side fitted by moments. (``"paper"`` and ``"anchored"``, spellings from before
        ``anchored`` was a parameter of its own, raise a ``ValueError`` naming their
        replacement.)
    anchored : bool, default=True
        After every M-step the clean component may not pile up at the noisy end (its beta
        is kept >= 1) nor the noisy one at the clean end (alpha >= 1), see
        ``anchor_to_ends``; ``False`` gives the paper's plain method-of-moments M-steps.
        Without it the clean component can turn U-shaped, take the cleanest and the noisiest
        samples at once and end with the higher mean; it is then called noisy, and the bulk
        of the samples clean. Where no component tries to pile up at the wrong end it is the
        paper's fit.
    warm_start : bool, default=False
        Start EM from the previous fit's parameters. The normalisation bounds are always
        re-learned. A previous fit whose two components coincide (alphas and betas within
        5% of each other) is not used: two identical components are a fixed point of EM
        that no refit can leave.
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
    rate_estimate : {"count", "mixture"}, default="count"
        Where the noise rate comes from. ``"count"``: the count described above, which
        also shifts p(noisy) and sets what ``predict`` flags. ``"mixture"``: the mean p(noisy)
        of the mixture, whose posterior is used as it is, and ``predict`` is p(noisy) > 0.5
        (the paper's reading). ``"log-odds"``, the count's earlier name, still works and warns.
    min_separation : float, default=2.5
        How far apart (Ashman's D) a group of disbelieved labels must stand from the rest, in
        the losses' log-odds, for the count from losses to take it as the wrong labels.
    classes : array-like, optional
        The class of each column of ``pred_probs``, in column order (a classifier's
        ``classes_``). By default integer labels 0..K-1 are the column numbers and other
        labels map to the columns in sorted order.
    n_bootstrap, random_state : deprecated
        Ignored, with a ``FutureWarning``: the interval needs no resampling any more.

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
    classes_ : ndarray or None
        The given labels' classes (sorted, or the order of ``classes``); None without labels.
    noise_rate_ : float
        The estimated share of wrong labels among the training values.
    noise_rate_interval_ : (float, float) or None
        Its 90% interval (None with ``rate_estimate="mixture"``).
    noise_matrix_ : ndarray of shape (n_classes, n_classes) or None
        With ``pred_probs``: the estimated ``P(given label i | true class j)``, rows and
        columns in ``classes_`` order.
    noise_count_ : NoiseCount or None
        The whole count: ``source`` (where the rate came from), ``verdict`` and ``reason``,
        ``class_rates`` (each label's share of wrong labels, in ``classes_`` order).
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
    >>> round(detector.noise_rate_, 2), int(detector.predict(losses).sum()), detector.noise_count_.verdict
    (0.2, 198, 'noise')
    >>> clean_only = BetaMixtureNoiseDetector().fit(losses[:800])
    >>> clean_only.noise_rate_, clean_only.noise_count_.verdict
    (0.0, 'little or no noise')
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
        "n_bootstrap": "no_validation",
        "random_state": "no_validation",
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
        rate_estimate="count",
        min_separation=2.5,
        classes=None,
        n_bootstrap="deprecated",
        random_state="deprecated",
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
        self.init_params = init_params
        self.anchored = anchored
        self.warm_start = warm_start
        self.n_bootstrap = n_bootstrap
        self.random_state = random_state

    def _validate_params(self):
        if self.init_params in RENAMED_INIT:  # spellings from before anchoring had a parameter of its own
            raise ValueError(
                f"init_params={self.init_params!r} is now {RENAMED_INIT[self.init_params]}: init_params chooses "
                "the start ('fixed', the paper's, or 'kmeans') and anchored the constraint on every M-step"
            )
        warn_deprecated(self, ("n_bootstrap", "random_state"))
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
        return fit["noisy_sum"] if order[1] == 1 else x.size - fit["noisy_sum"]

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


#: Parameters on their way out, and why: set, they are ignored with a ``FutureWarning``.
DEPRECATED = {
    "n_bootstrap": "every fit now gives a 90% interval (noise_rate_interval_) without resampling",
    "random_state": "it seeded the bootstrap, which is gone: the fit and its interval involve no randomness",
}


def warn_deprecated(detector, names):
    """A ``FutureWarning`` for each of ``names`` that is set (they do nothing any more)."""
    for name in names:
        if getattr(detector, name, "deprecated") != "deprecated":
            warnings.warn(f"{name} is ignored and will be removed: {DEPRECATED[name]}", FutureWarning, stacklevel=4)
