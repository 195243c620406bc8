"""A fitted detector's p(noisy | loss), tabulated once per epoch and read on the device.

Detectors from :mod:`lnc_sklearn` (or any estimator with ``predict_proba``) run on NumPy arrays
on the CPU. Calling one every batch would copy each batch's losses from the GPU and back. Their
posterior is a function of one number, so the callback tabulates it on a fine uniform grid of
loss values after each refit, and every batch reads it by linear interpolation on the device.
With a monotone posterior (lnc's detectors' default) the interpolation error is bounded by the
posterior's change over one grid step.
"""

import numpy as np
import torch

__all__ = ["PosteriorTable", "detector_input", "noisy_probability"]


def detector_input(detector, losses):
    """What ``detector`` expects for these cross-entropy losses: the losses, or for a detector
    declared with ``input_type="confidence"`` the probability of the given label, ``exp(-loss)``."""
    losses = np.asarray(losses, dtype=np.float64)
    if getattr(detector, "input_type", "loss") == "confidence":
        return np.exp(-losses)
    return losses


def noisy_probability(detector, losses, labels=None):
    """p(noisy) of each loss under a fitted detector (column 1 of ``predict_proba``), given the
    samples' labels where there are some (lnc's detectors then scale it within each label)."""
    values = detector_input(detector, losses).reshape(-1, 1)
    probabilities = detector.predict_proba(values) if labels is None else detector.predict_proba(values, y=labels)
    return np.asarray(probabilities)[:, 1]


class PosteriorTable:
    """p(noisy) on the uniform grid ``0, step, ..., max_loss``; losses beyond it read the end value.

    Build it with :meth:`from_detector`; call it on a tensor of losses (any shape, any device it
    was moved to) to get p(noisy) of the same shape, in float32, without leaving the device.
    """

    def __init__(self, max_loss, p_noisy):
        p_noisy = torch.as_tensor(p_noisy, dtype=torch.float32)
        if p_noisy.ndim != 1 or p_noisy.numel() < 2:
            raise ValueError("p_noisy must be a 1-D table of at least 2 grid values")
        if not max_loss > 0:
            raise ValueError(f"max_loss must be > 0, got {max_loss!r}")
        self.max_loss = float(max_loss)
        self.p_noisy = p_noisy
        self.step = self.max_loss / (p_noisy.numel() - 1)

    @classmethod
    def from_detector(cls, detector, max_loss, size=4096, device="cpu"):
        """Tabulate ``detector``'s p(noisy) at ``size`` losses evenly spaced over [0, max_loss]."""
        if size < 2:
            raise ValueError(f"size must be at least 2, got {size!r}")
        max_loss = float(max_loss) if max_loss > 0 else 1.0
        grid = np.linspace(0.0, max_loss, size)
        return cls(max_loss, noisy_probability(detector, grid)).to(device)

    def to(self, device):
        self.p_noisy = self.p_noisy.to(device)
        return self

    def __call__(self, losses):
        size = self.p_noisy.numel()
        # A non-finite loss reads the table's high end: such a sample is the least trustworthy.
        losses = torch.nan_to_num(losses.float(), nan=self.max_loss, posinf=self.max_loss, neginf=0.0)
        position = (losses / self.step).clamp(0, size - 1)
        left = position.floor().long().clamp(max=size - 2)
        return torch.lerp(self.p_noisy[left], self.p_noisy[left + 1], position - left)
