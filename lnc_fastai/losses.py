"""Bootstrapping losses of Reed et al. (2015) and Arazo et al. (2019), in plain PyTorch.

Every function takes raw logits (any float dtype; the maths runs in float32 or wider) and
integer class labels, and returns one loss per sample so that callers choose the reduction.
Bootstrapping targets -- the one-hot argmax ("hard") or the softmax ("soft") of a prediction --
are always detached: the network learns *from* its prediction, never by moving it.

Nothing here imports fastai; the training callback in :mod:`lnc_fastai.callback` is glue on top.
"""

import numbers

import torch
import torch.nn.functional as F

__all__ = [
    "bootstrap_targets",
    "bootstrapping_loss",
    "static_bootstrapping_loss",
    "mixup_bootstrapping_loss",
    "class_balance_regulariser",
    "detector_mixing_weights",
    "sharpening_temperature",
]

BOOTSTRAP_KINDS = ("hard", "soft")
# Reed et al.'s weights on the prediction: beta = 0.8 (hard) and 0.95 (soft) on the label.
STATIC_WEIGHTS = {"hard": 0.2, "soft": 0.05}


def _check_kind(kind):
    if kind not in BOOTSTRAP_KINDS:
        raise ValueError(f"bootstrap must be one of {BOOTSTRAP_KINDS}, got {kind!r}")


def _log_probs(logits):
    # float16/bfloat16 logits from mixed precision lose too much in log_softmax.
    return F.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=1)


def bootstrap_targets(logits, kind="hard", temperature=1.0):
    """Targets the network bootstraps from: one-hot argmax (``"hard"``) or softmax (``"soft"``).

    ``temperature`` < 1 sharpens the soft targets (MD-DYR-SH anneals it from 1 towards 0, where
    the soft target becomes the hard one). The result carries no gradient.
    """
    _check_kind(kind)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    with torch.no_grad():
        logits = logits.detach().float()
        if kind == "hard":
            return F.one_hot(logits.argmax(dim=1), logits.shape[1]).to(logits.dtype)
        return F.softmax(logits / temperature, dim=1)


def _lerp_weight(weight, like):
    """``weight`` for ``torch.lerp`` against ``like``: a Python number stays one (turning it into
    a GPU tensor would copy it from the host and wait for the GPU, every batch), a tensor is
    moved to ``like``'s dtype and device."""
    if isinstance(weight, numbers.Real):
        return float(weight)
    return torch.as_tensor(weight, dtype=like.dtype, device=like.device)


def _bootstrapped_cross_entropy(log_probs, labels, targets, weight):
    """``-((1 - w) y + w t)^T log h`` per sample, with ``y`` the one-hot of ``labels``."""
    label_term = F.nll_loss(log_probs, labels, reduction="none")
    target_term = -(targets * log_probs).sum(dim=1)
    return torch.lerp(label_term, target_term, _lerp_weight(weight, label_term))


def bootstrapping_loss(logits, labels, weight, kind="hard", targets=None):
    """Dynamic bootstrapping: per-sample weight ``w_i`` on the network's own prediction.

    ``weight`` is a scalar or a tensor of shape ``(n,)`` in [0, 1] (in the paper, p(noisy) of each
    sample under the fitted mixture). ``targets`` defaults to :func:`bootstrap_targets` of
    ``logits``; pass targets computed elsewhere (e.g. from an un-mixed forward pass) to use them.
    """
    if targets is None:
        targets = bootstrap_targets(logits, kind)
    else:
        targets = targets.detach()
    return _bootstrapped_cross_entropy(_log_probs(logits), labels, targets, weight)


def static_bootstrapping_loss(logits, labels, kind="hard", weight=None):
    """Reed et al.'s static bootstrapping: one weight for all samples (0.2 hard, 0.05 soft)."""
    _check_kind(kind)
    return bootstrapping_loss(logits, labels, STATIC_WEIGHTS[kind] if weight is None else weight, kind)


def mixup_bootstrapping_loss(mixed_logits, labels_a, labels_b, targets_a, targets_b, weight_a, weight_b, lam):
    """The paper's mixup form of dynamic bootstrapping (M-DYR-H with hard, M-DYR-S with soft targets).

    The batch ``lam * x_a + (1 - lam) * x_b`` was mixed from partners ``a`` and ``b``; each
    partner contributes its own bootstrapped cross-entropy on the mixed prediction, with its own
    label, bootstrapping target (from the *un-mixed* prediction) and weight::

        lam * [-((1 - w_a) y_a + w_a t_a)^T log h] + (1 - lam) * [-((1 - w_b) y_b + w_b t_b)^T log h]

    With both weights 0 this is plain mixup's cross-entropy. ``lam`` is a scalar (one mixing
    weight per batch, as in the paper) or a tensor of shape ``(n,)``.
    """
    log_probs = _log_probs(mixed_logits)
    loss_a = _bootstrapped_cross_entropy(log_probs, labels_a, targets_a.detach(), weight_a)
    loss_b = _bootstrapped_cross_entropy(log_probs, labels_b, targets_b.detach(), weight_b)
    return torch.lerp(loss_b, loss_a, _lerp_weight(lam, loss_a))


def class_balance_regulariser(logits, prior=None, check=True):
    """``R = sum_c p_c log(p_c / hbar_c)``: KL from the batch's mean prediction to a class prior.

    ``hbar_c`` is the mean softmax probability of class ``c`` over the batch; ``prior`` defaults
    to uniform. Added to the loss (weight eta = 1 in the paper) it keeps a network trained on
    heavy noise from assigning every sample to one class. Returns a scalar. ``check=False`` skips
    checking the prior (which waits for the GPU): for a prior already known to be valid.
    """
    mean_probs = _log_probs(logits).exp().mean(dim=0)
    n_classes = mean_probs.shape[0]
    if prior is None:
        prior = torch.full_like(mean_probs, 1.0 / n_classes)
    else:
        prior = torch.as_tensor(prior, dtype=mean_probs.dtype, device=mean_probs.device)
        if check and (prior.shape != mean_probs.shape or (prior < 0).any()
                      or not torch.isclose(prior.sum(), prior.new_tensor(1.0))):
            raise ValueError(f"prior must be {n_classes} non-negative class probabilities summing to 1")
    # Classes the prior gives no mass contribute 0 (0 log 0 = 0).
    return torch.where(prior > 0, prior * (prior.log() - mean_probs.log()), torch.zeros_like(prior)).sum()


def detector_mixing_weights(weight_a, weight_b, floor=1e-4):
    """MD-DYR-SH's per-sample mixing weights: partner ``a``'s share ``(1 - w_a) / ((1 - w_a) + (1 - w_b))``.

    Instead of one ``lam ~ Beta(alpha, alpha)`` per batch, each pair is mixed in proportion to how
    clean each partner looks, so a probably mislabelled sample mostly lends its image to a clean
    partner's label. ``1 - w`` is floored at ``floor`` so that two surely noisy partners mix half
    and half instead of dividing 0 by 0. Returns a tensor of shape ``(n,)`` in (0, 1).
    """
    clean_a = (1 - torch.as_tensor(weight_a, dtype=torch.float32)).clamp(min=floor)
    clean_b = (1 - torch.as_tensor(weight_b, dtype=torch.float32, device=clean_a.device)).clamp(min=floor)
    return clean_a / (clean_a + clean_b)


def sharpening_temperature(epoch, start, end, final=1e-3):
    """Temperature of MD-DYR-SH's soft targets at ``epoch``: 1 until ``start``, then falling
    linearly to ``final`` at ``end`` and staying there (soft targets turning into hard ones;
    the reference schedule falls from 1 to 0.001 between epochs 111 and 200 of 300)."""
    if not 0 < final <= 1:
        raise ValueError(f"final must be in (0, 1], got {final!r}")
    if end < start:
        raise ValueError(f"the sharpening must end after it starts, got start={start!r}, end={end!r}")
    if epoch <= start:
        return 1.0
    if epoch >= end:
        return float(final)
    return 1.0 + (final - 1.0) * (epoch - start) / (end - start)
