"""The callback's per-epoch work: one pass over the training set for every sample's loss, in
dataset order, and the detector's refit with the checks that decide whether a fit is usable.

The functions take the fastai ``Learner`` (and the detector); :class:`DynamicBootstrapMixUp`
calls them after every training epoch.
"""

import copy
import inspect
import warnings
from contextlib import nullcontext

import numpy as np
import torch
from fastai.callback.fp16 import AMPMode
from fastai.torch_core import to_device
from fastprogress.fastprogress import progress_bar

from sklearn.metrics import roc_auc_score

from lnc_sklearn import BetaMixtureNoiseDetector, DegenerateFitWarning, NoiseCount
from lnc_sklearn.noise_count import count_noise

from .adaptive import (class_prior, collapse_guard, effective_classes, label_fit, memorisation, memorising, noise_regime,
                       prediction_floor, running_average, still_improving)
from .batch_outputs import sample_outputs
from .batches import WEIGHT_CLIP, check_targets, eval_mode, plain
from .distributed import gather_in_dataset_order, rank_share, unwrap, world
from .posterior_table import PosteriorTable, detector_input, noisy_probability

__all__ = ["training_loader", "tracking_batch_size", "tracking_loader", "autocast_for", "per_sample_losses", "refit", "fitted_parameters",
           "default_detector", "epoch_indices", "TrackingMixin"]


def default_detector(mode="paper"):
    """The detector the callback refits when given none. Paper mode: the paper's schedule with
    anchored M-steps, p(noisy) read off the mixture (``rate_estimate="mixture"``), so that the
    training weights are the ones the paper's methods were measured with (the noise count in the
    history comes from the count from losses and labels all the same, :func:`lnc_sklearn.noise_count.count_noise`).
    lnc mode: ``BetaMixtureNoiseDetector()``, whose p(noisy) averages its noise count."""
    return BetaMixtureNoiseDetector() if mode == "lnc" else BetaMixtureNoiseDetector(rate_estimate="mixture")


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


def _takes_labels(detector):
    """Whether ``detector.predict_proba`` takes the given labels (``y``), as lnc's detectors do."""
    try:
        return "y" in inspect.signature(detector.predict_proba).parameters
    except (TypeError, ValueError):
        return False


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


def refit(detector, losses, labels=None):
    """Fit a copy of ``detector`` on ``losses`` (with the given ``labels`` where it takes them);
    return ``(candidate, problem)``, where ``problem`` says why the fit is not usable (it
    raised, it degenerated, or its p(noisy) is not finite or cannot tell samples apart), or is
    None. Warnings that are not the detector's ``DegenerateFitWarning`` are passed on."""
    candidate = copy.deepcopy(detector)
    labels = labels if labels is not None and _takes_labels(candidate) else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            values = detector_input(candidate, losses).reshape(-1, 1)
            candidate.fit(values) if labels is None else candidate.fit(values, labels)
            p_noisy = noisy_probability(candidate, losses, labels)
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
    count = getattr(candidate, "noise_count_", None)
    found_little = count is not None and count.rate < 0.01  # p(noisy) shifted towards 0: nearly flat
    if p_noisy.size == 0 or (np.ptp(p_noisy) < 1e-3 and not found_little):  # "little noise" is a usable answer
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
        lnc = self.mode == "lnc"  # its targets average the softmax
        outputs, self._batch_outputs = getattr(self, "_batch_outputs", None), None
        forward = getattr(self, "_forward", None)  # max pooling in channels-last order (channels_last_pooling)
        self.pass_from_batches_ = outputs is not None and self._use_indices
        if self.pass_from_batches_:  # the batches' own forwards, and a pass over the samples none held
            rest = outputs.unseen()
            rest_values = (per_sample_losses(self.learn, self.augmented_tracking, True, self.tracking_bs, only=rest, forward=forward)
                           if rest.size else None)
            return outputs.arrays(rest, rest_values)
        inputs = getattr(self, "_pass_inputs", None)
        return per_sample_losses(self.learn, self.augmented_tracking, self.trace_probs or lnc, self.tracking_bs, inputs, forward=forward)

    def _track_and_refit(self):
        lnc = self.mode == "lnc"
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
        template = next((d for d in (self.detector_, self.detector) if d is not None), None) or default_detector(self.mode)
        fit_labels = labels[finite] if lnc and _takes_labels(template) else None
        candidate, problem = refit(template, losses[finite], fit_labels)
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
            p_noisy[finite] = noisy_probability(self.detector_, losses[finite], fit_labels if problem is None else None)
        self.p_noisy_ = p_noisy
        device = next(self.model.parameters()).device
        self.table = PosteriorTable.from_detector(self.detector_, losses[finite].max(initial=0.0), self.table_size, device)
        if lnc:
            self._update_targets(probabilities, predictions, labels)
        counted = lnc and problem is None and fit_labels is not None and getattr(self.detector_, "noise_count_", None) is not None
        self._record_epoch(losses, p_noisy, probabilities, finite, self.detector_ if counted else None)

    def _update_targets(self, probabilities, predictions, labels):
        """lnc mode: the running average of each sample's softmax, the collapse guard, and the
        device copies the next epochs' batches read (made on first use)."""
        previous = self.target_average_
        if previous is not None and previous.shape != probabilities.shape:  # other data than before
            previous = None
        self.target_average_ = running_average(previous, probabilities, self.target_momentum)
        # the softmax probability of each sample's predicted class (``prediction_floor``)
        self.confidence_ = np.asarray(probabilities, dtype=np.float32).max(axis=1)
        effective = effective_classes(predictions, probabilities.shape[1])
        self.widest_classes_ = max(getattr(self, "widest_classes_", 0.0), effective)
        self.collapse_guard_ = collapse_guard(effective, self.widest_classes_)
        self._per_sample = None

    def _update_regime(self, record, count):
        """lnc mode: the noise regime the detector sees and, under heavy noise, whether the network
        has started to memorise (which switches bootstrapping and strong mixup on for the rest of
        the run)."""
        previous = getattr(self, "_previous_flags", None)
        before = getattr(self, "_previous_predictions", None)
        signal = float("nan")
        # Only against flags taken after the warm-up floor: before it, a network that has hardly
        # trained disbelieves most labels, and learning them looks like memorising them. And only
        # with the pass's predictions, to take off what the network's churn gives by chance.
        trained = getattr(self, "_previous_flags_epoch", -1) >= self.warmup_epochs
        shape = self.noise_flags_.shape
        share = float("nan")
        if previous is not None and before is not None and previous.shape == shape == before.shape and trained:
            n_classes = self.target_average_.shape[1] if self.target_average_ is not None else None
            share = memorisation(self.predictions_, self.labels_, previous)
            signal = memorisation(self.predictions_, self.labels_, previous, before, n_classes)
        self._previous_flags, self._previous_flags_epoch = self.noise_flags_.copy(), self.epoch
        self._previous_predictions = np.asarray(self.predictions_).copy()
        self.noise_regime_ = noise_regime(count)
        self.light_rate_ = float(count.rate) if self.noise_regime_ == "light" else 0.0
        # a network whose validation accuracy still rises is learning the labels it disbelieved
        learning = still_improving(getattr(self, "valid_fits_", None))
        memorises = memorising(share, signal, self.memorisation_threshold) and not learning
        if self.memorising_since_ is None and self.noise_regime_ == "heavy" and memorises:
            self.memorising_since_ = self.epoch + 1
        # under light noise it opens the light-noise gate (bootstrapping from the next epoch) below
        # light_noise_rate: a count that wanders under the threshold still flags labels that the
        # network goes on to memorise (the digits at 20% asymmetric noise). Only with a validation
        # set: a network that learns the clean samples it got wrong gives the same signal, and
        # only the validation accuracy tells the two apart (clean MNIST, 5,000 augmented images:
        # 0.28-0.66 beyond chance from the fourth epoch on). And not from the settling epochs on: a
        # few epochs of bootstrapping gain little there, and would take settling away (there the
        # validation check let the signal pass at the epoch before them)
        validated = any(np.isfinite(v) for v in getattr(self, "valid_fits_", None) or [])
        self.light_memorising_ = (self.noise_regime_ == "light" and self.bootstrap_since_ is None and memorises
                                  and validated and not self._settles(self.epoch + 1))
        # outside heavy noise, a network that fits nearly every given label gets the strong mixup
        fit = label_fit(self.predictions_, self.labels_)
        # (from the next epoch, not before the warm-up floor, and not once settling: unmixed epochs
        # fit the labels fast, and strong mixup would undo what settling is for)
        if (self.fitted_share is not None and self.fitted_since_ is None and self.noise_regime_ != "heavy"
                and fit >= self.fitted_share and self.epoch + 1 >= self.warmup_epochs and not self.settling_):
            self.fitted_since_ = self.epoch + 1
        valid = getattr(self, "valid_fits_", None) or [float("nan")]
        record.update(noise_regime=self.noise_regime_, memorisation=signal, memorisation_share=share, valid_fit=float(valid[-1]),
                      still_learning=learning, memorising=self.memorising_since_ is not None,
                      light_memorising=self.light_memorising_,
                      label_fit=fit, fitted=self.fitted_since_ is not None,
                      rewound_to=float(self.rewound_to_) if self.epoch == self.memorising_since_ and self.rewound_to_ is not None else float("nan"))

    def _floor_after_call(self):
        """lnc mode with ``prediction_floor``, once the network memorises under heavy noise: the
        bootstrapping weights get the prediction floor (from the pass, or from a batch's forward)."""
        return self.mode == "lnc" and getattr(self, "prediction_floor", False) and self.memorising_since_ is not None

    def _prediction_floor_now(self):
        """:meth:`_floor_after_call`, with the last pass's predictions and their softmax
        probabilities in hand."""
        confidence, predictions = getattr(self, "confidence_", None), self.predictions_
        return (self._floor_after_call() and confidence is not None and predictions is not None
                and confidence.shape == predictions.shape == self.labels_.shape)

    def _device_state(self, device):
        """lnc mode: the last pass's per-sample weights (p(noisy), clipped; a sample without a
        finite loss counts as noisy), targets, labels and the labels' class prior on ``device``;
        None before the first pass."""
        state = self._per_sample
        if state is not None and state["device"] == device:
            return state
        if self.p_noisy_ is None or self.target_average_ is None or self.labels_ is None:
            return None
        weights = np.clip(np.nan_to_num(self.p_noisy_, nan=WEIGHT_CLIP[1]), *WEIGHT_CLIP)
        weights = np.minimum(weights * getattr(self, "weight_gain", 1.0), WEIGHT_CLIP[1])
        if self._prediction_floor_now():  # heavy noise, once memorising: confident disagreement counts
            weights = np.minimum(prediction_floor(weights, self.predictions_, self.labels_, self.confidence_), WEIGHT_CLIP[1])
        targets = self.target_average_
        n_classes = targets.shape[1]
        if self.bootstrap == "hard":
            targets = np.eye(n_classes, dtype=np.float32)[targets.argmax(axis=1)]
        self._per_sample = {
            "device": device,
            "weights": torch.as_tensor(weights, dtype=torch.float32).to(device),
            "targets": torch.as_tensor(targets, dtype=torch.float16).to(device),
            "labels": torch.as_tensor(self.labels_, dtype=torch.long).to(device),
            "prior": torch.as_tensor(class_prior(self.labels_, n_classes), dtype=torch.float32).to(device),
        }
        return self._per_sample

    def _record_epoch(self, losses, p_noisy, probabilities, finite, counted=None):
        if counted is not None:  # lnc mode: the detector counted within each label as it was fitted
            flags = counted.predict(detector_input(counted, losses[finite]).reshape(-1, 1), y=self.labels_[finite])
            count = counted.noise_count_
        elif finite.any():
            # the count within each given label; where the network disbelieves most samples, the
            # detector's mean p(noisy) per label
            count, flags = count_noise(losses[finite], self.labels_[finite], p_noisy[finite])
        else:  # an epoch without a finite loss counts nothing
            count = NoiseCount(float("nan"), (float("nan"),) * 2, "cannot tell", "mixture", most_disbelieved=True)
            flags = np.zeros(0, dtype=bool)
        self.noise_flags_ = np.zeros(losses.size, dtype=bool)
        self.noise_flags_[finite] = flags.astype(bool)
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
        if self.mode == "lnc":
            self._update_regime(record, count)
            record["bootstrap_scale"] = float(self.bootstrap_scale_)  # what the epoch just trained used
            record["alpha"] = float(self.alpha_)  # its mixup alpha
            record["unmixed"] = bool(self.unmixed_)  # whether it trained without mixup
            record["settling"] = bool(self.settling_)  # because of `settle`
            record["fresh_targets"] = bool(self.fresh_targets_used_)  # or with targets from a forward per batch
            record["pass_from_batches"] = bool(getattr(self, "pass_from_batches_", False))  # which made this pass
            record["collapse_guard"] = float(self.collapse_guard_)  # a factor on the next epochs' scale
            record["classes_predicted"] = int(np.unique(self.predictions_).size)
        if self.noise_mask is not None:
            finite = np.isfinite(p_noisy)
            mask = self.noise_mask[finite]
            record["auc"] = float(roc_auc_score(mask, p_noisy[finite])) if 0 < mask.sum() < mask.size else float("nan")
        record.update({k: v for k, v in fitted_parameters(self.detector_).items() if k not in record})
        self.epoch_records.append(record)
        if self.keep_trace:
            self.trace["losses"].append(losses.astype(np.float32))
            self.trace["p_noisy"].append(p_noisy.astype(np.float32))
            if self.trace_probs and probabilities is not None:
                self.trace["probs"].append(probabilities)

    def _last_noise_rate(self):
        return self.epoch_records[-1]["noise_rate"] if self.epoch_records else float("nan")

    def _last_auc(self):
        return self.epoch_records[-1].get("auc", float("nan")) if self.epoch_records else float("nan")
