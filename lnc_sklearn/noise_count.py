"""How many labels are wrong: the count, its 90% interval and its verdict, from what the user has.

Three kinds of evidence, each counted by the method that uses it best:

- **Predicted class probabilities** (``pred_probs``, with the labels): confident learning
  (:mod:`lnc_sklearn.confident_joint`). Source ``"confident joint"``.
- **Losses with the labels**: each label's probability ``p = exp(-loss)`` read against the
  other labels' typical confidence. Per label ``c``, a sample is counted right when ``p`` reaches
  ``t_c``, the mean ``p`` of the samples labelled ``c``, and wrong when ``p`` is at most
  ``s_c = min(1/K, 1 - max_{j != c} t_j)``: below chance, so another class is certainly
  preferred, and low enough that another label could be confident. The wrong share among the
  counted is the label's rate (source ``"label confidence"``). For two classes this is confident
  learning exactly; with more it sees only the given label's column. Where the log-odds count
  (:mod:`lnc_sklearn.noise_rate`) finds a separate group of disbelieved labels holding at least
  half of the samples counted wrong, that group's share is the rate instead (source
  ``"log-odds count"``): it follows the wrong labels of a network that fits its data more
  closely. A smaller group is an extreme sub-group (a forest's zero-vote samples), not the
  wrong labels. And where the samples counted wrong are too few to show noise (their share's
  lower bound under ``FOUND``: a model's confident mistakes on clean labels look the same),
  the log-odds count stands, which finds no noise where no group stands apart.
- **Losses alone**: the log-odds count.

Where the network gives most samples less than even odds (early in training, a weak network,
heavy noise; ``most_disbelieved``), no count from the losses holds, the verdict is "cannot
tell", and the rate is the mixture's own, its mean p(noisy) (within each label group given
the labels; source ``"mixture"``), the paper's reading.

**The interval** is the range between a lower and an upper reading of the count, each widened
by its 90% sampling error (binomial): the lower one counts the samples confidently labelled as
another class, the upper one every sample whose label the model does not favour (with
probabilities: another class predicted; from losses: ``p < 1/2``). The truth lies between them
unless the model has memorised wrong labels (it then favours them) or is confidently wrong on
clean samples. **The verdict** follows from it: "little or no noise" where the upper end is at
most ``LITTLE`` (positive evidence: at most that share is even disbelieved), "noise" where the
lower end is at least ``FOUND``, else "cannot tell".
"""

from dataclasses import dataclass, replace

import numpy as np

from .confident_joint import (calibrated_joint, class_thresholds, confident_classes, joint_counts, label_noise_rates,
                              noise_matrix)
from .noise_rate import count_threshold, estimate_noise_rate, label_log_odds
from .probabilities import check_pred_probs, label_columns

__all__ = ["NoiseCount", "count_label_noise", "count_noise", "count_from_probabilities", "count_from_losses",
           "noise_interval", "verdict", "LITTLE", "FOUND"]

#: "little or no noise": the interval's upper end is at most this share.
LITTLE = 0.05
#: "noise": the interval's lower end is at least this share.
FOUND = 0.02
_Z90 = 1.6448536269514722  # the 95th percentile of the standard normal: two-sided 90%


@dataclass(frozen=True, eq=False)
class NoiseCount:
    """The estimated share of wrong labels, and what stands behind it.

    Attributes
    ----------
    rate : float
        The point estimate.
    interval : (float, float)
        A 90% interval (see the module's docstring).
    verdict : {"noise", "little or no noise", "cannot tell"}
    source : {"confident joint", "label confidence", "log-odds count", "mixture"}
        Which count gave ``rate``.
    classes : ndarray or None
        The given labels the per-class figures refer to (in sorted order, or the probability
        columns' order); None without labels.
    class_rates : ndarray or None
        Each class's share of wrong labels among the samples given that label.
    noise_matrix : ndarray or None
        With probabilities: ``P(given label i | true class j)``, rows and columns in ``classes``
        order.
    separation : float
        How far the log-odds count's group of disbelieved labels stands apart (Ashman's D; NaN
        where it was not used).
    most_disbelieved : bool
        The model gives most labels less than even odds (a weak model, early training, heavy
        noise): no count from losses holds, and the verdict is "cannot tell".
    """

    rate: float
    interval: tuple
    verdict: str
    source: str
    classes: np.ndarray | None = None
    class_rates: np.ndarray | None = None
    noise_matrix: np.ndarray | None = None
    separation: float = float("nan")
    most_disbelieved: bool = False

    @property
    def reason(self):
        """One sentence: the verdict and why."""
        low, high = self.interval
        span = f"{self.rate:.3f} (90% interval {low:.3f} to {high:.3f})"
        if self.most_disbelieved:
            return (f"cannot tell: the model gives most labels less than even odds (a weak model, early training or "
                    f"heavy noise), so no count from the losses holds; the best estimate is {span}")
        if self.verdict == "little or no noise":
            return f"little or no label noise: at most {high:.3f} of the labels are even disbelieved; estimate {span}"
        if self.verdict == "noise":
            return f"label noise found: estimated share of wrong labels {span}"
        return f"cannot tell whether there is label noise: estimated share of wrong labels {span}"

    def __str__(self):
        return self.reason


def _share_bounds(count_low, count_high, n):
    """The lower share's 5th and the upper share's 95th percentile (normal approximation of the
    binomial, at least one sample's worth of spread)."""
    low, high = count_low / n, count_high / n
    return max(0.0, low - _spread(low, n)), min(1.0, high + _spread(high, n))


def _spread(share, n):
    """The 90% sampling error of a share of ``n`` samples (at least one sample's worth)."""
    return _Z90 * np.sqrt(max(share * (1 - share), 1.0 / n) / n)


def noise_interval(rate, low_count, high_count, n):
    """``(low, high)``: the shares ``low_count / n`` and ``high_count / n`` widened by their 90%
    sampling error, and stretched to hold ``rate``.

    >>> [round(v, 3) for v in noise_interval(0.1, 80, 120, 1000)]
    [0.066, 0.137]
    """
    low, high = _share_bounds(low_count, high_count, n)
    return float(min(low, rate)), float(max(high, rate))


def verdict(interval, most_disbelieved=False):
    """The verdict the interval supports (see the module's docstring)."""
    low, high = interval
    if most_disbelieved:
        return "cannot tell"
    if high <= LITTLE:
        return "little or no noise"
    if low >= FOUND:
        return "noise"
    return "cannot tell"


def _count(rate, interval, source, **extra):
    return NoiseCount(rate=float(rate), interval=tuple(float(v) for v in interval),
                      verdict=verdict(interval, extra.get("most_disbelieved", False)), source=source, **extra)


def count_from_probabilities(labels, pred_probs, classes):
    """Confident learning's count from ``labels`` (column indices) and ``pred_probs``; returns the
    :class:`NoiseCount` (``classes`` naming the columns) and the calibrated joint ``Q``, from
    which the flags are taken.

    >>> probs = np.array([[0.9, 0.1]] * 8 + [[0.05, 0.95]] * 2 + [[0.1, 0.9]] * 10)
    >>> count, _ = count_from_probabilities(np.r_[[0] * 10, [1] * 10], probs, np.array([0, 1]))
    >>> round(count.rate, 2), count.source
    (0.1, 'confident joint')
    """
    n, n_classes = pred_probs.shape
    thresholds = class_thresholds(labels, pred_probs)
    predicted = pred_probs.argmax(axis=1)
    guess = confident_classes(pred_probs, thresholds, predicted)
    keep = guess >= 0
    joint = calibrated_joint(joint_counts(labels, guess, n_classes), np.bincount(labels, minlength=n_classes))
    rate = 1.0 - float(np.trace(joint))
    confidently_other = int(np.count_nonzero(keep & (guess != labels)))
    not_predicted = int(np.count_nonzero(predicted != labels))
    interval = noise_interval(rate, confidently_other, not_predicted, n)
    count = _count(rate, interval, "confident joint", classes=classes, class_rates=label_noise_rates(joint),
                   noise_matrix=noise_matrix(joint))
    return count, joint


def count_label_noise(labels, pred_probs, *, classes=None):
    """How many labels are wrong, from the labels and a model's predicted probabilities alone.

    Confident learning's count (the module's docstring) with its 90% interval, verdict, each
    class's share of wrong labels and the noise matrix, as a :class:`NoiseCount`. ``labels``
    are class indices or names; ``classes`` gives the class of each column of ``pred_probs``
    (by default integer labels 0..K-1 are the column numbers, other labels map to the columns
    in sorted order). Out-of-fold probabilities (``cross_val_predict(..., method="predict_proba")``)
    count the noise; a model's probabilities on the labels it was trained on under-count the
    wrong labels it has memorised. Which samples: :func:`lnc_sklearn.noise_report` with the same
    two arguments.

    >>> labels = np.r_[[0] * 10, [1] * 10]
    >>> probs = np.array([[0.9, 0.1]] * 8 + [[0.05, 0.95]] * 2 + [[0.1, 0.9]] * 10)
    >>> count = count_label_noise(labels, probs)
    >>> round(count.rate, 2), count.class_rates.round(2).tolist()
    (0.1, [0.2, 0.0])
    """
    probs = check_pred_probs(pred_probs)
    columns, names = label_columns(np.asarray(labels), probs.shape[1], classes)
    if columns.size != probs.shape[0]:
        raise ValueError(f"labels has {columns.size} entries but pred_probs has {probs.shape[0]} rows")
    return count_from_probabilities(columns, probs, names)[0]


def _label_confidence(p_given, labels, n_classes):
    """The count from the given labels' probabilities: per label, ``(n_wrong, n_right, n)``."""
    sizes = np.bincount(labels, minlength=n_classes)
    typical = np.bincount(labels, weights=p_given, minlength=n_classes) / np.maximum(sizes, 1)
    typical = np.where(sizes > 0, typical, 0.0)  # a class nobody is labelled with is never confident
    others = np.array([np.delete(typical, c).max() for c in range(n_classes)])
    ceiling = np.minimum(1.0 / n_classes, 1.0 - others)
    wrong = p_given <= ceiling[labels]
    right = p_given >= typical[labels]
    return (np.bincount(labels[wrong], minlength=n_classes), np.bincount(labels[right], minlength=n_classes),
            sizes)


def count_from_losses(values, labels=None, p_mixture=None, input_type="loss", *, min_separation=2.5):
    """The count from per-sample losses (or confidences), within each given label when
    ``labels`` are given (as indices ``0..K-1``); ``p_mixture`` is the mixture's p(noisy), the
    rate where the network disbelieves most labels. Returns a :class:`NoiseCount` whose
    ``class_rates`` (with labels) are per label index.

    >>> rng = np.random.default_rng(0)
    >>> clean, wrong = rng.exponential(0.05, 9000), rng.normal(4.0, 0.8, 1000).clip(0)
    >>> count = count_from_losses(np.r_[clean, wrong])
    >>> round(count.rate, 2), count.source, count.verdict
    (0.1, 'log-odds count', 'noise')
    >>> count_from_losses(clean).verdict
    'little or no noise'
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        raise ValueError("no values to count: the count needs at least one loss or confidence")
    log_odds = label_log_odds(values, input_type)
    p_given = np.exp(-values) if input_type == "loss" else values
    disbelieved = int(np.count_nonzero(log_odds < 0))
    from_mixture = disbelieved > n / 2  # the median below even odds
    n_classes = 1 if labels is None else int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=n_classes) if labels is not None else np.array([n])
    separated, best_separation = np.zeros(n_classes), 0.0
    group_index = _size_groups(sizes) if labels is not None else np.zeros(1, dtype=int)
    groups = group_index[labels] if labels is not None else np.zeros(n, dtype=int)  # each sample's group
    for group in np.unique(group_index):
        members = np.flatnonzero(group_index == group)
        part = groups == group
        estimate = estimate_noise_rate(values[part], input_type, min_separation=min_separation,
                                       log_odds=log_odds[part])
        best_separation = max(best_separation, estimate["separation"])
        separated[members] = estimate["rate"]
    extra = {"separation": float(best_separation)}
    if labels is not None:
        extra["classes"] = np.arange(n_classes)
    if from_mixture:
        extra["most_disbelieved"] = True
        if labels is None:
            rate = float(np.mean(p_mixture)) if p_mixture is not None else 0.0
            return _count(rate, noise_interval(rate, 0, disbelieved, n), "mixture", **extra)
        # the mixture's mean p(noisy) within each of the log-odds count's groups
        n_groups = group_index.max() + 1
        means = np.bincount(groups, weights=p_mixture, minlength=n_groups) / np.maximum(
            np.bincount(groups, minlength=n_groups), 1)
        rates = means[group_index]
        rate = float(rates @ sizes / n)
        wrong = _label_confidence(p_given, labels, n_classes)[0]
        return _count(rate, noise_interval(rate, min(wrong.sum(), rate * n), disbelieved, n), "mixture",
                      class_rates=rates, **extra)
    group_rate = float(separated @ sizes / n)
    if labels is None:
        low = group_rate * n if group_rate > 0 else 0
        return _count(group_rate, noise_interval(group_rate, low, disbelieved, n), "log-odds count", **extra)
    wrong, right, _ = _label_confidence(p_given, labels, n_classes)
    evidenced = _share_bounds(wrong.sum(), 0, n)[0] >= FOUND
    if (group_rate > 0 and group_rate * n >= wrong.sum() / 2) or not evidenced:
        rates, source = separated, "log-odds count"
    else:
        rates = np.where(wrong + right > 0, wrong / np.maximum(wrong + right, 1), 0.0)
        source = "label confidence"
    rate = float(rates @ sizes / n)
    return _count(rate, noise_interval(rate, wrong.sum(), disbelieved, n), source, class_rates=rates, **extra)


def count_noise(values, labels=None, p_mixture=None, input_type="loss"):
    """:func:`count_from_losses` for labels of any kind, with the samples it counts:
    ``(count, flags)``, where ``flags`` marks each label's ``round(rate * n)`` noisiest samples
    (all labels together without ``labels``) and ``count.classes`` are the distinct labels.

    >>> rng = np.random.default_rng(0)
    >>> losses = np.r_[rng.exponential(0.02, 570), rng.normal(5.0, 0.5, 30)]
    >>> count, flags = count_noise(losses, np.r_[["a"] * 300, ["b"] * 300])
    >>> count.class_rates.round(2).tolist(), int(flags[300:].sum()), count.classes.tolist()
    ([0.0, 0.1], 30, ['a', 'b'])
    """
    values = np.asarray(values, dtype=np.float64)
    noisiness = values if input_type == "loss" else -values
    if labels is None:
        count = count_from_losses(values, None, p_mixture, input_type)
        return count, noisiness >= count_threshold(noisiness, count.rate)
    labels = np.asarray(labels)
    if labels.dtype == object and all(isinstance(label, str) for label in labels):
        labels = labels.astype(str)
    classes, index = np.unique(labels, return_inverse=True)
    count = count_from_losses(values, index.astype(np.int64), p_mixture, input_type)
    flags = np.zeros(values.size, dtype=bool)
    for c in range(classes.size):
        part = index == c
        flags[part] = noisiness[part] >= count_threshold(noisiness[part], count.class_rates[c])
    return replace(count, classes=classes), flags


#: Labels with fewer samples than this are counted together by the log-odds count: a mixture of
#: up to four components on fewer values finds chance groups (seen on the digits, 180 a label).
MIN_GROUP_SIZE = 200


def _size_groups(sizes):
    """Each label's group for the log-odds count: its own where it has ``MIN_GROUP_SIZE`` samples
    or more, else one shared group of the small labels (and of labels no sample has)."""
    big = sizes >= MIN_GROUP_SIZE
    group = np.full(sizes.size, int(big.sum()))
    group[big] = np.arange(int(big.sum()))
    return group
