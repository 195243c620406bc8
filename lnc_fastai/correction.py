"""lnc mode for any PyTorch training loop: :class:`NoiseCorrection` keeps what the loss passes
found about each training sample (p(noisy), running-average targets, the count) and turns the
:class:`lnc_fastai.policy.TrainingPolicy`'s plan into each batch's mixup and bootstrapping loss.

Plain PyTorch and NumPy: nothing here imports fastai. The fastai callback
:class:`lnc_fastai.DynamicBootstrapMixUp` is an adapter over this object; a hand-written loop
uses it directly (``examples/plain_pytorch.py``)::

    correction = NoiseCorrection()
    correction.start(n_epochs)
    history = []                                  # validation accuracies (none: no validation set)
    for epoch in range(n_epochs):
        plan = correction.epoch_plan(epoch)
        for x, y, idx in train_loader:            # idx: the batch's dataset indices
            loss = correction.training_loss(model, x, y, idx, plan)
            ...                                   # backward, step
        correction.observe(epoch, *loss_pass(model, ordered_loader))
        history.append(...)                       # accuracy on a validation split, if there is one
        print(correction.update(epoch, history).reason)
"""

import copy
import dataclasses
import inspect
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from lnc_sklearn import BetaMixtureNoiseDetector, DegenerateFitWarning, NoiseCount
from lnc_sklearn.noise_count import count_noise

from .adaptive import class_prior, running_average
from .batches import WEIGHT_CLIP, eval_mode, mix_inputs
from .losses import bootstrap_targets, class_balance_regulariser, mixup_bootstrapping_loss
from .policy import PassStats, TrainingPolicy
from .posterior_table import detector_input, noisy_probability

__all__ = ["NoiseCorrection", "loss_pass", "refit", "default_detector", "takes_labels"]

TARGET_MOMENTUM = 0.7  # each pass's softmax enters the running-average targets with weight 0.3


def default_detector(mode="lnc"):
    """lnc mode: ``BetaMixtureNoiseDetector()`` (p(noisy) scaled to its count within each label);
    paper mode: the paper's fit read off the mixture (``rate_estimate="mixture"``)."""
    return BetaMixtureNoiseDetector() if mode == "lnc" else BetaMixtureNoiseDetector(rate_estimate="mixture")


def takes_labels(detector):
    """Whether ``detector.predict_proba`` takes the given labels (``y``), as lnc's detectors do."""
    try:
        return "y" in inspect.signature(detector.predict_proba).parameters
    except (TypeError, ValueError):
        return False


def refit(detector, losses, labels=None):
    """Fit a copy of ``detector`` on ``losses`` (with the given ``labels`` where it takes them);
    return ``(candidate, problem)``, where ``problem`` says why the fit is not usable (it raised,
    it degenerated, its p(noisy) is not finite or cannot tell samples apart) or is None.
    Warnings other than the detector's ``DegenerateFitWarning`` are passed on."""
    candidate = copy.deepcopy(detector)
    labels = labels if labels is not None and takes_labels(candidate) else None
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


@torch.no_grad()
def loss_pass(model, loader, device=None):
    """One pass of ``model`` in eval mode over ``loader`` (batches ``(x, y)`` or ``(x, y, idx)`` in
    dataset order, without augmentation): NumPy arrays ``(losses, labels, predictions,
    probabilities)``, the per-sample cross-entropy against the given labels first. Run it under
    the loop's ``torch.autocast`` for mixed precision; in a distributed run, on every rank over
    the whole training set (or gather the ranks' shares in dataset order)."""
    device = device or next(model.parameters()).device
    parts = {"losses": [], "labels": [], "predictions": [], "probabilities": []}
    with eval_mode(model):
        for batch in loader:
            x, y = batch[0].to(device), batch[1].to(device)
            logits = model(x).float()
            parts["losses"].append(F.cross_entropy(logits, y, reduction="none").cpu())
            parts["labels"].append(y.cpu())
            parts["predictions"].append(logits.argmax(1).cpu())
            parts["probabilities"].append(logits.softmax(1).cpu())
    return tuple(torch.cat(parts[name]).numpy() for name in parts)


class NoiseCorrection:
    """lnc mode's per-sample state and per-batch loss (module docstring). ``detector``: refitted
    after every pass (default ``BetaMixtureNoiseDetector()``, given the labels); ``policy``: a
    :class:`lnc_fastai.policy.TrainingPolicy` (default its defaults); ``reg_weight``: the
    class-balance regulariser's weight (its prior the labels' class frequencies), applied with
    bootstrapping and scaled as the weights are; ``bootstrap``: "hard" (one-hot targets) or "soft"."""

    def __init__(self, detector=None, policy=None, reg_weight=1.0, bootstrap="hard"):
        if detector is not None and not (hasattr(detector, "fit") and hasattr(detector, "predict_proba")):
            raise TypeError(f"detector must have fit and predict_proba, got {type(detector).__name__}")
        if policy is not None and not isinstance(policy, TrainingPolicy):
            raise TypeError(f"policy must be a lnc_fastai.TrainingPolicy, got {type(policy).__name__}")
        if bootstrap not in ("hard", "soft"):
            raise ValueError(f"bootstrap must be 'hard' or 'soft' in lnc mode, got {bootstrap!r}")
        self.detector, self.policy = detector, policy if policy is not None else TrainingPolicy()
        self.reg_weight, self.bootstrap = float(reg_weight), bootstrap
        self.reset()

    def reset(self):
        """Forget what the passes found (the detector's last fit included)."""
        self.detector_ = self.count_ = None
        self.losses_ = self.labels_ = self.predictions_ = self.p_noisy_ = self.noise_flags_ = None
        self.target_average_ = self.confidence_ = None
        self.failed_fits, self._stats, self._device_copy, self._beta = [], None, None, None

    # ---- the run ------------------------------------------------------------------------------
    def start(self, n_epochs):
        """A new run of ``n_epochs``: the policy from its start (the last fit is kept, as a warm start)."""
        self._stats, self._device_copy = None, None
        return self.policy.start(n_epochs)

    def epoch_plan(self, epoch):
        """The policy's plan for ``epoch`` (:class:`lnc_fastai.policy.EpochPlan`); before any
        usable pass, no bootstrapping whatever the policy says."""
        plan = self.policy._epoch_plan(epoch)
        if self.p_noisy_ is None or self.target_average_ is None:
            plan = dataclasses.replace(plan, bootstrap_scale=0.0, fresh_targets=False)
        return plan

    def observe(self, epoch, losses, labels, predictions, probabilities):
        """A pass's per-sample arrays (dataset order): refit the detector, count the wrong labels,
        update the running-average targets. Returns the count (a :class:`lnc_sklearn.NoiseCount`),
        or None where no fit was usable yet (the previous fit is kept, with a warning)."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        fitted = self.refit_detector(epoch, losses, labels, predictions, default_detector())
        if fitted is None:
            return None
        self.target_average_ = running_average(
            self.target_average_ if self.target_average_ is not None and self.target_average_.shape == probabilities.shape else None,
            probabilities, TARGET_MOMENTUM)
        self.confidence_ = probabilities.max(axis=1)
        count = self.count_wrong_labels(*fitted)
        self._stats = PassStats(self.labels_, self.predictions_, self.noise_flags_, float(count.rate),
                                bool(count.most_disbelieved), int(probabilities.shape[1]))
        return count

    def refit_detector(self, epoch, losses, labels, predictions, default, with_labels=True):
        """The pass's arrays kept (``losses_``, ``labels_``, ``predictions_``) and the detector
        refitted on the finite losses (given the labels where it takes them and ``with_labels``;
        ``default`` where neither a fit nor ``detector`` is there yet); ``p_noisy_`` from the fit.
        Returns ``(finite, fit_labels, problem)`` for :meth:`count_wrong_labels`, or None where no
        fit was usable yet. A fit that fails warns and keeps the previous one."""
        losses, labels = np.asarray(losses, dtype=np.float64), np.asarray(labels, dtype=np.int64)
        self.losses_, self.labels_, self.predictions_ = losses, labels, np.asarray(predictions)
        finite = np.isfinite(losses)
        if not finite.all():
            warnings.warn(f"epoch {epoch}: {int((~finite).sum())} of {losses.size} per-sample losses are not finite; "
                          "they are left out of the detector's fit", RuntimeWarning, stacklevel=3)
        template = next((d for d in (self.detector_, self.detector) if d is not None), None) or default
        fit_labels = labels[finite] if with_labels and takes_labels(template) else None
        candidate, problem = refit(template, losses[finite], fit_labels)
        if problem is not None:
            keeping = "keeping the previous fit" if self.detector_ is not None else "no usable fit yet, not bootstrapping"
            warnings.warn(f"epoch {epoch}: {problem}; {keeping}", RuntimeWarning, stacklevel=3)
            self.failed_fits.append({"epoch": int(epoch), "problem": problem})
            if self.detector_ is None:
                self.p_noisy_ = None
                return None
        else:
            self.detector_ = candidate
        p_noisy = np.full(losses.shape, np.nan)
        if finite.any():
            p_noisy[finite] = noisy_probability(self.detector_, losses[finite], fit_labels if problem is None else None)
        self.p_noisy_ = p_noisy
        return finite, fit_labels, problem

    def count_wrong_labels(self, finite, fit_labels, problem):
        """The count of the last refit (:meth:`refit_detector`'s result), and ``noise_flags_``:
        the detector's own where it counted within each label as it was fitted, else the count
        from the losses, labels and p(noisy); nothing counted where no loss is finite."""
        losses, labels, p_noisy = self.losses_, self.labels_, self.p_noisy_
        counted = problem is None and fit_labels is not None and getattr(self.detector_, "noise_count_", None) is not None
        if counted:
            flags = self.detector_.predict(detector_input(self.detector_, losses[finite]).reshape(-1, 1), y=labels[finite])
            count = self.detector_.noise_count_
        elif finite.any():
            count, flags = count_noise(losses[finite], labels[finite], p_noisy[finite])
        else:
            count = NoiseCount(float("nan"), (float("nan"),) * 2, "cannot tell", "mixture", most_disbelieved=True)
            flags = np.zeros(0, dtype=bool)
        self.noise_flags_ = np.zeros(losses.size, dtype=bool)
        self.noise_flags_[finite] = np.asarray(flags, dtype=bool)
        self.count_, self._device_copy = count, None
        return count

    def update(self, epoch, valid_history=()):
        """The policy's update after the pass of ``epoch`` (:meth:`observe`) and its validation
        (``valid_history``: validation accuracies against the given labels so far, the last for
        ``epoch``; empty without a validation set). Returns the :class:`lnc_fastai.policy.Plan`."""
        if self._stats is None:
            raise RuntimeError("update() needs a pass first: call observe() after the epoch's loss pass")
        stats, self._stats = self._stats, None
        return self.policy.update(epoch, stats, valid_history)

    # ---- per sample ---------------------------------------------------------------------------
    def sample_weights(self, plan):
        """Each sample's bootstrapping weight in ``plan``: p(noisy) clipped (a sample without a
        finite loss counts as noisy) times ``bootstrap_scale``. float32, dataset order."""
        weights = np.clip(np.nan_to_num(self.p_noisy_, nan=WEIGHT_CLIP[1]), *WEIGHT_CLIP)
        return (weights * plan.bootstrap_scale).astype(np.float32)

    def sample_targets(self):
        """Each sample's bootstrapping target (dataset order): the running average of its softmax,
        one-hot at its argmax with ``bootstrap="hard"``."""
        targets = self.target_average_
        if self.bootstrap == "hard":
            targets = np.eye(targets.shape[1], dtype=np.float32)[targets.argmax(axis=1)]
        return targets

    def device_arrays(self, plan, device):
        """``sample_weights``, ``sample_targets`` (float16), the labels and their class prior on
        ``device``, made once per plan and pass."""
        key = (plan, torch.device(device))
        if self._device_copy is None or self._device_copy["key"] != key:
            n_classes = self.target_average_.shape[1]
            self._device_copy = {
                "key": key,
                "weights": torch.as_tensor(self.sample_weights(plan)).to(device),
                "targets": torch.as_tensor(self.sample_targets(), dtype=torch.float16).to(device),
                "labels": torch.as_tensor(self.labels_, dtype=torch.long).to(device),
                "prior": torch.as_tensor(class_prior(self.labels_, n_classes), dtype=torch.float32).to(device),
            }
        return self._device_copy

    # ---- per batch ----------------------------------------------------------------------------
    def mixing_weights(self, plan, n, device):
        """Mixup's per-sample share of each sample in its mixed input: ``max(lam, 1 - lam)`` with
        ``lam ~ Beta(alpha, alpha)`` as fastai's ``MixUp`` draws it."""
        key = (float(plan.alpha), torch.device(device))
        if self._beta is None or self._beta[0] != key:  # made on the device once: no copy per batch
            alpha = torch.tensor(key[0], device=device)
            self._beta = (key, torch.distributions.Beta(alpha, alpha, validate_args=False))
        lam = self._beta[1].sample((n,))
        return torch.maximum(lam, 1 - lam)

    def batch_targets(self, plan, idx, labels, unmixed_logits=None):
        """``(weights, targets)`` of a batch on its device, or ``(None, None)`` where the plan does
        not bootstrap. ``idx``: the batch's dataset indices; ``unmixed_logits``: the logits of a
        forward of the un-mixed batch (eval mode, no gradients), which the targets come from
        where the plan says ``fresh_targets``."""
        if plan.bootstrap_scale <= 0 or self.p_noisy_ is None:
            return None, None
        arrays = self.device_arrays(plan, labels.device)
        idx = torch.as_tensor(idx, device=labels.device)
        if plan.fresh_targets and unmixed_logits is not None:
            return arrays["weights"][idx], bootstrap_targets(unmixed_logits, self.bootstrap)
        return arrays["weights"][idx], arrays["targets"][idx].float()

    def batch_loss(self, logits, labels, partner, lam, weights=None, targets=None, scale=0.0):
        """Mixup's loss on ``logits`` of the mixed batch, each partner bootstrapped by its weight
        where ``weights`` are given, plus the regulariser scaled by ``scale``."""
        if weights is None:
            weights = torch.zeros(labels.shape[0], device=logits.device)
            targets = torch.zeros_like(logits, dtype=torch.float32)
        loss = mixup_bootstrapping_loss(logits, labels, labels[partner], targets, targets[partner], weights,
                                        weights[partner], lam).mean()
        if self.reg_weight and scale > 0:
            prior = self._device_copy["prior"] if self._device_copy is not None else None
            loss = loss + self.reg_weight * scale * class_balance_regulariser(logits, prior, check=False)
        return loss

    def training_loss(self, model, x, labels, idx, plan):
        """One batch, for a hand-written loop: mix ``x`` (a tensor) as the plan says, run
        ``model`` on it (in train mode), and return the loss to backpropagate. ``idx``: the
        batch's dataset indices (the order ``observe`` got the samples in)."""
        unmixed = None
        if plan.fresh_targets and plan.bootstrap_scale > 0:
            target_model = getattr(model, "module", model)  # DistributedDataParallel: this rank's copy
            with torch.no_grad(), eval_mode(target_model):
                unmixed = target_model(x).float()
        weights, targets = self.batch_targets(plan, idx, labels, unmixed)
        partner = torch.randperm(labels.shape[0], device=labels.device)
        lam = self.mixing_weights(plan, labels.shape[0], labels.device)
        (mixed,) = mix_inputs((x,), partner, lam)
        return self.batch_loss(model(mixed).float(), labels, partner, lam, weights, targets, plan.bootstrap_scale)
