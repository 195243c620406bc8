"""How many labels are wrong, and which, from the full predicted class probabilities.

Confident learning (Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021), written from the paper:

- Each class ``j`` gets a threshold ``t_j``: the mean probability of ``j`` over the samples
  labelled ``j``, the model's typical confidence in a correct ``j``. Thresholds per class make
  the count fair to classes the model is less sure of.
- A sample labelled ``i`` "confidently belongs" to class ``j`` when ``p_j >= t_j``; of several
  such classes, the one with the highest probability. The confident joint ``C[i, j]`` counts the
  samples labelled ``i`` that confidently belong to ``j``; samples that belong confidently to no
  class are left out.
- Calibrated to the label counts (each row scaled to the number of samples with that label, then
  the whole divided by ``n``), ``C`` becomes the estimated joint distribution ``Q[i, j]`` of the
  given label ``i`` and the true class ``j``: the noise rate is ``1 - trace(Q)``, each label's
  rate ``1 - Q[i, i] / sum_j Q[i, j]``, and the noise matrix ``P(given i | true j)`` is ``Q``
  with each column divided by its sum.

All functions take ``labels`` as column indices (0 to K - 1) of ``pred_probs``; mapping class
names to columns is :func:`lnc_sklearn.probabilities.label_columns`'s job.
"""

import numpy as np

__all__ = ["class_thresholds", "confident_joint", "joint_counts",
           "calibrated_joint", "noise_matrix", "label_noise_rates"]


def class_thresholds(labels, pred_probs):
    """Per class ``j``, the mean of ``pred_probs[:, j]`` over the samples labelled ``j``; ``inf``
    (never confident) for a class that no sample is labelled with.

    >>> class_thresholds(np.array([0, 0, 1]), np.array([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6]]))
    array([0.8, 0.6])
    """
    n_classes = pred_probs.shape[1]
    given = pred_probs[np.arange(labels.size), labels]
    counts = np.bincount(labels, minlength=n_classes)
    sums = np.bincount(labels, weights=given, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)


def confident_classes(pred_probs, thresholds, predicted=None):
    """Each sample's confident class: the class whose probability reaches its threshold, or -1
    where none does. Where several do, the model's predicted class (its argmax), as cleanlab's
    implementation resolves these collisions; the paper takes the most probable of the confident
    classes, which differs where the predicted class itself is below its threshold, and on the
    development cases at 80% noise gave the flags a lower F1 (``benchmarks/results/detector_quality.md``).
    ``predicted`` (the argmax), where already at hand, saves a pass."""
    confident = pred_probs >= thresholds
    n_confident = confident.view(np.uint8).sum(axis=1, dtype=np.uint8 if confident.shape[1] < 256 else np.int32)
    predicted = pred_probs.argmax(axis=1) if predicted is None else predicted
    choice = np.where(n_confident > 0, predicted, -1)
    # one confident class that is not the argmax: that class (found on those rows only)
    single = np.flatnonzero((n_confident == 1) & ~confident[np.arange(predicted.size), predicted])
    choice[single] = confident[single].argmax(axis=1)
    return choice


def confident_joint(labels, pred_probs, thresholds=None):
    """``(K, K)`` counts ``C[i, j]``: samples labelled ``i`` whose confident class is ``j``.

    >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    >>> confident_joint(np.array([0, 0, 0, 1, 1]), probs)
    array([[2, 1],
           [0, 1]])
    """
    if thresholds is None:
        thresholds = class_thresholds(labels, pred_probs)
    return joint_counts(labels, confident_classes(pred_probs, thresholds), pred_probs.shape[1])


def joint_counts(labels, guess, n_classes):
    """``(K, K)`` counts of samples by given label (rows) and confident class (columns); samples
    without a confident class (``guess == -1``) are left out."""
    keep = guess >= 0
    cells = np.bincount(labels[keep] * n_classes + guess[keep], minlength=n_classes * n_classes)
    return cells.reshape(n_classes, n_classes)


def calibrated_joint(counts, label_counts):
    """The confident joint ``counts`` calibrated into a joint distribution ``Q``: each row scaled
    to its label's count (a label none of whose samples was confident keeps them all as
    correct), then the whole divided by the number of samples.

    >>> calibrated_joint(np.array([[2, 1], [0, 2]]), np.array([3, 2]))
    array([[0.4, 0.2],
           [0. , 0.4]])
    """
    counts = np.asarray(counts, dtype=np.float64)
    label_counts = np.asarray(label_counts, dtype=np.float64)
    rows = counts.sum(axis=1)
    empty = rows == 0
    counts = counts.copy()
    counts[empty, empty.nonzero()[0]] = 1.0  # nothing confident: no evidence against the label
    rows = counts.sum(axis=1)
    joint = counts / rows[:, None] * label_counts[:, None]
    return joint / label_counts.sum()


def label_noise_rates(joint):
    """Each given label's share of wrong labels, ``1 - Q[i, i] / sum_j Q[i, j]`` (0 for a label
    with no samples).

    >>> label_noise_rates(np.array([[0.4, 0.2], [0.0, 0.4]]))
    array([0.33333333, 0.        ])
    """
    rows = joint.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, 1.0 - np.diag(joint) / np.where(rows > 0, rows, 1.0), 0.0)


def noise_matrix(joint):
    """``P(given label i | true class j)``: the joint with each column divided by its sum (a
    class that is no sample's true class gets the identity column).

    >>> noise_matrix(np.array([[0.4, 0.2], [0.0, 0.4]]))
    array([[1.        , 0.33333333],
           [0.        , 0.66666667]])
    """
    joint = np.asarray(joint, dtype=np.float64)
    columns = joint.sum(axis=0)
    matrix = np.where(columns > 0, joint / np.where(columns > 0, columns, 1.0), 0.0)
    missing = np.flatnonzero(columns == 0)
    matrix[missing, missing] = 1.0
    return matrix
