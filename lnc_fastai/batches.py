"""One training batch of ``DynamicBootstrapMixUp``: checking its targets, mixing its inputs, and
what was decided for it. Plain PyTorch, no fastai."""

from contextlib import contextmanager
from typing import NamedTuple, Optional

import torch

__all__ = ["MixedBatch", "WEIGHT_CLIP", "eval_mode", "mix_inputs", "channels_last", "plain", "check_targets",
           "class_indices"]

# The reference clips p(noisy) into this range before mixing and bootstrapping with it.
WEIGHT_CLIP = (1e-4, 1 - 1e-4)


class MixedBatch(NamedTuple):
    """What :meth:`DynamicBootstrapMixUp.before_batch` decided for one training batch."""

    labels: torch.Tensor  # the given labels of the un-mixed batch
    partner: torch.Tensor  # sample i was mixed with sample partner[i]
    input_lam: object  # share of sample i in the mixed input: a float, or a tensor per sample
    loss_lam: object  # weight of sample i's terms in the loss (its partner's: 1 - loss_lam)
    weights: Optional[torch.Tensor]  # p(noisy) per sample, clipped; None without bootstrapping
    targets: Optional[torch.Tensor]  # bootstrapping targets; None without bootstrapping


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
    the codes of its heavier partner. ``lam`` 1 (a number) leaves the inputs as they are."""
    if not torch.is_tensor(lam) and lam == 1:
        return tuple(xb)
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


def channels_last(xb):
    """The batch with its images (4-D floating-point inputs) copied into channels-last memory
    order, the values unchanged; other inputs, and images already in that order, as they are.
    One-channel images are copied as well: their plain strides also count as channels-last, so
    ``contiguous(memory_format=torch.channels_last)`` would leave them, and the convolutions
    after them would not switch. On a CPU the network then runs in that order (the convolutions
    and pooling of a small CNN about twice as fast there; ``docs/training.md``)."""
    out = []
    for x in xb:
        if torch.is_tensor(x) and x.ndim == 4 and torch.is_floating_point(x) and x.stride(1) != 1:
            x = torch.empty_like(x, memory_format=torch.channels_last).copy_(x)
        out.append(x)
    return tuple(out)


def plain(tensor):
    """The tensor as a plain ``torch.Tensor``: fastai's typed tensors (``TensorImage``,
    ``TensorCategory``, ...) refuse to meet each other in torch functions."""
    return tensor.as_subclass(torch.Tensor)


def class_indices(yb):
    """Whether the batch's targets are one 1-D integer target per sample (class indices)."""
    return (len(yb) == 1 and torch.is_tensor(yb[0]) and yb[0].ndim == 1 and not torch.is_floating_point(yb[0])
            and yb[0].dtype != torch.bool)


def check_targets(yb):
    """``TypeError`` unless the batch has one 1-D integer target per sample (class indices)."""
    if not class_indices(yb):
        shapes = [(tuple(y.shape), str(y.dtype)) for y in yb]
        raise TypeError(
            "DynamicBootstrapMixUp needs one target per sample given as a class index (one 1-D integer "
            f"tensor per batch, as fastai's CategoryBlock gives); got targets of shape/dtype {shapes}"
        )
