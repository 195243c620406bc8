"""The callback's per-epoch work: one pass over the training set for every sample's loss, in
dataset order, and the detector's refit with the checks that decide whether a fit is usable.

The functions take the fastai ``Learner`` (and the detector); :class:`DynamicBootstrapMixUp`
calls them after every training epoch.
"""

import copy
import warnings
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.fp16 import AMPMode
from fastai.torch_core import to_device
from fastprogress.fastprogress import progress_bar

from sklearn.metrics import roc_auc_score

from lnc_sklearn import BetaMixtureNoiseDetector, DegenerateFitWarning
from lnc_sklearn.noise_rate import count_noise

from .batches import check_targets, eval_mode, plain
from .distributed import gather_in_dataset_order, rank_share, unwrap, world
from .posterior_table import PosteriorTable, detector_input, noisy_probability

__all__ = ["training_loader", "tracking_loader", "autocast_for", "per_sample_losses", "refit", "fitted_parameters",
           "default_detector", "TrackingMixin"]


def default_detector():
    """The detector the callback refits when given none: the paper's schedule with anchored
    M-steps, p(noisy) read off the mixture (``rate_estimate="mixture"``), so that the training
    weights are the ones the paper's methods were measured with. The noise count in the history
    comes from the log-odds count all the same (:func:`lnc_sklearn.noise_rate.count_noise`)."""
    return BetaMixtureNoiseDetector(rate_estimate="mixture")


def training_loader(dls):
    """The training DataLoader, unwrapped from fastai's ``DistributedDL`` in a distributed run."""
    train = dls.train
    return train.dl if hasattr(train, "world_size") and hasattr(train, "dl") else train


def tracking_loader(train, bs=None, share=None):
    """``train``'s samples in dataset order without shuffling (or only those in ``share``), in
    batches of ``bs`` (default: four training batches: no gradients are kept)."""
    bs = bs or 4 * (getattr(train, "bs", None) or getattr(train, "batch_size", None) or 64)
    if hasattr(train, "new"):
        kwargs = {} if share is None else {"get_idxs": lambda: [int(i) for i in share]}
        return train.new(shuffle=False, drop_last=False, bs=bs, **kwargs)
    dataset = train.dataset if share is None else torch.utils.data.Subset(train.dataset, [int(i) for i in share])
    return torch.utils.data.DataLoader(dataset, batch_size=bs, shuffle=False)


def autocast_for(learn, device):
    """The learner's mixed precision (fastai's ``MixedPrecision``, which autocasts on CUDA only)
    as a context for a forward outside fastai's batch loop; a null context otherwise."""
    mixed_precision = getattr(learn, "mixed_precision", None)
    if mixed_precision is None or device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if mixed_precision.amp_mode == AMPMode.BF16 else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def per_sample_losses(learn, augmented=False, probabilities=False, bs=None):
    """Cross-entropy of every training sample against its given label, in dataset order.

    Returns NumPy arrays ``(losses, labels, predictions, probabilities)`` (the last None unless
    asked for, then float16). The model runs in eval mode under ``torch.inference_mode()`` and
    the learner's mixed precision, on its own device, over the training set with validation
    transforms unless ``augmented``. In a distributed run each rank computes its share and every
    rank gets the whole set, gathered with the sample indices (:mod:`lnc_fastai.distributed`).
    """
    rank, world_size = world()
    train = training_loader(learn.dls)
    dataset = train.dataset
    n = len(dataset)
    share, real = rank_share(n, rank, world_size) if world_size > 1 else (None, None)
    dl = tracking_loader(train, bs, share)
    keep_train_tfms = augmented or not hasattr(dataset, "set_split_idx")
    model = unwrap(learn.model)  # no collective operations in this pass
    device = next(model.parameters()).device
    mbar = getattr(getattr(learn, "progress", None), "mbar", None)
    batches = progress_bar(dl, parent=mbar, leave=False) if hasattr(learn, "progress") else dl
    n_inp = getattr(learn.dls, "n_inp", None)
    parts = {"losses": [], "labels": [], "predictions": [], "probabilities": []}
    with (
        nullcontext() if keep_train_tfms else dataset.set_split_idx(1),
        torch.inference_mode(),
        eval_mode(model),
        autocast_for(learn, device),
    ):
        for batch in batches:
            batch = to_device(batch, device)
            split = n_inp if n_inp is not None else (1 if len(batch) == 1 else len(batch) - 1)
            xb, yb = batch[:split], batch[split:]
            check_targets(yb)
            logits, targets = plain(model(*xb)).float(), plain(yb[0])
            parts["losses"].append(F.cross_entropy(logits, targets, reduction="none"))
            parts["labels"].append(targets)
            parts["predictions"].append(logits.argmax(dim=1))
            if probabilities:
                parts["probabilities"].append(F.softmax(logits, dim=1).half())
    values = {name: torch.cat(part) for name, part in parts.items() if part}
    if world_size > 1:
        values = gather_in_dataset_order(values, torch.as_tensor(share, device=device), torch.as_tensor(real, device=device), n)
    values = {name: value.cpu().numpy() if torch.is_tensor(value) else value for name, value in values.items()}
    return tuple(values.get(name) for name in parts)


def refit(detector, losses):
    """Fit a copy of ``detector`` on ``losses``; return ``(candidate, problem)``, where
    ``problem`` says why the fit is not usable (it raised, it degenerated, or its p(noisy) is
    not finite or cannot tell samples apart), or is None. Warnings that are not the detector's
    ``DegenerateFitWarning`` are passed on."""
    candidate = copy.deepcopy(detector)
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
    found_none = getattr(candidate, "rate_estimate_used_", None) == "log-odds" and candidate.noise_rate_ == 0
    if p_noisy.size == 0 or (np.ptp(p_noisy) < 1e-3 and not found_none):  # "no noise" is a usable answer
        return None, "the detector's fit cannot tell samples apart (the same p(noisy) for every sample)"
    return candidate, None


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


class TrackingMixin:
    """The callback's after-epoch work: the loss pass, the refit (keeping the last usable fit,
    ``detector_``), the posterior table for the next epoch and the epoch's record."""

    def per_sample_losses(self):
        """Cross-entropy of every training sample against its given label, in dataset order:
        ``(losses, labels, predictions, probabilities)``; see :func:`lnc_fastai.tracking.per_sample_losses`."""
        return per_sample_losses(self.learn, self.augmented_tracking, self.trace_probs, self.tracking_bs)

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
        # Refit a copy of the last fit (a warm-starting detector goes on from it) or of the argument.
        template = next((d for d in (self.detector_, self.detector) if d is not None), None) or default_detector()
        candidate, problem = refit(template, losses[finite])
        if problem is None:
            self.detector_ = candidate
        else:  # keep training on the last good fit
            keeping = "keeping the previous fit" if self.table is not None else "no usable fit yet, not bootstrapping"
            warnings.warn(f"epoch {self.epoch}: {problem}; {keeping}", RuntimeWarning, stacklevel=2)
            self.failed_fits.append({"epoch": self.epoch, "problem": problem})
            if self.table is None:
                self.p_noisy_ = None
                return
        p_noisy = np.full(losses.shape, np.nan)
        if finite.any():
            p_noisy[finite] = noisy_probability(self.detector_, losses[finite])
        self.p_noisy_ = p_noisy
        device = next(self.model.parameters()).device
        self.table = PosteriorTable.from_detector(self.detector_, losses[finite].max(initial=0.0), self.table_size, device)
        self._record_epoch(losses, p_noisy, probabilities, finite)

    def _record_epoch(self, losses, p_noisy, probabilities, finite):
        # the count within each given label; where the network disbelieves most samples, the
        # detector's mean p(noisy) per label (NaNs for an epoch without a finite loss)
        count = count_noise(losses[finite], self.labels_[finite], p_noisy[finite])
        self.noise_flags_ = np.zeros(losses.size, dtype=bool)
        self.noise_flags_[finite] = count["flags"]
        record = {
            "epoch": self.epoch,
            "noise_rate": count["rate"],
            "noise_separation": float(count["separation"]),
            "noise_from_mixture": count["from_mixture"],
            "noise_fraction": float(np.nanmean(p_noisy)),
        }
        if self.noise_mask is not None:
            finite = np.isfinite(p_noisy)
            mask = self.noise_mask[finite]
            record["auc"] = float(roc_auc_score(mask, p_noisy[finite])) if 0 < mask.sum() < mask.size else float("nan")
        record.update({k: v for k, v in fitted_parameters(self.detector_).items() if k not in record})
        self.epoch_records.append(record)
        if self.keep_trace:
            self.trace["losses"].append(losses.astype(np.float32))
            self.trace["p_noisy"].append(p_noisy.astype(np.float32))
            if probabilities is not None:
                self.trace["probs"].append(probabilities)

    def _last_noise_rate(self):
        return self.epoch_records[-1]["noise_rate"] if self.epoch_records else float("nan")

    def _last_auc(self):
        return self.epoch_records[-1].get("auc", float("nan")) if self.epoch_records else float("nan")
