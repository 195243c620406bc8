"""Runs whose validation set is not the test set: a held-out split with noisy labels, as a user
would validate, and the test set scored apart (``benchmarks/training_matrix.py --validation noisy``).

lnc's default reads the learner's validation accuracy under heavy noise (to time its memorisation
call and to choose the weights its rewind goes back to). Validating on the test set with its
clean labels lets it see what it is then scored on; these pieces keep the two apart.
"""

import numpy as np
import torch
from fastai.basics import Callback

__all__ = ["VALID_SEED_OFFSET", "validation_seed", "split_in_two", "ScoreTestSet"]

# A held-out validation split's label noise is drawn from its own stream: the run's seed plus this.
VALID_SEED_OFFSET = 10_000


def validation_seed(seed):
    """The seed of a validation split's label noise for a run seeded ``seed``."""
    return int(seed) + VALID_SEED_OFFSET


def split_in_two(n, n_first, seed=0):
    """Indices ``(first, rest)`` of ``n`` items split by a fixed permutation: ``n_first`` items,
    then the others; the same split for the same arguments."""
    if not 0 < n_first < n:
        raise ValueError(f"n_first must be between 0 and n={n} (both excluded), got {n_first!r}")
    order = np.random.default_rng(seed).permutation(n)
    return order[:n_first], order[n_first:]


def _plain(tensor):
    """``tensor`` as a plain torch.Tensor (fastai's typed tensors compare only with their own kind)."""
    return torch.as_tensor(tensor).as_subclass(torch.Tensor)


class ScoreTestSet(Callback):
    """Test accuracy after every epoch (``accuracies``), from a forward of the test images in eval
    mode without gradients, for a learner that validates on something else. The test set is
    ``images`` and ``labels`` (float tensors as the model takes them), or ``dl``: a DataLoader of
    ``(images, labels)`` batches already on the model's device and transformed as its validation
    batches are (e.g. normalised). Epochs that do not train (``get_preds``, ``validate``) are not
    scored. The model is left in the mode it was found in."""

    order = 55  # after the Recorder (50) has logged the epoch, before anything that writes it out (60)

    def __init__(self, images=None, labels=None, bs=512, dl=None):
        if (dl is None) == (images is None or labels is None):
            raise ValueError("ScoreTestSet needs either images and labels, or dl (a DataLoader of (images, labels) batches)")
        self.images, self.bs, self.dl, self.accuracies = images, bs, dl, []
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels))
        self.predicted = None  # the last epoch's predictions, kept for what a run reports after it

    def _batches(self, device):
        if self.dl is None:
            for i in range(0, len(self.images), self.bs):
                yield self.images[i : i + self.bs].to(device), None
        else:
            for batch in self.dl:
                yield batch[0], batch[1]

    def predictions(self):
        """The model's predicted classes for the test images, on the host."""
        model = self.learn.model
        training = model.training
        model.eval()
        predicted, labels = [], []
        try:
            with torch.no_grad():
                device = next(model.parameters()).device
                for xb, yb in self._batches(device):
                    predicted.append(_plain(model(xb)).argmax(dim=1).cpu())
                    if yb is not None and self.labels is None:  # a loader's labels: read once
                        labels.append(_plain(yb).cpu())
        finally:
            model.train(training)
        if labels and self.labels is None:
            self.labels = torch.cat(labels)
        return torch.cat(predicted)

    def before_train(self):
        self._trained = True

    def after_epoch(self):  # not after get_preds or validate, which run the epoch events without training
        if not getattr(self, "_trained", False):
            return
        self._trained = False
        self.predicted = self.predictions()
        self.accuracies.append(float((self.predicted == self.labels).float().mean()))
