"""The per-epoch pass's numbers gathered from forwards the training batches already make. Plain
PyTorch, no fastai.

Once lnc's mode bootstraps towards a forward of each un-mixed batch (``fresh_targets``), that
forward, without gradients and in eval mode, sees every sample the epoch trains on, once, just
before the step on its batch. :class:`BatchOutputs` keeps each sample's loss against its given
label, its softmax and its predicted class by dataset index, so that the epoch's pass needs to
run the model only over the samples no batch held (those ``drop_last`` left out).
"""

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["BatchOutputs", "sample_outputs"]


def sample_outputs(logits, labels, probabilities=True):
    """What the pass keeps of each sample from float ``logits`` and the given ``labels``: its
    cross-entropy, its predicted class and (unless ``probabilities`` is False, then None) its
    softmax as float16. The whole pass and the batches' forwards both read their numbers here."""
    losses = F.cross_entropy(logits, labels, reduction="none")
    probs = F.softmax(logits, dim=1).half() if probabilities else None
    return losses, logits.argmax(dim=1), probs


class BatchOutputs:
    """Per-sample loss, softmax (float16) and predicted class of ``n`` samples with ``n_classes``
    classes, filled batch by batch on ``device`` by :meth:`add`."""

    def __init__(self, n, n_classes, device):
        self.losses = torch.full((n,), float("nan"), device=device)
        self.probabilities = torch.zeros((n, n_classes), dtype=torch.float16, device=device)
        self.predictions = torch.zeros(n, dtype=torch.long, device=device)
        self.labels = torch.zeros(n, dtype=torch.long, device=device)
        self.seen = torch.zeros(n, dtype=torch.bool, device=device)

    def add(self, idx, logits, labels):
        """The batch of dataset indices ``idx``: its logits (un-mixed inputs) and given labels."""
        losses, predictions, probabilities = sample_outputs(logits.detach().float(), labels)
        self.losses[idx], self.predictions[idx], self.probabilities[idx] = losses, predictions, probabilities
        self.labels[idx] = labels
        self.seen[idx] = True

    def unseen(self):
        """Dataset indices of the samples no batch held, as a NumPy array."""
        return np.flatnonzero(~self.seen.cpu().numpy())

    def arrays(self, rest=None, rest_values=None):
        """``(losses, labels, predictions, probabilities)`` as NumPy arrays in dataset order, with
        the samples ``rest`` (dataset indices) taken from ``rest_values``, the same four arrays for
        those samples alone (from a pass over them)."""
        values = [t.cpu().numpy() for t in (self.losses, self.labels, self.predictions, self.probabilities)]
        if rest is not None and len(rest):
            for whole, part in zip(values, rest_values):
                whole[rest] = part
        return tuple(values)
