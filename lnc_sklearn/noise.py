"""Label-noise injection for experiments: symmetric and class-conditional (asymmetric).

Papers disagree on what "r% symmetric noise" means, and the numbers they report depend on
it (Arazo et al. include the true class; many later papers do not), so both choices are
explicit options here:

- ``include_true_class=True`` (Arazo et al.): a picked sample gets a label drawn uniformly
  from all C classes, its own included, so only ``r (C - 1) / C`` of the labels end up
  wrong. ``False``: the new label is drawn from the other C - 1 classes, so every picked
  label is wrong.
- ``exact=False``: each sample is picked independently with probability r. ``True``:
  exactly ``round(r * N)`` samples are picked (per class, for asymmetric noise).

Every function returns ``(noisy_labels, noise_mask)``, where ``noise_mask`` is the mask of
samples whose label differs from the given one: the ground truth for detection.
"""

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["CIFAR10_ASYMMETRIC", "symmetric_noise", "asymmetric_noise"]

#: The usual CIFAR-10 class-conditional flips: truck -> automobile, bird -> airplane,
#: deer -> horse, cat <-> dog (class indices of the official order).
CIFAR10_ASYMMETRIC = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}


def _check_labels(labels, n_classes):
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D array of integer class indices, got dtype {labels.dtype} "
            f"and shape {labels.shape}"
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be non-negative class indices, got {labels.min()}")
    if n_classes is None:
        n_classes = int(labels.max()) + 1 if labels.size else 0
    elif labels.size and labels.max() >= n_classes:
        raise ValueError(f"label {labels.max()} is out of range for n_classes={n_classes}")
    return labels.astype(np.int64), n_classes


def _check_rate(rate):
    if not 0 <= rate <= 1:
        raise ValueError(f"rate must be a probability in [0, 1], got {rate!r}")


def _pick(n, rate, exact, rng):
    """Mask of samples picked for relabelling: each with probability ``rate``, or exactly
    ``round(rate * n)`` of them."""
    if exact:
        picked = np.zeros(n, dtype=bool)
        picked[rng.choice(n, size=int(round(rate * n)), replace=False)] = True
        return picked
    return rng.random_sample(n) < rate


def symmetric_noise(
    labels, rate, *, n_classes=None, include_true_class=True, exact=False, random_state=None
):
    """Relabel a fraction ``rate`` of samples with uniformly random classes.

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        The true class indices.
    rate : float in [0, 1]
        The fraction of samples picked for relabelling.
    n_classes : int, optional
        Number of classes; default ``labels.max() + 1``.
    include_true_class : bool, default=True
        Draw the new label from all classes (the paper's convention: a picked sample keeps
        its label with probability 1 / C) or only from the other classes.
    exact : bool, default=False
        Pick exactly ``round(rate * n_samples)`` samples instead of each with probability
        ``rate``.
    random_state : int, RandomState instance or None
        Seed.

    Returns
    -------
    noisy_labels : ndarray of int64
    noise_mask : ndarray of bool
        True where ``noisy_labels != labels`` (what ``noise_mask=`` takes everywhere in lnc).

    Examples
    --------
    >>> y = np.repeat(np.arange(10), 100)
    >>> noisy, noise_mask = symmetric_noise(y, 0.5, include_true_class=False, exact=True,
    ...                                  random_state=0)
    >>> int(noise_mask.sum())
    500
    """
    labels, n_classes = _check_labels(labels, n_classes)
    _check_rate(rate)
    if n_classes < 2 and rate > 0:
        raise ValueError("symmetric noise needs at least two classes")
    rng = check_random_state(random_state)
    picked = _pick(labels.size, rate, exact, rng)
    noisy = labels.copy()
    if include_true_class:
        noisy[picked] = rng.randint(n_classes, size=int(picked.sum()))
    else:
        # A shift of 1..C-1 classes lands uniformly on every class but the true one.
        shift = rng.randint(1, n_classes, size=int(picked.sum()))
        noisy[picked] = (labels[picked] + shift) % n_classes
    return noisy, noisy != labels


def asymmetric_noise(labels, rate, mapping, *, exact=False, random_state=None):
    """Flip samples of some classes to a fixed other class (class-conditional noise).

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        The true class indices.
    rate : float in [0, 1]
        Probability that a sample of a source class is flipped.
    mapping : dict {source_class: target_class}
        For example ``CIFAR10_ASYMMETRIC``. Classes not in it keep their labels.
    exact : bool, default=False
        Flip exactly ``round(rate * n_c)`` samples of each source class ``c``.
    random_state : int, RandomState instance or None
        Seed.

    Returns
    -------
    noisy_labels : ndarray of int64
    noise_mask : ndarray of bool

    Examples
    --------
    >>> y = np.repeat(np.arange(10), 100)
    >>> noisy, noise_mask = asymmetric_noise(y, 0.4, CIFAR10_ASYMMETRIC, exact=True,
    ...                                   random_state=0)
    >>> int(noise_mask.sum()), sorted(set(noisy[noise_mask & (y == 9)].tolist()))
    (200, [1])
    """
    labels, _ = _check_labels(labels, None)
    _check_rate(rate)
    rng = check_random_state(random_state)
    noisy = labels.copy()
    for source, target in sorted(mapping.items()):
        members = np.flatnonzero(labels == source)
        flip = _pick(members.size, rate, exact, rng)
        noisy[members[flip]] = target
    return noisy, noisy != labels
