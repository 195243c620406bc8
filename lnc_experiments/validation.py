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


class ScoreTestSet(Callback):
    """Test accuracy after every epoch (``accuracies``), from a forward of ``images`` in eval mode
    without gradients, for a learner that validates on something else. The model is left in the
    mode it was found in."""

    order = 100

    def __init__(self, images, labels, bs=512):
        self.images, self.labels, self.bs, self.accuracies = images, torch.as_tensor(np.asarray(labels)), bs, []
        self.predicted = None  # the last epoch's predictions, kept for what a run reports after it

    def predictions(self):
        """The model's predicted classes for the test images, on the host."""
        model = self.learn.model
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                device = next(model.parameters()).device
                return torch.cat([model(self.images[i : i + self.bs].to(device)).argmax(dim=1).cpu()
                                  for i in range(0, len(self.images), self.bs)])
        finally:
            model.train(training)

    def after_epoch(self):
        self.predicted = self.predictions()
        self.accuracies.append(float((self.predicted == self.labels).float().mean()))
