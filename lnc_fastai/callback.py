"""``DynamicBootstrapMixUp``: train through label noise with fastai (M-DYR-H / M-DYR-S).

Per training batch: mix the batch with a shuffled copy of itself (one ``lam ~ Beta(alpha,
alpha)`` per batch, as in the paper) and, after the warm-up, bootstrap each partner towards the
network's own prediction in proportion to its probability of being mislabelled. After every
training epoch: one pass over the un-augmented training set gives each sample's cross-entropy
against its given label, in dataset order; the detector is refitted on it and its posterior is
tabulated for the next epoch's batches (:mod:`lnc_fastai.posterior_table`).

The maths lives in :mod:`lnc_fastai.losses`; this module is the fastai glue.
"""

import copy
import functools
import json
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback, CancelBatchException
from fastai.callback.fp16 import AMPMode, MixedPrecision
from fastai.learner import Learner, ValueMetric
from fastai.torch_core import rank_distrib, to_device
from fastcore.xtras import join_path_file
from fastprogress.fastprogress import progress_bar
from sklearn.metrics import roc_auc_score
from torch.distributions.beta import Beta

from lnc_sklearn import BetaMixtureNoiseDetector, DegenerateFitWarning, report_from_probabilities
from lnc_sklearn._atomic import atomic_path
from lnc_sklearn.persistence import detector_from_dict, detector_to_dict

from .distributed import _fix_fastai_broadcast_for_gloo, gather_in_dataset_order, rank_share, unwrap, world
from .losses import (
    bootstrap_targets,
    class_balance_regulariser,
    detector_mixing_weights,
    mixup_bootstrapping_loss,
    sharpening_temperature,
)
from .posterior_table import PosteriorTable, detector_input, noisy_probability

__all__ = ["DynamicBootstrapMixUp"]

# "soft-to-hard" is MD-DYR-SH's soft bootstrapping with targets sharpened towards hard ones.
BOOTSTRAPS = ("hard", "soft", "soft-to-hard")
# The reference clips p(noisy) into this range before mixing and bootstrapping with it.
WEIGHT_CLIP = (1e-4, 1 - 1e-4)
# The reference's MD-DYR-SH milestones, 0-based epochs of its 300-epoch run: detector mixing from
# epoch 105 (1-based 106), bootstrapping from 110 (111), temperature 1 at 110 falling by equal
# steps to 0.001 at 198 (``linspace(1, 0.001, 89)``, one step per epoch).
PAPER_MIXING_ONLY = 5 / 300
PAPER_SHARPENING_LENGTH = 88 / 300


@contextmanager
def eval_mode(model):
    """Put ``model`` in eval mode and afterwards give every submodule back its own mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def mix_inputs(xb, partner, lam):
    """``lam * x + (1 - lam) * x[partner]`` for float inputs, with ``lam`` one number or one per
    sample. Integer inputs (categorical codes of tabular data) cannot be blended; each sample keeps
    the codes of its heavier partner."""
    mixed = []
    for x in xb:
        weight = lam.to(x.device).view(-1, *[1] * (x.ndim - 1)) if torch.is_tensor(lam) else lam
        if torch.is_floating_point(x):
            mixed.append(torch.lerp(x[partner], x, weight.to(x.dtype) if torch.is_tensor(weight) else weight))
        elif torch.is_tensor(weight):
            mixed.append(torch.where(weight >= 0.5, x, x[partner]))
        else:
            mixed.append(x if lam >= 0.5 else x[partner])
    return tuple(mixed)


def _plain(tensor):
    """The tensor as a plain ``torch.Tensor``: fastai's typed tensors (``TensorImage``,
    ``TensorCategory``, ...) refuse to meet each other in torch functions."""
    return tensor.as_subclass(torch.Tensor)


class MixedBatch(NamedTuple):
    """What :meth:`DynamicBootstrapMixUp.before_batch` decided for one training batch."""

    labels: torch.Tensor  # the given labels of the un-mixed batch
    partner: torch.Tensor  # sample i was mixed with sample partner[i]
    input_lam: object  # share of sample i in the mixed input: a float, or a tensor per sample
    loss_lam: object  # weight of sample i's terms in the loss (its partner's: 1 - loss_lam)
    weights: Optional[torch.Tensor]  # p(noisy) per sample, clipped; None without bootstrapping
    targets: Optional[torch.Tensor]  # bootstrapping targets; None without bootstrapping


def _check_targets(yb):
    if len(yb) != 1 or yb[0].ndim != 1 or torch.is_floating_point(yb[0]) or yb[0].dtype == torch.bool:
        shapes = [(tuple(y.shape), str(y.dtype)) for y in yb]
        raise TypeError(
            "DynamicBootstrapMixUp needs one target per sample given as a class index (one 1-D integer "
            f"tensor per batch, as fastai's CategoryBlock gives); got targets of shape/dtype {shapes}"
        )


def _epochs(value, n_epoch, name="warmup"):
    """An epoch given as a number of epochs (int >= 0) or as a fraction of the run (float in [0, 1])."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0:
        return int(value)
    if isinstance(value, float) and 0 <= value <= 1:
        return int(round(value * n_epoch))
    raise ValueError(
        f"{name} must be a number of epochs (int >= 0) or a fraction of the run (float in [0, 1]); got {value!r}"
    )


def _phase_end(start, length, n_epoch, name):
    """The epoch that ends a phase of ``length`` begun at ``start`` (each an int of epochs or a
    float fraction of the run). Two fractions are added before rounding, so that the phase ends
    where the paper's milestone falls in a run of any length."""
    if isinstance(start, float) and isinstance(length, float):
        return _epochs(start + length, n_epoch, f"warmup + {name}") if start + length <= 1 else n_epoch
    return _epochs(start, n_epoch) + _epochs(length, n_epoch, name)


def _check_sharpening(sharpening):
    if sharpening is None:
        return None
    if not (isinstance(sharpening, (tuple, list)) and len(sharpening) == 2):
        raise ValueError(f"sharpening must be a (start, end) pair of epochs or fractions of the run, got {sharpening!r}")
    for value in sharpening:
        _epochs(value, 1, "sharpening")  # validates
    start, end = sharpening
    if isinstance(start, float) == isinstance(end, float) and end < start:
        raise ValueError(f"sharpening must end after it starts, got {sharpening!r}")
    return tuple(sharpening)


class DynamicBootstrapMixUp(Callback):
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
    reg_weight : float
        Weight eta of the class-balance regulariser, applied with bootstrapping (as the reference
        does); 0 switches it off.
    detector : estimator, optional
        Anything with ``fit`` and ``predict_proba`` over a column of per-sample values whose column
        1 is p(noisy); a detector with ``input_type="confidence"`` is given ``exp(-loss)``. The
        default is ``BetaMixtureNoiseDetector()``, refitted from the paper's start (anchored
        M-steps) every epoch as the reference refits (warm-started refits were seen to drift
        into two identical components and stay there). A fit that raises keeps the previous
        fit and warns.
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

    After fitting, ``history`` (a DataFrame, one row per epoch) holds the estimated noise fraction,
    the AUC when ``noise_mask`` was given, and the detector's fitted parameters; ``report()``
    gives one row per training sample. Training uses this callback's own loss; the learner's
    ``loss_func`` is put back after training (and on every cancel) and serves validation.
    """

    order = MixedPrecision.order + 1  # the un-mixed forward in before_batch then runs under autocast
    run_valid = False

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
        _epochs(warmup, 1)  # validates
        _epochs(mixing_only, 1, "mixing_only")  # validates
        self.sharpening, self.detector_mixing = _check_sharpening(sharpening), bool(detector_mixing)
        self.mixing_only = mixing_only
        if detector is None:
            detector = BetaMixtureNoiseDetector()
        elif not (hasattr(detector, "fit") and hasattr(detector, "predict_proba")):
            raise TypeError(f"detector must have fit and predict_proba, got {type(detector).__name__}")
        self.bootstrap, self.alpha, self.warmup, self.reg_weight = bootstrap, float(alpha), warmup, float(reg_weight)
        self.detector = detector
        self.noise_mask = None if noise_mask is None else np.asarray(noise_mask, dtype=bool).ravel()
        self.augmented_tracking, self.keep_trace, self.trace_probs = augmented_tracking, keep_trace, trace_probs
        self.table_size = int(table_size)
        if tracking_bs is not None and not (isinstance(tracking_bs, (int, np.integer)) and tracking_bs > 0):
            raise ValueError(f"tracking_bs must be a positive int or None, got {tracking_bs!r}")
        self.tracking_bs = tracking_bs
        self.distrib = Beta(torch.tensor(self.alpha), torch.tensor(self.alpha))
        self.table = None
        self.epoch_records, self.trace = [], {"losses": [], "p_noisy": [], "probs": []}
        self.failed_fits, self.skipped_batches = [], []  # what went wrong, and when
        self.losses_ = self.labels_ = self.predictions_ = self.p_noisy_ = None
        self._batch = None
        self._old_loss_func = None
        self._model_buffers, self._good_buffers = [], []
        self._progress_columns = []

    # ---- fit-level plumbing ------------------------------------------------------------------
    def before_fit(self):
        self.warmup_epochs = _epochs(self.warmup, self.n_epoch)
        self.bootstrap_epoch = self.warmup_epochs
        if self.detector_mixing:
            self.bootstrap_epoch = _phase_end(self.warmup, self.mixing_only, self.n_epoch, "mixing_only")
        if self.sharpening is None:  # from the start of bootstrapping, for the reference's share of the run
            start = self.bootstrap_epoch
            self.sharpening_epochs = (start, start + _epochs(PAPER_SHARPENING_LENGTH, self.n_epoch, "sharpening"))
        else:
            self.sharpening_epochs = tuple(_epochs(value, self.n_epoch, "sharpening") for value in self.sharpening)
        if self.sharpening_epochs[1] < self.sharpening_epochs[0]:
            raise ValueError(
                f"sharpening must end after it starts; {self.sharpening!r} in a run of {self.n_epoch} epochs "
                f"is epochs {self.sharpening_epochs}"
            )
        n = len(self.dls.train.dataset)
        if self.noise_mask is not None and len(self.noise_mask) != n:
            raise ValueError(f"noise_mask has {len(self.noise_mask)} entries but the training set has {n} samples")
        # Columns in fastai's progress table; the Recorder (order 50) reads metric names after us.
        self._progress_columns = [ValueMetric(self._last_noise_fraction, "noise_frac")]
        if self.noise_mask is not None:
            self._progress_columns.append(ValueMetric(self._last_auc, "noise_auc"))
        self.learn.metrics = list(self.learn.metrics) + self._progress_columns

    def after_fit(self):
        self._restore_loss_func()
        self._model_buffers, self._good_buffers = [], []  # not kept in exports and checkpoints
        if self._progress_columns:
            self.learn.metrics = [m for m in self.learn.metrics if all(m is not ours for ours in self._progress_columns)]
            self._progress_columns = []

    def after_cancel_fit(self):
        self.after_fit()

    def before_train(self):
        self._old_loss_func, self.learn.loss_func = self.learn.loss_func, self._loss
        # Buffers (BatchNorm's running statistics) move in the training forward itself, before the
        # loss can be checked: keep a copy of the last good ones to put back if a batch is skipped.
        self._model_buffers = list(self.model.buffers())
        self._good_buffers = [b.detach().clone() for b in self._model_buffers]

    def _restore_loss_func(self):
        if self._old_loss_func is not None:
            self.learn.loss_func, self._old_loss_func = self._old_loss_func, None
        self._batch = None

    def after_train(self):
        self._restore_loss_func()
        self._track_and_refit()

    def after_cancel_train(self):
        self._restore_loss_func()

    def after_cancel_epoch(self):  # e.g. fastai's SkipToEpoch cancels in before_train
        self._restore_loss_func()

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
        _check_targets(self.yb)
        labels = _plain(self.yb[0])
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
            logits = _plain(model(*xb)).float()
        losses = F.cross_entropy(logits, _plain(labels), reduction="none")
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

    def _loss(self, pred, *yb):
        if not self.training or self._batch is None:
            return self._old_loss_func(pred, *yb)
        labels, partner, _, lam, weights, targets = self._batch
        pred = _plain(pred)
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
        recorded loss, so one bad batch cannot poison the model."""
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

    # ---- per epoch ---------------------------------------------------------------------------
    def _train_dl(self):
        """The training DataLoader, unwrapped from fastai's ``DistributedDL`` in a distributed run."""
        train = self.dls.train
        return train.dl if hasattr(train, "world_size") and hasattr(train, "dl") else train

    def _tracking_loader(self, share=None):
        """The training set in dataset order without shuffling, or only the samples in ``share``."""
        train = self._train_dl()
        bs = self.tracking_bs or 4 * (getattr(train, "bs", None) or getattr(train, "batch_size", None) or 64)
        if hasattr(train, "new"):
            kwargs = {} if share is None else {"get_idxs": lambda: [int(i) for i in share]}
            return train.new(shuffle=False, drop_last=False, bs=bs, **kwargs)
        dataset = train.dataset if share is None else torch.utils.data.Subset(train.dataset, [int(i) for i in share])
        return torch.utils.data.DataLoader(dataset, batch_size=bs, shuffle=False)

    def _autocast(self, device):
        mixed_precision = getattr(self.learn, "mixed_precision", None)
        if mixed_precision is None or device.type != "cuda":
            return nullcontext()
        dtype = torch.bfloat16 if mixed_precision.amp_mode == AMPMode.BF16 else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def per_sample_losses(self):
        """Cross-entropy of every training sample against its given label, in dataset order.

        Returns NumPy arrays ``(losses, labels, predictions, probabilities)``; the model runs in
        eval mode under ``torch.inference_mode()`` on its own device, over the training set with
        validation transforms unless ``augmented_tracking``. In a distributed run each rank computes
        its share and every rank gets the whole set, gathered with the sample indices
        (:mod:`lnc_fastai.distributed`).
        """
        rank, world_size = world()
        dataset = self._train_dl().dataset
        n = len(dataset)
        share, real = rank_share(n, rank, world_size) if world_size > 1 else (None, None)
        dl = self._tracking_loader(share)
        keep_train_tfms = self.augmented_tracking or not hasattr(dataset, "set_split_idx")
        model = unwrap(self.model)  # no collective operations in this pass
        device = next(model.parameters()).device
        mbar = getattr(getattr(self.learn, "progress", None), "mbar", None)
        batches = progress_bar(dl, parent=mbar, leave=False) if hasattr(self.learn, "progress") else dl
        n_inp = getattr(self.dls, "n_inp", None)
        losses, labels, predictions, probabilities = [], [], [], []
        with (
            nullcontext() if keep_train_tfms else dataset.set_split_idx(1),
            torch.inference_mode(),
            eval_mode(model),
            self._autocast(device),
        ):
            for batch in batches:
                batch = to_device(batch, device)
                split = n_inp if n_inp is not None else (1 if len(batch) == 1 else len(batch) - 1)
                xb, yb = batch[:split], batch[split:]
                _check_targets(yb)
                logits, targets = _plain(model(*xb)).float(), _plain(yb[0])
                losses.append(F.cross_entropy(logits, targets, reduction="none"))
                labels.append(targets)
                predictions.append(logits.argmax(dim=1))
                if self.trace_probs:
                    probabilities.append(F.softmax(logits, dim=1).half())
        parts = {"losses": losses, "labels": labels, "predictions": predictions, "probabilities": probabilities}
        values = {name: torch.cat(part) for name, part in parts.items() if part}
        if world_size > 1:
            values = gather_in_dataset_order(
                values, torch.as_tensor(share, device=device), torch.as_tensor(real, device=device), n
            )
        values = {name: value.cpu().numpy() if torch.is_tensor(value) else value for name, value in values.items()}
        return tuple(values.get(name) for name in parts)

    def _track_and_refit(self):
        losses, labels, predictions, probabilities = self.per_sample_losses()
        self.losses_, self.labels_, self.predictions_ = losses, labels, predictions
        finite = np.isfinite(losses)
        if not finite.all():
            warnings.warn(
                f"epoch {self.epoch}: {int((~finite).sum())} of {losses.size} per-sample losses are not finite; "
                "they are left out of the detector's fit",
                RuntimeWarning,
                stacklevel=2,
            )
        candidate, problem = self._refit(losses[finite])
        if problem is None:
            self.detector = candidate
        else:  # keep training on the last good fit
            keeping = "keeping the previous fit" if self.table is not None else "no usable fit yet, not bootstrapping"
            warnings.warn(f"epoch {self.epoch}: {problem}; {keeping}", RuntimeWarning, stacklevel=2)
            self.failed_fits.append({"epoch": self.epoch, "problem": problem})
            if self.table is None:
                self.p_noisy_ = None
                return
        p_noisy = np.full(losses.shape, np.nan)
        if finite.any():
            p_noisy[finite] = noisy_probability(self.detector, losses[finite])
        self.p_noisy_ = p_noisy
        device = next(self.model.parameters()).device
        self.table = PosteriorTable.from_detector(self.detector, losses[finite].max(initial=0.0), self.table_size, device)
        self._record_epoch(losses, p_noisy, probabilities)

    def _refit(self, losses):
        """Fit a copy of the detector on ``losses``; return ``(candidate, problem)``, where
        ``problem`` says why the fit is not usable (it raised, it degenerated, or its p(noisy)
        is not finite or cannot tell samples apart), or is None."""
        candidate = copy.deepcopy(self.detector)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                candidate.fit(detector_input(candidate, losses).reshape(-1, 1))
                p_noisy = noisy_probability(candidate, losses)
            except Exception as error:  # any failure of any detector: training must go on
                return None, f"the detector's fit failed ({type(error).__name__}: {error})"
        for caught_warning in caught:  # pass on what is not ours to judge
            if not issubclass(caught_warning.category, DegenerateFitWarning):
                warnings.warn_explicit(caught_warning.message, caught_warning.category, caught_warning.filename, caught_warning.lineno)
        degenerate = [w for w in caught if issubclass(w.category, DegenerateFitWarning)]
        if degenerate:
            return None, f"the detector's fit degenerated ({degenerate[0].message})"
        if not np.all(np.isfinite(p_noisy)):
            return None, "the detector's fit gave non-finite p(noisy)"
        if p_noisy.size == 0 or np.ptp(p_noisy) < 1e-3:
            return None, "the detector's fit cannot tell samples apart (the same p(noisy) for every sample)"
        return candidate, None

    def _record_epoch(self, losses, p_noisy, probabilities):
        record = {"epoch": self.epoch, "noise_fraction": float(np.nanmean(p_noisy))}
        if self.noise_mask is not None:
            finite = np.isfinite(p_noisy)
            mask = self.noise_mask[finite]
            record["auc"] = float(roc_auc_score(mask, p_noisy[finite])) if 0 < mask.sum() < mask.size else float("nan")
        record.update(fitted_parameters(self.detector))
        self.epoch_records.append(record)
        if self.keep_trace:
            self.trace["losses"].append(losses.astype(np.float32))
            self.trace["p_noisy"].append(p_noisy.astype(np.float32))
            if probabilities is not None:
                self.trace["probs"].append(probabilities)

    def _last_noise_fraction(self):
        return self.epoch_records[-1]["noise_fraction"] if self.epoch_records else float("nan")

    def _last_auc(self):
        return self.epoch_records[-1].get("auc", float("nan")) if self.epoch_records else float("nan")

    # ---- results -----------------------------------------------------------------------------
    @property
    def history(self):
        """One row per tracked epoch: estimated noise fraction, AUC (with a noise mask), parameters."""
        return pd.DataFrame(self.epoch_records)

    def report(self, sort=False, threshold=0.5):
        """One row per training sample, in dataset order (``sort=True``: most suspect first), from
        the last tracked epoch: the columns of :func:`lnc_sklearn.noise_report`.

        ``item`` is the file path or row label where fastai knows it, else the sample's index;
        ``given_class``/``predicted_class`` appear when the data has a vocabulary, ``mean_p_noisy``
        and ``epochs_flagged`` (the sample's history) with ``keep_trace=True``,
        ``given_label_probability`` with ``trace_probs=True``, ``truly_noisy`` with a noise mask.
        Samples whose loss was not finite have no ``p_noisy`` and rank last.
        """
        if self.losses_ is None:
            raise RuntimeError("no epoch has been tracked yet: fit the learner with this callback first")
        n = self.losses_.size
        vocab = getattr(self.dls, "vocab", None)
        names = None
        if vocab is not None and not isinstance(vocab[0], (list, tuple)) and len(vocab) > max(self.labels_.max(), self.predictions_.max()):
            names = [str(v) for v in vocab]
        kept = self.keep_trace and self.trace["p_noisy"]
        return report_from_probabilities(
            self.losses_,
            self.p_noisy_ if self.p_noisy_ is not None else np.full(n, np.nan),
            labels=self.labels_,
            pred_probs=self.trace["probs"][-1].astype(np.float64) if self.trace["probs"] else None,
            predicted_labels=self.predictions_,
            items=self._items(n),
            class_names=names,
            p_noisy_history=np.stack(self.trace["p_noisy"]) if kept else None,
            noise_mask=self.noise_mask,
            threshold=threshold,
            sort=sort,
        )

    def plot_top_suspects(self, k=9, **kwargs):
        """A grid of the ``k`` most suspect training samples; see :func:`lnc_fastai.plot_top_suspects`."""
        from .plots import plot_top_suspects

        return plot_top_suspects(self, k, **kwargs)

    def plot_mixture(self, **kwargs):
        """The last epoch's losses with the fitted mixture; see :func:`lnc_sklearn.plotting.plot_loss_mixture`."""
        from lnc_sklearn.plotting import plot_loss_mixture

        if self.losses_ is None or self.p_noisy_ is None:
            raise RuntimeError("no fitted epoch yet: fit the learner with this callback first")
        finite = np.isfinite(self.losses_)
        mask = None if self.noise_mask is None else self.noise_mask[finite]
        values = detector_input(self.detector, self.losses_[finite])
        return plot_loss_mixture(self.detector, values, noise_mask=mask, **kwargs)

    def plot_history(self, **kwargs):
        """Noise fraction (and ROC-AUC) per epoch; see :func:`lnc_sklearn.plotting.plot_history`."""
        from lnc_sklearn.plotting import plot_history

        if self.noise_mask is not None:
            kwargs.setdefault("true_noise_fraction", float(self.noise_mask.mean()))
        return plot_history(self.history, **kwargs)

    def _items(self, n):
        items = getattr(self._train_dl(), "items", None)
        if items is None or len(items) != n:
            return np.arange(n)
        if isinstance(items, (pd.DataFrame, pd.Series)):
            return items.index.to_numpy()
        if all(isinstance(item, (int, np.integer)) for item in items):
            return np.asarray(items, dtype=np.int64)  # sample indices stay integers
        return np.asarray([str(item) for item in items], dtype=object)  # file paths and the like

    def save_trace(self, path):
        """Write the kept per-epoch losses (and p_noisy, probabilities) to ``path`` as ``.npz``.

        Keys: ``losses`` and ``p_noisy`` (epochs x samples, float32), ``noisy_labels`` (the given
        labels), ``epochs``, and ``probs`` (epochs x samples x classes, float16) and ``changed``
        (the noise mask) when kept/given. The file is written whole or not at all.
        """
        if not self.keep_trace or not self.trace["losses"]:
            raise RuntimeError("no trace kept: create the callback with keep_trace=True and fit first")
        arrays = {
            "losses": np.stack(self.trace["losses"]),
            "p_noisy": np.stack(self.trace["p_noisy"]),
            "noisy_labels": self.labels_,
            "epochs": np.asarray([record["epoch"] for record in self.epoch_records]),
        }
        if self.trace["probs"]:
            arrays["probs"] = np.stack(self.trace["probs"])
        if self.noise_mask is not None:
            arrays["changed"] = self.noise_mask
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
        return path


    # ---- checkpoints -------------------------------------------------------------------------
    STATE_FORMAT = "lnc-callback-state/1"

    def state_dict(self):
        """What the callback has learned, as NumPy arrays plus one JSON string: the detector
        (class, parameters, fitted attributes), the posterior table the next epoch's batches read,
        the history, the last epoch's per-sample results and the trace. No pickle anywhere."""
        try:
            detector = detector_to_dict(self.detector)
        except TypeError as error:
            warnings.warn(f"the detector is not saved ({error}); the table and history are", RuntimeWarning, stacklevel=2)
            detector = None
        meta = {
            "format": self.STATE_FORMAT,
            "detector": detector,
            "epoch_records": self.epoch_records,
            "failed_fits": self.failed_fits,
            "skipped_batches": self.skipped_batches,
            "table_max_loss": None if self.table is None else self.table.max_loss,
        }
        arrays = {"meta": np.array(json.dumps(meta))}
        for name in ("losses_", "labels_", "predictions_", "p_noisy_"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        if self.table is not None:
            arrays["table_p_noisy"] = self.table.p_noisy.cpu().numpy()
        for key, parts in self.trace.items():
            if parts:
                arrays[f"trace_{key}"] = np.stack(parts)
        return arrays

    def load_state_dict(self, arrays):
        """Restore what :meth:`state_dict` gave; ``ValueError`` if it is not such a state."""
        try:
            meta = json.loads(str(arrays["meta"]))
        except (KeyError, ValueError) as error:
            raise ValueError(f"not a DynamicBootstrapMixUp state ({error})") from None
        if not isinstance(meta, dict) or meta.get("format") != self.STATE_FORMAT:
            raise ValueError(f"not a DynamicBootstrapMixUp state (expected format {self.STATE_FORMAT!r})")
        if meta["detector"] is not None:
            self.detector = detector_from_dict(meta["detector"])
        self.epoch_records = meta["epoch_records"]
        self.failed_fits, self.skipped_batches = meta["failed_fits"], meta["skipped_batches"]
        for name in ("losses_", "labels_", "predictions_", "p_noisy_"):
            setattr(self, name, arrays[name] if name in arrays else None)
        self.table = None
        if meta["table_max_loss"] is not None:
            device = next(self.model.parameters()).device if getattr(self, "learn", None) is not None else "cpu"
            self.table = PosteriorTable(meta["table_max_loss"], arrays["table_p_noisy"]).to(device)
        self.trace = {key: list(arrays[f"trace_{key}"]) if f"trace_{key}" in arrays else [] for key in self.trace}

    def save_state(self, path):
        """Write :meth:`state_dict` to ``path`` (``.npz``), whole or not at all. ``learn.save``
        calls this for you, beside the model file."""
        path = Path(path)
        with atomic_path(path) as tmp:
            np.savez(tmp, **self.state_dict())
        return path

    def load_state(self, path):
        """Read a state written by :meth:`save_state` (``allow_pickle=False``; ``ValueError`` if
        the file is not one). ``learn.load`` calls this for you."""
        try:
            with np.load(path, allow_pickle=False) as file:
                arrays = {key: file[key] for key in file.files}
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} is not a DynamicBootstrapMixUp state file: {error}") from None
        self.load_state_dict(arrays)
        return self


def state_path(model_file, cb):
    """Where ``learn.save`` puts ``cb``'s state: beside the model, ``models/ckpt.<cb name>.npz``."""
    return Path(model_file).with_suffix(f".{cb.name}.npz")


def _callbacks(learn):
    return [cb for cb in learn.cbs if isinstance(cb, DynamicBootstrapMixUp)]


def _install_checkpoint_hooks():
    """Make ``Learner.save`` / ``Learner.load`` also save / restore the state of every
    ``DynamicBootstrapMixUp`` on the learner, so that a run resumed from a checkpoint (fastai's
    ``SaveModelCallback`` included) goes on with the same detector, table and history. Learners
    without the callback are not affected."""
    if getattr(Learner.save, "_lnc_state", False):
        return
    fastai_save, fastai_load = Learner.save, Learner.load

    @functools.wraps(fastai_save)
    def save(self, file, **kwargs):
        path = fastai_save(self, file, **kwargs)
        if not rank_distrib():  # like the model, written by the main process only
            for cb in _callbacks(self):
                cb.save_state(state_path(path, cb))
        return path

    @functools.wraps(fastai_load)
    def load(self, file, device=None, **kwargs):
        result = fastai_load(self, file, device=device, **kwargs)
        model_file = join_path_file(file, self.path / self.model_dir, ext=".pth")
        for cb in _callbacks(self):
            path = state_path(model_file, cb)
            if path.exists():
                cb.load_state(path)
            else:
                warnings.warn(f"no {cb.name} state beside {model_file} ({path.name}); the callback keeps its own", RuntimeWarning, stacklevel=2)
        return result

    save._lnc_state = load._lnc_state = True
    Learner.save, Learner.load = save, load


_install_checkpoint_hooks()
_fix_fastai_broadcast_for_gloo()


def fitted_parameters(detector):
    """The detector's learned scalar-or-vector attributes (``alphas_``, ``weights_``, ...), as
    plain floats with the component index appended (``alphas_0``, ``alphas_1``, ...)."""
    parameters = {}
    for name, value in vars(detector).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        value = np.asarray(value) if isinstance(value, (list, tuple, np.ndarray, float, int, np.number)) else None
        if value is None or value.dtype.kind not in "fiu" or value.size > 8:
            continue
        stem = name.rstrip("_")
        if value.ndim == 0:
            parameters[stem] = float(value)
        else:
            parameters.update({f"{stem}_{i}": float(v) for i, v in enumerate(value.ravel())})
    return parameters
