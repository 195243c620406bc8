"""The callback's per-epoch work: one pass over the training set for every sample's loss, in
dataset order, and the detector's refit with the checks that decide whether a fit is usable.

The functions take the fastai ``Learner`` (and the detector); :class:`DynamicBootstrapMixUp`
calls them after every training epoch.
"""

from contextlib import nullcontext

import numpy as np
import torch
from fastai.callback.fp16 import AMPMode
from fastai.torch_core import to_device
from fastprogress.fastprogress import progress_bar

from sklearn.metrics import roc_auc_score


from .batch_outputs import sample_outputs
from .batches import check_targets, eval_mode, plain
from .correction import default_detector, refit, takes_labels
from .distributed import gather_in_dataset_order, rank_share, unwrap, world
from .posterior_table import PosteriorTable

__all__ = ["training_loader", "tracking_batch_size", "tracking_loader", "autocast_for", "per_sample_losses", "refit", "fitted_parameters",
           "default_detector", "takes_labels", "epoch_indices", "TrackingMixin"]


def epoch_indices(dl):
    """The dataset indices of this epoch's samples in the order fastai's ``DataLoader`` drew them
    (batch ``i`` holds entries ``i * bs`` to ``(i + 1) * bs``), or None where the loader does not
    tell them (a plain PyTorch DataLoader, an iterable dataset). fastai keeps them, without a
    public name, from the start of each iteration; reading them changes nothing."""
    idxs = getattr(dl, "_DataLoader__idxs", None)
    if not isinstance(idxs, (list, tuple, range, np.ndarray)) or len(idxs) == 0:
        return None
    idxs = np.asarray(idxs)
    return idxs if idxs.dtype.kind in "iu" and idxs.ndim == 1 else None


def training_loader(dls):
    """The training DataLoader, unwrapped from fastai's ``DistributedDL`` in a distributed run."""
    train = dls.train
    return train.dl if hasattr(train, "world_size") and hasattr(train, "dl") else train


def tracking_batch_size(train, device=None):
    """The loss pass's default batch size: the training batch's on a CPU, four training batches
    on an accelerator. No gradients are kept, so a GPU fits (and is better used by) larger
    batches; on a CPU an eval forward costs two to three times as much per sample at four training
    batches as at one (measured for both networks of ``benchmarks/callback_overhead.py``: the
    activations of a batch of 512 outgrow the processor's caches)."""
    bs = getattr(train, "bs", None) or getattr(train, "batch_size", None) or 64
    return bs if device is None or torch.device(device).type == "cpu" else 4 * bs


def tracking_loader(train, bs=None, share=None, device=None):
    """``train``'s samples in dataset order without shuffling (or only those in ``share``), in
    batches of ``bs`` (default :func:`tracking_batch_size` for the model's ``device``)."""
    bs = bs or tracking_batch_size(train, device)
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


def per_sample_losses(learn, augmented=False, probabilities=False, bs=None, inputs=None, only=None, forward=None):
    """Cross-entropy of every training sample against its given label, in dataset order.

    Returns NumPy arrays ``(losses, labels, predictions, probabilities)`` (the last None unless
    asked for, then float16). The model runs in eval mode under ``torch.inference_mode()`` and
    the learner's mixed precision, on its own device, over the training set with validation
    transforms unless ``augmented``. In a distributed run each rank computes its share and every
    rank gets the whole set, gathered with the sample indices (:mod:`lnc_fastai.distributed`).
    ``inputs`` (a :class:`lnc_fastai.pass_inputs.PassInputs`, not with ``augmented``) keeps the
    pass's batches, so that later passes skip the data pipeline once two passes built the same.
    ``only`` (dataset indices, a single process only): those samples alone, in that order.
    ``forward(model, xb)`` runs the model on a batch's inputs (default ``model(*xb)``; the
    callback passes a :class:`lnc_fastai.pooling.PoolingForward`).
    """
    rank, world_size = world()
    train = training_loader(learn.dls)
    dataset = train.dataset
    n = len(dataset)
    share, real = rank_share(n, rank, world_size) if world_size > 1 else (None, None)
    if only is not None:
        if world_size > 1:
            raise ValueError("per_sample_losses(only=...) runs in a single process")
        share, inputs = np.asarray(only), None  # a part of the pass: not the batches kept for the whole
    model = unwrap(learn.model)  # no collective operations in this pass
    device = next(model.parameters()).device
    dl = tracking_loader(train, bs, share, device)
    keep_train_tfms = augmented or not hasattr(dataset, "set_split_idx")
    mbar = getattr(getattr(learn, "progress", None), "mbar", None)
    source = dl
    if inputs is not None and not augmented:
        key = (id(train), id(dataset), n, getattr(dl, "bs", bs), None if share is None else (rank, world_size))
        source = inputs.batches(key, dl, device)
    batches = progress_bar(source, total=len(dl), parent=mbar, leave=False) if hasattr(learn, "progress") else source
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
            logits, targets = plain(model(*xb) if forward is None else forward(model, xb)).float(), plain(yb[0])
            losses, predictions, probs = sample_outputs(logits, targets, probabilities)
            parts["losses"].append(losses)
            parts["labels"].append(targets)
            parts["predictions"].append(predictions)
            if probabilities:
                parts["probabilities"].append(probs)
    values = {name: torch.cat(part) for name, part in parts.items() if part}
    if world_size > 1:
        values = gather_in_dataset_order(values, torch.as_tensor(share, device=device), torch.as_tensor(real, device=device), n)
    values = {name: value.cpu().numpy() if torch.is_tensor(value) else value for name, value in values.items()}
    return tuple(values.get(name) for name in parts)


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
    ``detector_``), the posterior table for batches read by a forward, and the epoch's record."""

    def per_sample_losses(self):
        """Cross-entropy of every training sample against its given label, in dataset order:
        ``(losses, labels, predictions, probabilities)``; see :func:`lnc_fastai.tracking.per_sample_losses`."""
        lnc = self.mode == "lnc"  # its targets average the softmax
        outputs, self._batch_outputs = getattr(self, "_batch_outputs", None), None
        forward = getattr(self, "_forward", None)  # max pooling in channels-last order
        self.pass_from_batches_ = outputs is not None and self._use_indices
        if self.pass_from_batches_:  # the batches' own forwards, and a pass over the samples none held
            rest = outputs.unseen()
            rest_values = (per_sample_losses(self.learn, self.augmented_tracking, True, self.tracking_bs, only=rest, forward=forward)
                           if rest.size else None)
            return outputs.arrays(rest, rest_values)
        inputs = getattr(self, "_pass_inputs", None)
        return per_sample_losses(self.learn, self.augmented_tracking, self.trace_probs or lnc, self.tracking_bs, inputs, forward=forward)

    def _track_and_refit(self):
        """The pass and the refit; True where a usable fit came of it. lnc mode: the correction's
        observation (refit with the labels, count, targets); paper mode: the refit without the
        labels, as the paper's methods refit, and the count."""
        losses, labels, predictions, probabilities = self.per_sample_losses()
        if self.mode == "lnc":
            count = self.correction.observe(self.epoch, losses, labels, predictions, probabilities)
        else:
            fitted = self.correction.refit_detector(self.epoch, losses, labels, predictions, default_detector(self.mode),
                                                    with_labels=False)
            count = None if fitted is None else self.correction.count_wrong_labels(*fitted)
        if count is None:
            return False
        finite = np.isfinite(losses)
        device = next(self.model.parameters()).device
        self.table = PosteriorTable.from_detector(self.detector_, losses[finite].max(initial=0.0), self.table_size, device)
        self._record_epoch(losses, self.p_noisy_, probabilities, finite, count)
        return True

    def _record_epoch(self, losses, p_noisy, probabilities, finite, count):
        record = {
            "epoch": self.epoch,
            "noise_rate": count.rate,
            "noise_interval_low": count.interval[0],
            "noise_interval_high": count.interval[1],
            "noise_verdict": count.verdict,
            "noise_source": count.source,
            "noise_separation": float(count.separation),
            "noise_from_mixture": float(count.most_disbelieved),  # the name it had: the rate was the mixture's
            "noise_fraction": float(np.nanmean(p_noisy)) if finite.any() else float("nan"),
        }
        if self.noise_mask is not None:
            known = np.isfinite(p_noisy)
            mask = self.noise_mask[known]
            record["auc"] = float(roc_auc_score(mask, p_noisy[known])) if 0 < mask.sum() < mask.size else float("nan")
        record.update({k: v for k, v in fitted_parameters(self.detector_).items() if k not in record})
        self.epoch_records.append(record)
        if self.keep_trace:
            self.trace["losses"].append(losses.astype(np.float32))
            self.trace["p_noisy"].append(p_noisy.astype(np.float32))
            if self.trace_probs and probabilities is not None:
                self.trace["probs"].append(probabilities)

    def _record_policy(self, plan):
        """lnc mode: the policy's reading of the pass, and the epoch just trained, in its record."""
        policy, trained = self.policy, self.epoch_plan_
        self.epoch_records[-1].update(
            noise_regime=policy.regime, memorisation=policy.memorisation, memorisation_share=policy.memorisation_share,
            valid_fit=float(self.valid_fits_[-1]) if self.valid_fits_ else float("nan"),
            still_learning=policy.still_learning, memorising=policy.memorising_since is not None,
            label_fit=policy.label_fit, phase=trained.phase, alpha=trained.alpha, bootstrap_scale=trained.bootstrap_scale,
            fresh_targets=trained.fresh_targets, pass_from_batches=bool(self.pass_from_batches_),
            collapse_guard=policy.collapse_guard, classes_predicted=int(np.unique(self.predictions_).size),
            reason=plan.reason)

    def _last_noise_rate(self):
        return self.epoch_records[-1]["noise_rate"] if self.epoch_records else float("nan")

    def _last_auc(self):
        return self.epoch_records[-1].get("auc", float("nan")) if self.epoch_records else float("nan")
