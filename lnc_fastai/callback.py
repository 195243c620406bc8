"""``DynamicBootstrapMixUp``: train through label noise with fastai (M-DYR-H, M-DYR-S, MD-DYR-SH).

Per training batch: mix the batch with a shuffled copy of itself (one ``lam ~ Beta(alpha,
alpha)`` per batch, as in the paper) and, after the warm-up, bootstrap each partner towards the
network's own prediction in proportion to its probability of being mislabelled. After every
training epoch: one pass over the un-augmented training set gives each sample's cross-entropy
against its given label, in dataset order; the detector is refitted on it and its posterior is
tabulated for the next epoch's batches.

The callback swaps the learner's loss as fastai's ``MixHandler`` does. The maths lives in
:mod:`lnc_fastai.losses`, the phases in :mod:`lnc_fastai.schedule`, the per-epoch pass and refit
in :mod:`lnc_fastai.tracking`, the results in :mod:`lnc_fastai.results` and checkpoints in
:mod:`lnc_fastai.state`.
"""

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.core import CancelBatchException
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.mixup import MixHandler
from fastai.learner import ValueMetric

from .batches import MixedBatch, check_targets, eval_mode, mix_inputs, plain
from .distributed import unwrap
from .losses import (
    bootstrap_targets,
    class_balance_regulariser,
    detector_mixing_weights,
    mixup_bootstrapping_loss,
    sharpening_temperature,
)
from .results import ResultsMixin
from .schedule import PAPER_MIXING_ONLY, check_sharpening, epochs_of, phase_end, sharpening_epochs
from .state import StateMixin
from .tracking import TrackingMixin

__all__ = ["DynamicBootstrapMixUp"]

# "soft-to-hard" is MD-DYR-SH's soft bootstrapping with targets sharpened towards hard ones.
BOOTSTRAPS = ("hard", "soft", "soft-to-hard")
# The reference clips p(noisy) into this range before mixing and bootstrapping with it.
WEIGHT_CLIP = (1e-4, 1 - 1e-4)


class DynamicBootstrapMixUp(TrackingMixin, ResultsMixin, StateMixin, MixHandler):
    """Mixup with dynamic bootstrapping (Arazo et al., 2019) as a fastai callback.

    Parameters
    ----------
    bootstrap : {"hard", "soft", "soft-to-hard"}
        Bootstrap towards the one-hot argmax (M-DYR-H) or the softmax (M-DYR-S) of the network's
        prediction on the un-mixed sample, or towards the softmax at a temperature that falls from
        1 to 0.001 over ``sharpening`` (MD-DYR-SH's soft-to-hard targets).
    alpha : float
        Mixup's ``Beta(alpha, alpha)``; one mixing weight per batch. The paper uses 32.
    warmup : int or float
        Epochs of plain mixup before bootstrapping starts (an int), or that fraction of the run (a
        float in [0, 1]). The default 0.35 is the paper's 105 of 300 epochs. The detector is
        refitted after every epoch, warm-up included.
    reg_weight : float
        Weight eta of the class-balance regulariser, applied with bootstrapping (as the reference
        does); 0 switches it off.
    detector : estimator, optional
        Anything with ``fit`` and ``predict_proba`` over a column of per-sample values whose column
        1 is p(noisy); a detector with ``input_type="confidence"`` is given ``exp(-loss)``. None
        (the default) means ``BetaMixtureNoiseDetector(rate_estimate="mixture")``, refitted from
        the paper's start (anchored M-steps) every epoch as the reference refits, its p(noisy)
        read off the mixture as the paper's methods use it. ``BetaMixtureNoiseDetector()``
        instead (noise rate from the log-odds) scales every p(noisy) to its noise count: 0, so
        plain mixup, where it finds no noise. The argument is kept as given; the fitted copy is
        ``detector_``. A fit that raises keeps the previous fit and warns.
    detector_mixing : bool
        After the warm-up, mix each pair in proportion to how clean the detector finds each
        partner, ``(1 - w_a) / ((1 - w_a) + (1 - w_b))``, instead of one ``Beta(alpha, alpha)``
        draw per batch (MD-DYR-SH, the paper's choice at 90% noise). As in the reference code,
        the first ``mixing_only`` epochs after the warm-up mix the inputs this way but train with
        plain mixup's loss (a fresh ``Beta(alpha, alpha)`` draw per batch weighs the two labels,
        no bootstrapping, no regulariser); bootstrapping starts after them, and its loss weighs
        the two partners' terms 0.5 / 0.5 whatever their share of the input, as the reference
        does. (Weighing them by their input share instead, lnc's earlier reading, trained worse:
        ``benchmarks/results/md_dyr_sh_variants_digits.md``.)
    mixing_only : int or float
        With ``detector_mixing``: epochs (an int) or fraction of the run (a float) of detector
        mixing before bootstrapping starts. The default is the reference's 5 of 300 epochs;
        with a fractional ``warmup`` the two fractions are added before rounding, so the phase
        ends where the paper's epoch 110 of 300 falls in a run of any length.
    sharpening : (start, end), optional
        Epochs (ints) or fractions of the run (floats) over which the "soft-to-hard" temperature
        falls linearly from 1 to 0.001 (one step per epoch). By default it starts with
        bootstrapping and falls over 88/300 of the run, as the reference's
        ``linspace(1, 0.001, 89)`` does from its epoch 111 to 199 (1-based) of 300.
    noise_mask : array of bool, optional
        The true "is mislabelled" flag of each training sample, in dataset order, for
        experiments: adds the detector's ROC-AUC to the history and the progress table.
    augmented_tracking : bool
        Compute the per-epoch losses with training augmentation, as the reference code does.
        Default False: validation-time transforms, so a sample's loss does not depend on its crop.
    keep_trace : bool
        Keep every epoch's per-sample losses and p(noisy) for :meth:`save_trace`.
    trace_probs : bool
        Also keep each epoch's softmax outputs (as float16) in the trace.
    table_size : int
        Grid points of the posterior table the batches read p(noisy) from.
    tracking_bs : int, optional
        Batch size of the per-epoch loss pass (no gradients are kept, so it can be larger than
        the training batch); default four times the training batch size.

    After fitting, ``detector_`` is the last usable fit, ``history`` (a DataFrame, one row per
    epoch) holds the estimated noise rate (``noise_rate``, the log-odds count of
    :class:`lnc_sklearn.BetaMixtureNoiseDetector`, whichever detector trains; shown in the
    progress table), how clearly the wrong labels stand apart (``noise_separation``), the mean
    p(noisy) the training weights come from (``noise_fraction``), the AUC when ``noise_mask``
    was given, and the detector's fitted parameters; ``report()`` gives one row per training sample. Training uses
    this callback's own loss (``lf``, swapped in as fastai's ``MixHandler`` does); the learner's
    ``loss_func`` is put back after training (and on every cancel) and serves validation.
    Checkpoints: :func:`lnc_fastai.save_checkpoint`, :class:`lnc_fastai.SaveModelWithState`.
    """

    order = MixedPrecision.order + 1  # the un-mixed forward in before_batch then runs under autocast

    def __init__(
        self,
        bootstrap="hard",
        alpha=32.0,
        warmup=0.35,
        reg_weight=1.0,
        detector=None,
        detector_mixing=False,
        mixing_only=PAPER_MIXING_ONLY,
        sharpening=None,
        noise_mask=None,
        augmented_tracking=False,
        keep_trace=False,
        trace_probs=False,
        table_size=4096,
        tracking_bs=None,
    ):
        if bootstrap not in BOOTSTRAPS:
            raise ValueError(f"bootstrap must be one of {BOOTSTRAPS}, got {bootstrap!r}")
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        if not reg_weight >= 0:
            raise ValueError(f"reg_weight must be >= 0, got {reg_weight!r}")
        epochs_of(warmup, 1)  # validates
        epochs_of(mixing_only, 1, "mixing_only")  # validates
        if detector is not None and not (hasattr(detector, "fit") and hasattr(detector, "predict_proba")):
            raise TypeError(f"detector must have fit and predict_proba, got {type(detector).__name__}")
        if tracking_bs is not None and not (isinstance(tracking_bs, (int, np.integer)) and tracking_bs > 0):
            raise ValueError(f"tracking_bs must be a positive int or None, got {tracking_bs!r}")
        super().__init__(float(alpha))  # MixHandler: self.distrib = Beta(alpha, alpha)
        self.bootstrap, self.alpha, self.warmup, self.reg_weight = bootstrap, float(alpha), warmup, float(reg_weight)
        self.detector, self.detector_mixing, self.mixing_only = detector, bool(detector_mixing), mixing_only
        self.sharpening = check_sharpening(sharpening)
        self.noise_mask = None if noise_mask is None else np.asarray(noise_mask, dtype=bool).ravel()
        self.augmented_tracking, self.keep_trace, self.trace_probs = augmented_tracking, keep_trace, trace_probs
        self.table_size, self.tracking_bs = int(table_size), tracking_bs
        self.detector_ = self.table = None
        self.epoch_records, self.trace = [], {"losses": [], "p_noisy": [], "probs": []}
        self.failed_fits, self.skipped_batches = [], []  # what went wrong, and when
        self.losses_ = self.labels_ = self.predictions_ = self.p_noisy_ = self.noise_flags_ = None
        self.stack_y, self._batch = False, None
        self._model_buffers, self._good_buffers = [], []
        self._progress_columns = []

    # ---- fit-level plumbing ------------------------------------------------------------------
    def before_fit(self):
        # fastai's lr_find trains a few epochs and then loads the model back: do the same for
        # what this callback learns in them.
        self._before_lr_find = self._snapshot() if hasattr(self.learn, "lr_finder") else None
        self.warmup_epochs = epochs_of(self.warmup, self.n_epoch)
        self.bootstrap_epoch = self.warmup_epochs
        if self.detector_mixing:
            self.bootstrap_epoch = phase_end(self.warmup, self.mixing_only, self.n_epoch, "mixing_only")
        self.sharpening_epochs = sharpening_epochs(self.sharpening, self.bootstrap_epoch, self.n_epoch)
        n = len(self.dls.train.dataset)
        if self.noise_mask is not None and len(self.noise_mask) != n:
            raise ValueError(f"noise_mask has {len(self.noise_mask)} entries but the training set has {n} samples")
        # Columns in fastai's progress table; the Recorder (order 50) reads metric names after us.
        self._progress_columns = [ValueMetric(self._last_noise_rate, "noise_rate")]
        if self.noise_mask is not None:
            self._progress_columns.append(ValueMetric(self._last_auc, "noise_auc"))
        self.learn.metrics = list(self.learn.metrics) + self._progress_columns

    def after_fit(self):
        self._put_loss_back()
        if getattr(self, "_before_lr_find", None) is not None:
            self._restore(self._before_lr_find)
            self._before_lr_find = None
        self._model_buffers, self._good_buffers = [], []  # not kept in exports and checkpoints
        if self._progress_columns:
            self.learn.metrics = [m for m in self.learn.metrics if all(m is not ours for ours in self._progress_columns)]
            self._progress_columns = []

    def after_cancel_fit(self):
        self.after_fit()

    def before_train(self):
        # The loss swap of fastai's MixHandler, for every loss: targets are class indices here.
        self.stack_y = True
        self.old_lf, self.learn.loss_func = self.learn.loss_func, self.lf
        # Buffers (BatchNorm's running statistics) move in the training forward itself, before the
        # loss can be checked: keep a copy of the last good ones to put back if a batch is skipped.
        self._model_buffers = list(self.model.buffers())
        self._good_buffers = [b.detach().clone() for b in self._model_buffers]

    def _put_loss_back(self):
        MixHandler.after_train(self)  # the learner's own loss_func again
        self.stack_y, self._batch = False, None

    def after_train(self):
        self._put_loss_back()
        self._track_and_refit()

    def after_cancel_train(self):
        self._put_loss_back()

    def after_cancel_epoch(self):  # e.g. fastai's SkipToEpoch cancels in before_train
        self._put_loss_back()

    # ---- per batch ---------------------------------------------------------------------------
    @property
    def phase(self):
        """This epoch's training: ``"mixup"`` (warm-up, or no usable fit yet), ``"mixing"``
        (detector mixing with plain mixup's loss; ``detector_mixing`` only) or ``"bootstrap"``."""
        if self.table is None or self.epoch < self.warmup_epochs:
            return "mixup"
        return "bootstrap" if self.epoch >= self.bootstrap_epoch else "mixing"

    @property
    def bootstrapping(self):
        """Whether this epoch's batches bootstrap (past the warm-up and, with ``detector_mixing``,
        the detector-mixing-only epochs, with a fitted detector)."""
        return self.phase == "bootstrap"

    def before_batch(self):
        if not self.training:
            return
        check_targets(self.yb)
        labels = plain(self.yb[0])
        partner = torch.randperm(labels.shape[0], device=labels.device)
        lam = float(self.distrib.sample())
        input_lam = loss_lam = lam
        weights = targets = None
        phase = self.phase
        if phase != "mixup":
            weights, targets = self.noise_weights_and_targets(self.xb, labels)
            if self.detector_mixing:
                input_lam = detector_mixing_weights(weights, weights[partner])
                if phase == "bootstrap":  # the reference weighs the partners' loss terms half and half
                    loss_lam = 0.5
            if phase == "mixing":  # the loss is plain mixup's, with the fresh draw
                weights = targets = None
        self._batch = MixedBatch(labels, partner, input_lam, loss_lam, weights, targets)
        self.learn.xb = mix_inputs(self.xb, partner, input_lam)
        if self._model_buffers:
            torch._foreach_copy_(self._good_buffers, self._model_buffers)

    def noise_weights_and_targets(self, xb, labels):
        """p(noisy) and bootstrapping targets of the un-mixed batch, from ONE forward pass without
        gradients in eval mode (so BatchNorm's running statistics do not move), all on the device."""
        model = unwrap(self.model)  # this rank's copy: no collective operation per batch
        with torch.no_grad(), eval_mode(model):
            logits = plain(model(*xb)).float()
        losses = F.cross_entropy(logits, plain(labels), reduction="none")
        self.table.to(losses.device)
        kind = "soft" if self.bootstrap == "soft-to-hard" else self.bootstrap
        weights = self.table(losses).clamp_(*WEIGHT_CLIP)
        return weights, bootstrap_targets(logits, kind, self.temperature)

    @property
    def temperature(self):
        """This epoch's temperature of the bootstrapping targets (1 except for "soft-to-hard")."""
        if self.bootstrap != "soft-to-hard":
            return 1.0
        return sharpening_temperature(self.epoch, *self.sharpening_epochs)

    def lf(self, pred, *yb):
        """The training loss (fastai's ``MixHandler`` swaps it in): mixup's, with each partner
        bootstrapped by its p(noisy) once bootstrapping has started, plus the regulariser."""
        if not self.training or self._batch is None:
            return self.old_lf(pred, *yb)
        labels, partner, _, lam, weights, targets = self._batch
        pred = plain(pred)
        bootstrapping = weights is not None
        if not bootstrapping:  # warm-up or detector mixing alone: plain mixup, i.e. bootstrapping weight 0
            weights = torch.zeros(labels.shape[0], device=pred.device)
            targets = torch.zeros_like(pred, dtype=torch.float32)
        loss = mixup_bootstrapping_loss(
            pred, labels, labels[partner], targets, targets[partner], weights, weights[partner], lam
        ).mean()
        if self.reg_weight and bootstrapping:
            loss = loss + self.reg_weight * class_balance_regulariser(pred)
        return loss

    def after_loss(self):
        """Skip a batch whose training loss is not finite: no backward, no optimizer step, the
        buffers (BatchNorm statistics) its forward moved put back, and the batch left out of the
        recorded loss, so one bad batch cannot poison the model. This check is the callback's one
        host synchronisation per batch."""
        if not self.training or bool(torch.isfinite(self.learn.loss_grad).all()):
            return
        self.skipped_batches.append({"epoch": self.epoch, "iter": self.iter})
        if self._model_buffers:
            with torch.no_grad():
                torch._foreach_copy_(self._model_buffers, self._good_buffers)
        warnings.warn(
            f"epoch {self.epoch}, batch {self.iter}: the training loss is not finite "
            f"({float(self.learn.loss_grad.detach().float().mean())}); the batch is skipped, the optimizer does not step",
            RuntimeWarning,
            stacklevel=2,
        )
        self.learn.yb = ()  # the Recorder leaves batches without targets out of the loss it logs
        raise CancelBatchException
