"""``DynamicBootstrapMixUp``: train through label noise with fastai. An adapter: lnc's own mode
is :class:`lnc_fastai.correction.NoiseCorrection` with its :class:`lnc_fastai.policy.TrainingPolicy`
(usable from any PyTorch loop); the paper's methods are :mod:`lnc_fastai.paper`. This module
reads fastai's events, the batches' sample indices and the validation accuracy, and swaps the
loss as fastai's ``MixHandler`` does."""

import warnings

import numpy as np
import torch
from fastai.callback.core import CancelBatchException
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.mixup import MixHandler
from fastai.learner import ValueMetric
from fastai.torch_core import tensor
from torch.distributions.beta import Beta

from .batch_outputs import BatchOutputs
from .batch_reading import BatchReading
from .batches import MixedBatch, check_targets, mix_inputs, plain
from .correction import NoiseCorrection
from .distributed import world
from .losses import mixup_bootstrapping_loss
from .options import MODES, PRESETS, check_options
from .paper import PAPER_OPTIONS, PaperMode
from .pass_inputs import DEFAULT_LIMIT_BYTES, PassInputs
from .pooling import PoolingForward
from .results import ResultsMixin
from .schedule import epochs_of
from .state import StateMixin
from .tracking import TrackingMixin

__all__ = ["DynamicBootstrapMixUp", "PRESETS", "MODES"]

AUTO_TRACKING_EVERY_CPU = 3  # lnc mode's pass every this many epochs on a CPU, outside heavy noise


def _forwarded(name):
    """The callback's attribute ``name``, kept in its NoiseCorrection."""
    return property(lambda self: getattr(self.correction, name), lambda self, value: setattr(self.correction, name, value))


class DynamicBootstrapMixUp(TrackingMixin, BatchReading, ResultsMixin, StateMixin, PaperMode, MixHandler):
    """Mixup with dynamic bootstrapping (Arazo et al., 2019) as a fastai callback.

    ``DynamicBootstrapMixUp()`` is lnc's own mode, for short schedules and unknown, often small,
    noise rates: :class:`lnc_fastai.TrainingPolicy`'s phases (``docs/training.md``), each tracked
    epoch's phase and reason in ``history``. The paper's methods:
    ``DynamicBootstrapMixUp.preset("m-dyr-h" | "m-dyr-s" | "md-dyr-sh", **overrides)``.

    Parameters
    ----------
    alpha : float, optional
        Mixup's ``Beta(alpha, alpha)``. lnc mode: 0.4 (fastai's ``MixUp()``), one draw per sample,
        the larger share on the sample itself. Paper mode: 32, one draw per batch, as published.
    warmup : int or float, optional
        Epochs (an int) or share of the run (a float) before bootstrapping may start: lnc mode
        0.1 (no memorisation call before it), paper mode 0.35 (the switch).
    detector : estimator, optional
        ``fit`` and ``predict_proba`` over a column of per-sample losses (column 1: p(noisy)); a
        detector with ``input_type="confidence"`` gets ``exp(-loss)``. Default: lnc mode
        ``BetaMixtureNoiseDetector()``, given the labels; paper mode the paper's fit. Refitted
        after every tracked epoch; the fit is ``detector_``, and a failed fit keeps the last one.
    noise_mask : array of bool, optional
        Each training sample's true "mislabelled" flag, for experiments: adds the detector's
        ROC-AUC to the history and progress table.
    keep_trace, trace_probs : bool
        Keep every pass's per-sample losses and p(noisy) (and softmax, float16) for ``save_trace``.
    tracking_bs : int, optional
        The loss pass's batch size (default: the training batch on a CPU, four of them on a GPU).
    mode : {"lnc", "paper"}
        lnc's own mode (default) or the paper's.
    policy : TrainingPolicy, optional
        lnc mode's policy with other constants (``TrainingPolicy(memorisation_threshold=0.1)``); by
        default one built from ``alpha`` and ``warmup``.
    **paper_options
        The paper's: ``bootstrap`` ("hard", "soft", "soft-to-hard"), ``reg_weight`` (the class
        balance regulariser, 1), ``detector_mixing``, ``mixing_only``, ``sharpening`` (MD-DYR-SH's
        phases), ``augmented_tracking`` (the pass with training augmentation) and ``table_size``;
        ``bootstrap`` ("hard" or "soft") and ``reg_weight`` also apply to lnc mode.

    Speed settings follow the device (on a CPU: the pass every third epoch outside heavy noise,
    its batches kept, forwards in channels-last order). ``history``: one row per tracked epoch;
    ``report()``: one per sample. Checkpoints: :func:`lnc_fastai.save_checkpoint`.
    """

    order = MixedPrecision.order + 1  # the un-mixed forward in before_batch then runs under autocast
    run_valid = True  # lnc mode counts the validation batches' predictions (after_pred)

    def __init__(self, alpha=None, warmup=None, detector=None, noise_mask=None, keep_trace=False, trace_probs=False,
                 tracking_bs=None, *, mode="lnc", policy=None, **paper_options):
        options = check_options(mode, alpha, warmup, detector, policy, tracking_bs, paper_options)
        super().__init__(options["alpha"])  # MixHandler: self.distrib = Beta(alpha, alpha)
        self.mode, self.alpha, self.warmup, self.detector = mode, options["alpha"], options["warmup"], detector
        self._set_paper_options(**{name: options[name] for name in PAPER_OPTIONS})
        self.correction = NoiseCorrection(detector, options["policy"], self.reg_weight,
                                          self.bootstrap if mode == "lnc" else "hard")
        self.policy = self.correction.policy
        self.noise_mask = None if noise_mask is None else np.asarray(noise_mask, dtype=bool).ravel()
        self.keep_trace, self.trace_probs, self.tracking_bs = keep_trace, trace_probs, tracking_bs
        self.tracking_every, self.keep_pass_inputs, self.channels_last, self.channels_last_pooling = "auto", "auto", "auto", "auto"
        self.table, self.epoch_records, self.trace = None, [], {"losses": [], "p_noisy": [], "probs": []}
        self.skipped_batches, self.valid_fits_, self.epoch_plan_ = [], [], None
        self.stack_y, self._batch, self._valid_hits, self._fitting, self._fresh_run = False, None, None, False, False
        self._model_buffers, self._good_buffers, self._progress_columns = [], [], []
        self._pass_inputs = self._batch_outputs = None
        self.pass_from_batches_, self.channels_last_, self.channels_last_pooling_ = False, False, False
        self._forward, self._observed = PoolingForward(False), False
        self._use_indices, self._epoch_idxs, self._mismatch = True, None, None

    @classmethod
    def preset(cls, name, **overrides):
        """One of the paper's methods as published: ``"m-dyr-h"``, ``"m-dyr-s"`` or ``"md-dyr-sh"``
        (paper mode, alpha 32, warm-up 0.35 of the run, MD-DYR-SH's phases as the reference's),
        with any argument overridden."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
        return cls(**{**PRESETS[name], **overrides})

    # what the passes found lives in the correction (both modes)
    detector_, losses_, labels_ = _forwarded("detector_"), _forwarded("losses_"), _forwarded("labels_")
    predictions_, p_noisy_, noise_flags_ = _forwarded("predictions_"), _forwarded("p_noisy_"), _forwarded("noise_flags_")
    target_average_, confidence_ = _forwarded("target_average_"), _forwarded("confidence_")
    failed_fits = _forwarded("failed_fits")

    # ---- the fit ------------------------------------------------------------------------------
    def before_fit(self):
        # lr_find trains a few epochs and loads the model back: so is what this callback learns
        self._before_lr_find = self._snapshot() if hasattr(self.learn, "lr_finder") else None
        self.warmup_epochs = epochs_of(self.warmup, self.n_epoch)
        on_cpu = next(self.model.parameters(), torch.empty(0)).device.type == "cpu"
        keep = on_cpu if self.keep_pass_inputs == "auto" else self.keep_pass_inputs
        limit = DEFAULT_LIMIT_BYTES if keep is True else int(keep)
        self._pass_inputs = PassInputs(limit) if limit else None  # batches of this fit's passes (on a CPU)
        self.channels_last_ = self.mode == "lnc" and on_cpu if self.channels_last == "auto" else self.channels_last
        self.channels_last_pooling_ = on_cpu if self.channels_last_pooling == "auto" else self.channels_last_pooling
        self._forward = PoolingForward(self.channels_last_pooling_)
        auto = AUTO_TRACKING_EVERY_CPU if on_cpu and self.mode == "lnc" else 1
        self.tracking_every_ = auto if self.tracking_every == "auto" else self.tracking_every
        self._start_paper_phases()
        n = len(self.dls.train.dataset)
        if self.noise_mask is not None and len(self.noise_mask) != n:
            raise ValueError(f"noise_mask has {len(self.noise_mask)} entries but the training set has {n} samples")
        self._progress_columns = [ValueMetric(self._last_noise_rate, "noise_rate")]  # the Recorder reads them after us
        if self.noise_mask is not None:
            self._progress_columns.append(ValueMetric(self._last_auc, "noise_auc"))
        self.learn.metrics = list(self.learn.metrics) + self._progress_columns
        self._use_indices, self._epoch_idxs = world()[1] == 1, None  # fastai's loader tells them in one process
        # a resumed run (fit(..., start_epoch=k) after load_checkpoint) keeps lnc mode's memory;
        # any other fit starts afresh at its first training epoch (validate and get_preds also fit)
        self._fresh_run = not any(type(cb).__name__ == "SkipToEpoch" for cb in self.learn.cbs)
        self.distrib = Beta(tensor(self.alpha), tensor(self.alpha))

    def after_fit(self):
        self._put_loss_back()
        self._fitting, self._fresh_run, self._valid_hits = False, False, None
        if getattr(self, "_before_lr_find", None) is not None:
            self._restore(self._before_lr_find)
            self._before_lr_find = None
        self._model_buffers, self._good_buffers = [], []
        self._pass_inputs = self._batch_outputs = None
        if self._progress_columns:
            self.learn.metrics = [m for m in self.learn.metrics if all(m is not ours for ours in self._progress_columns)]
            self._progress_columns = []

    def after_cancel_fit(self):
        self.after_fit()

    def before_train(self):
        if self._fresh_run:
            self.valid_fits_ = []
            self.correction.start(self.n_epoch)
        elif self.policy.n_epochs != self.n_epoch:  # a resumed run: its memory kept, its length this fit's
            self.policy.set_length(self.n_epoch)
        self._fresh_run, self._fitting, self._observed = False, True, False
        if self.mode == "lnc":
            plan = self.epoch_plan_ = self.correction.epoch_plan(self.epoch)
            last = self.epoch == self.n_epoch - 1  # the last epoch's pass is a whole one
            use = plan.fresh_targets and self._use_indices and self.target_average_ is not None and not last
            self._batch_outputs = (BatchOutputs(len(self.dls.train.dataset), self.target_average_.shape[1],
                                                next(self.model.parameters()).device) if use else None)
        self.stack_y = True  # MixHandler's loss swap, for every loss: targets are class indices here
        self.old_lf, self.learn.loss_func = self.learn.loss_func, self.lf
        # BatchNorm's buffers move in the training forward: a copy of the last good ones for a skipped batch
        self._model_buffers = list(self.model.buffers())
        self._good_buffers = [b.detach().clone() for b in self._model_buffers]

    def _put_loss_back(self):
        MixHandler.after_train(self)
        self.stack_y, self._batch = False, None

    def after_train(self):
        self._put_loss_back()
        if self._mismatch is not None:  # one host synchronisation per epoch
            mismatched, self._mismatch = int(self._mismatch), None
            if mismatched:
                self._stop_using_indices(f"{mismatched} samples of epoch {self.epoch} had other labels than their indices say")
        every = self.tracking_every_
        if self.tracking_every == "auto" and (self.policy.regime == "heavy" or self.policy.memorising_since is not None):
            every = 1  # heavy noise: memorisation is judged pass against pass, and bootstrapping needs fresh targets
        if (self.n_epoch - 1 - self.epoch) % every == 0 or self.table is None:
            self._observed = self._track_and_refit()

    def after_epoch(self):
        """lnc mode: the policy's update after the epoch's pass and its validation."""
        if self.mode != "lnc" or not self._observed or not self.epoch_records:
            return
        self._observed = False
        self._record_policy(self.correction.update(self.epoch, list(self.valid_fits_)))

    def after_cancel_train(self):
        self._put_loss_back()

    def after_cancel_epoch(self):  # e.g. fastai's SkipToEpoch cancels in before_train
        self._put_loss_back()

    # ---- per batch ----------------------------------------------------------------------------
    @property
    def phase(self):
        """This epoch's training: ``"mixup"`` (warm-up, or no usable fit yet), ``"mixing"``
        (detector mixing with plain mixup's loss; paper mode) or ``"bootstrap"``."""
        if self.mode == "lnc":
            plan = self.epoch_plan_
            return "bootstrap" if plan is not None and plan.bootstrap_scale > 0 else "mixup"
        if self.table is None or self.epoch < self.warmup_epochs:
            return "mixup"
        return "bootstrap" if self.epoch >= self.bootstrap_epoch else "mixing"

    bootstrapping = property(lambda self: self.phase == "bootstrap", doc="Whether this epoch's batches bootstrap.")

    def before_batch(self):
        if not self.training:
            return
        check_targets(self.yb)
        labels = plain(self.yb[0])
        partner = torch.randperm(labels.shape[0], device=labels.device)
        if self.mode == "lnc":
            plan = self.epoch_plan_
            lam = self.correction.mixing_weights(plan, labels.shape[0], labels.device)
            weights, targets = self._lnc_weights_and_targets(plan, labels) if plan.bootstrap_scale > 0 else (None, None)
            self._batch = MixedBatch(labels, partner, lam, lam, weights, targets)
        else:
            self._batch = MixedBatch(labels, partner, *self.paper_batch(labels, partner, self.phase))
        self.learn.xb = mix_inputs(self.xb, partner, self._batch.input_lam)
        if self._model_buffers:
            torch._foreach_copy_(self._good_buffers, self._model_buffers)

    def _lnc_weights_and_targets(self, plan, labels):
        """The batch's weights and targets from the last pass by its sample indices (the targets
        from a forward of the un-mixed batch where the plan says ``fresh_targets``); from a
        forward of the batch where the indices are not known."""
        idx = self._batch_index(plan, labels)
        if idx is None:
            weights, targets = self.noise_weights_and_targets(self.xb, labels)
            return weights * plan.bootstrap_scale, targets
        logits = self.unmixed_logits(self.xb) if plan.fresh_targets else None
        if logits is not None and self._batch_outputs is not None:  # the epoch's pass reads this forward
            self._batch_outputs.add(idx, logits, labels)
        return self.correction.batch_targets(plan, idx, labels, logits)

    def lf(self, pred, *yb):
        """The training loss (swapped in as fastai's ``MixHandler`` does): mixup's, each partner
        bootstrapped by its weight once bootstrapping has started, plus the regulariser."""
        if not self.training or self._batch is None:
            return self.old_lf(pred, *yb)
        labels, partner, _, lam, weights, targets = self._batch
        pred = plain(pred)
        if self.mode == "lnc":
            scale = self.epoch_plan_.bootstrap_scale if weights is not None else 0.0
            return self.correction.batch_loss(pred, labels, partner, lam, weights, targets, scale)
        bootstrapping = weights is not None
        if not bootstrapping:  # warm-up or detector mixing alone: plain mixup
            weights = torch.zeros(labels.shape[0], device=pred.device)
            targets = torch.zeros_like(pred, dtype=torch.float32)
        loss = mixup_bootstrapping_loss(pred, labels, labels[partner], targets, targets[partner], weights,
                                        weights[partner], lam).mean()
        return loss + self.paper_regulariser(pred) if self.reg_weight and bootstrapping else loss

    def after_loss(self):
        """Skip a batch whose training loss is not finite: no backward, no step, the buffers its
        forward moved put back, and the batch left out of the recorded loss. The callback's one
        host synchronisation per batch."""
        if not self.training or bool(torch.isfinite(self.learn.loss_grad).all()):
            return
        self.skipped_batches.append({"epoch": self.epoch, "iter": self.iter})
        if self._model_buffers:
            with torch.no_grad():
                torch._foreach_copy_(self._model_buffers, self._good_buffers)
        warnings.warn(f"epoch {self.epoch}, batch {self.iter}: the training loss is not finite "
                      f"({float(self.learn.loss_grad.detach().float().mean())}); the batch is skipped, the optimizer does not step",
                      RuntimeWarning, stacklevel=2)
        self.learn.yb = ()  # the Recorder leaves batches without targets out of the loss it logs
        raise CancelBatchException

