"""The maths lnc's own training mode (:class:`lnc_fastai.TrainingPolicy`) reads, in plain NumPy.

- the memorisation call: the share of the samples flagged one pass before that the network now
  predicts as their given label, beyond what its churn between passes puts there by chance
  (:func:`memorisation`, :func:`memorising`), read only while the validation accuracy no longer
  rises (:func:`still_improving`);
- the bootstrapping weights' ramp (:func:`ramp`) and the collapse guard, which backs off when
  the network's predictions crowd into fewer classes than they did before (:func:`effective_classes`,
  :func:`collapse_guard`: what the class-balance regulariser does not see when the batch's mean
  softmax stays uniform while every argmax is the same);
- the running average of each sample's softmax over passes (:func:`running_average`), the
  labels' class prior for the regulariser (:func:`class_prior`), and what the history reports
  (:func:`label_fit`, :func:`noise_regime`).

Nothing here imports torch or fastai.
"""

import numpy as np

__all__ = ["running_average", "effective_classes", "collapse_guard", "ramp", "class_prior", "memorisation", "memorising",
           "label_fit", "still_improving", "noise_regime", "CHANCE_MARGIN"]

# How far the share of flagged samples predicted as their label must exceed what churn gives by
# chance (:func:`memorisation` with the previous predictions) for :func:`memorising` to say yes.
CHANCE_MARGIN = 0.01


def running_average(average, probabilities, momentum):
    """``momentum * average + (1 - momentum) * probabilities``, row by row; the first epoch
    (``average`` None) starts at ``probabilities``. Returns float32."""
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if average is None:
        return probabilities.copy()
    average = np.asarray(average, dtype=np.float32)
    if average.shape != probabilities.shape:
        raise ValueError(f"the running average has shape {average.shape} but this epoch's outputs {probabilities.shape}")
    return momentum * average + (1 - momentum) * probabilities


def effective_classes(classes, n_classes):
    """How many classes ``classes`` (integer class indices) spread over: ``exp`` of the entropy
    of their histogram; ``n_classes`` for an even spread, 1 when all are one class."""
    counts = np.bincount(np.asarray(classes, dtype=np.int64).ravel(), minlength=n_classes).astype(np.float64)
    if counts.sum() == 0:
        return float("nan")
    share = counts[counts > 0] / counts.sum()
    return float(np.exp(-(share * np.log(share)).sum()))


def collapse_guard(effective, widest, low=0.5, high=0.8):
    """A factor in [0, 1] on the bootstrapping weights from how widely the network's predictions
    on the training set spread now (``effective``, :func:`effective_classes`) against the widest
    they have spread in this run (``widest``): 1 down to ``high`` times it, 0 at ``low`` times
    or less, linear between. A network that is still narrow early on is not held back; one
    whose predictions crowd into fewer classes than before is."""
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high, got low={low!r}, high={high!r}")
    if not (np.isfinite(effective) and np.isfinite(widest) and widest > 0):
        return 0.0
    return float(np.clip((effective / widest - low) / (high - low), 0.0, 1.0))


def ramp(epoch, start, length):
    """0 before ``start``, then rising linearly to 1 over ``length`` epochs (1 at once for a
    length of 0): ``min(1, (epoch - start + 1) / (length + 1))``."""
    if epoch < start:
        return 0.0
    return float(min(1.0, (epoch - start + 1) / (length + 1)))


def class_prior(labels, n_classes):
    """The given labels' class frequencies: the prior of lnc's class-balance regulariser, so that
    imbalanced data are not pushed towards uniform predictions."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=n_classes).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def memorisation(predictions, labels, flagged, previous=None, n_classes=None):
    """The share of the samples ``flagged`` as mislabelled one pass ago that the network now
    predicts as their given label, beyond the share its churn gives by chance: near zero (or
    below) while it does not fit the labels it disbelieves, rising as it memorises them. NaN
    without flagged samples.

    With the pass's ``previous`` predictions and ``n_classes`` of 3 or more, the chance share is
    taken off: a flagged sample whose prediction moved away from a class other than its label
    lands on its label one time in ``n_classes - 1`` if the move ignores the label. A network
    that has learnt little churns: in a CIFAR-10 run at 80% noise (12 one-cycle epochs), 74-90%
    of the flagged samples changed class from one pass to the next before the call, and 4-10%
    landed on their label, as many as chance would put there, while the network did not
    memorise (cross-entropy's accuracy peaks at its last epoch there). Without ``previous`` (or
    with two classes, where any move lands on the label) the share is returned as it is."""
    flagged = np.asarray(flagged, dtype=bool)
    if not flagged.any():
        return float("nan")
    predictions, labels = np.asarray(predictions)[flagged], np.asarray(labels)[flagged]
    share = float(np.mean(predictions == labels))
    if previous is None or n_classes is None or n_classes < 3:
        return share
    previous = np.asarray(previous)[flagged]
    moved = np.count_nonzero((previous != labels) & (predictions != previous))
    return share - moved / (n_classes - 1) / flagged.sum()


def memorising(share, beyond_chance, threshold, margin=CHANCE_MARGIN):
    """Whether the network memorises the labels it disbelieved: more than ``threshold`` of the
    samples flagged one pass before are now predicted as their given label (``share``,
    :func:`memorisation` without the previous predictions), and more than ``margin`` of them
    beyond the share that its churn gives by chance (``beyond_chance``, :func:`memorisation`
    with them). NaNs say no.

    The share alone is reached by chance by a network that has learnt little and changes most
    of its predictions between passes (CIFAR-10 at 80% noise, ``docs/training.md``); the share
    beyond chance alone, against the same threshold, comes late where a network memorises
    slowly (MNIST-2000 at 80%: 7-11 epochs later, and 4 and 11 points lost in two of three runs)."""
    return bool(share > threshold and beyond_chance > margin)


def label_fit(predictions, labels):
    """The share of the samples that the network predicts as their given label (NaN for none)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions have shape {predictions.shape} but labels {labels.shape}")
    return float(np.mean(predictions == labels)) if predictions.size else float("nan")


def still_improving(history, patience=3, min_gain=0.025):
    """Whether the network still generalises better: one of the last ``patience`` values of
    ``history`` (its accuracy on the validation set against the given labels, one per epoch)
    exceeds every earlier value by more than ``min_gain`` of the curve's range so far (its
    highest value minus its lowest). NaNs are left out.

    With fewer than ``patience + 1`` values it is too early to tell: True. Without any (no
    validation set) it cannot tell at all: False, so that nothing is held back by it.

    Fitting labels the network disbelieved looks the same whether it is memorising wrong labels
    or still learning right ones that are hard. The validation accuracy tells them apart: it
    rises while the network learns and stalls or falls as it memorises (the reason early
    stopping works under label noise). The gain is a share of the range, not a number of
    points, because wrong labels in the validation set compress the curve without changing its
    shape (at 80% symmetric noise over 10 classes an accuracy ``a`` reads ``0.089 + 0.111 a``): a
    fixed gain of one point would read a compressed curve as stalled epochs early. Three epochs,
    not two: a one-cycle CIFAR-10 run without noise can stall for two epochs at its peak
    learning rate."""
    values = [float(v) for v in (history or []) if np.isfinite(v)]
    if not values:
        return False
    if len(values) <= patience:
        return True
    return max(values[-patience:]) > max(values[:-patience]) + min_gain * (max(values) - min(values))


def noise_regime(count):
    """``"heavy"`` where the network disbelieves most labels (``count.most_disbelieved``),
    ``"light"`` where the count puts some labels as wrong among labels the network mostly
    believes (its rate is above 0: a group of disbelieved labels stands apart, or at least 2%
    are confidently disbelieved, :mod:`lnc_sklearn.noise_count`), else ``"none"``. The policy
    bootstraps only under heavy noise; the others are reported."""
    if count.most_disbelieved:
        return "heavy"
    return "light" if count.rate > 0 else "none"
