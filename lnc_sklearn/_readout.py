"""The count read out per sample: which samples a detector flags, and p(noisy) shifted to average
the count. What a fit keeps for this (the readout, a dict of arrays) is saved with the detector.

- Flags from losses: within each given label, the ``round(rate * n)`` noisiest training values;
  a new value is flagged when it is at least as noisy as the last of them (``thresholds``).
- Flags from probabilities: confident learning's "prune by noise rate" (Northcutt et al. 2021):
  for given label ``i`` and class ``j``, the ``n * Q[i, j]`` samples labelled ``i`` whose
  probability of ``j`` most exceeds that of ``i``, kept where the model does not predict ``i``
  (``margins`` holds the last margin taken per cell).
- p(noisy): a log-odds per sample (the mixture's, or from the probabilities, see
  :func:`probability_log_odds`) plus one constant (``shift``, ``prob_shift``), chosen so that
  p(noisy) averages the estimated rate over the training samples; where the network
  disbelieves most labels (no count from the losses holds), the mixture's posterior as it is. One constant for all
  samples keeps the order of the log-odds: from losses, p(noisy) ranks as the loss does
  (a constant per label would rank across labels by their estimated rates, and lost 0.03 of
  ROC-AUC on average where those were off). Detectors saved with a constant per label
  (``shifts``) keep it.
- Labels the fit did not see use the threshold over all samples.
"""

from dataclasses import replace

import numpy as np
from scipy.special import expit, logit

from .noise_count import _size_groups, count_from_losses, count_from_probabilities
from .noise_rate import count_threshold, shift_to_mean

__all__ = ["fit_readout", "probability_log_odds", "shifted_log_odds", "flags", "class_index", "with_classes",
           "migrate_state", "readout_from_old_attributes", "POSTERIOR_SHRINK"]

#: The estimated noise matrix is shrunk this far towards uniform before it weighs the classes:
#: a matrix counted from a finite sample, with clean confusions among its "noise", would
#: otherwise rule out flips it did not see and over-weigh the ones it did.
POSTERIOR_SHRINK = 0.2
_EPS = 1e-12


def _logit(p):
    return logit(np.clip(p, _EPS, 1 - _EPS))


def probability_log_odds(probs, labels, posterior, loss_ranked):
    """Log-odds that each label is wrong, from the predicted probabilities.

    ``posterior`` is the noise matrix ``P(given i | true j)`` already shrunk towards uniform.
    Taking the probabilities as the model's belief in each true class, Bayes' rule gives
    ``P(wrong) = 1 - P(i|i) p_i / sum_j P(i|j) p_j`` for a sample labelled ``i``; it ranks a
    sample labelled as a class that its true class is often flipped to above one labelled as
    an unrelated class. Its log-odds is averaged with that of ``1 - p_i`` (the loss's ranking),
    which holds where the matrix mistakes a model's clean confusions for noise. Where most
    labels are wrong (``loss_ranked``), the model's argmax no longer finds the true class and
    the loss's ranking alone is used.
    """
    rows = np.arange(labels.size)
    p_given = probs[rows, labels]
    loss_part = _logit(1.0 - p_given)
    if loss_ranked:
        return loss_part
    explained = (probs @ posterior.T)[rows, labels]
    wrong = 1.0 - posterior[labels, labels] * p_given / np.maximum(explained, _EPS)
    return 0.5 * loss_part + 0.5 * _logit(wrong)


def _sorted_groups(groups, n_groups):
    """``(order, bounds)``: the samples sorted by group (stable), group ``g`` at
    ``order[bounds[g]:bounds[g + 1]]``."""
    small = groups.astype(np.int16) if n_groups < 2**15 else groups  # stable sorts of int16 are radix sorts
    return np.argsort(small, kind="stable"), np.r_[0, np.cumsum(np.bincount(groups, minlength=n_groups))]


def _group_thresholds(noisiness, groups, rates):
    """Per group ``g``, :func:`count_threshold` of its samples' noisiness at ``rates[g]`` (NaN for an
    empty group)."""
    order, bounds = _sorted_groups(groups, rates.size)
    sorted_values = noisiness[order]
    return np.array([count_threshold(sorted_values[bounds[g]:bounds[g + 1]], rates[g])
                     if bounds[g + 1] > bounds[g] else np.nan for g in range(rates.size)])


def fit_readout(values, labels, probs, raw_log_odds, input_type, *, min_separation):
    """The count (a :class:`~lnc_sklearn.noise_count.NoiseCount`, per label index) and the
    readout for ``values`` with their label indices (or None) and probabilities (or None)."""
    n = values.size
    noisiness = values if input_type == "loss" else -values
    floor = 0.1 / n  # no noise found: p(noisy) averages 0.1 / n, nothing is flagged, the order stays
    if probs is not None:
        count, joint = count_from_probabilities(labels, probs, None)
    else:
        count = count_from_losses(values, labels, expit(raw_log_odds), input_type, min_separation=min_separation)
    # where the network disbelieves most labels no count from the losses holds, and p(noisy) is
    # the mixture's posterior as it is (it averages the mixture's own rate)
    shift = 0.0 if count.most_disbelieved else shift_to_mean(raw_log_odds, max(count.rate, floor))
    readout = {"shift": shift, "threshold": count_threshold(noisiness, count.rate)}
    if labels is None:
        return count, readout
    n_classes = count.class_rates.size
    rates = count.class_rates
    if count.source in ("log-odds count", "mixture"):  # counted per group: the small labels together
        group = _size_groups(np.bincount(labels, minlength=n_classes))
        group_rates = np.zeros(group.max() + 1)
        group_rates[group] = rates  # one rate per group
        readout["thresholds"] = _group_thresholds(noisiness, group[labels], group_rates)[group]
    else:
        readout["thresholds"] = _group_thresholds(noisiness, labels, rates)
    readout["other_threshold"] = readout["threshold"]
    if probs is None:
        return count, readout
    loss_ranked = count.rate >= 0.5
    posterior = (1 - POSTERIOR_SHRINK) * count.noise_matrix + POSTERIOR_SHRINK / n_classes
    score = probability_log_odds(probs, labels, posterior, loss_ranked)
    readout.update(
        posterior=posterior,
        loss_ranked=bool(loss_ranked),
        prob_shift=shift_to_mean(score, max(count.rate, floor)),
        margins=_margin_thresholds(probs, labels, np.round(joint * n).astype(np.int64)),
    )
    return count, readout


def _margin_thresholds(probs, labels, cells):
    """Per cell ``(i, j)``, the ``cells[i, j]``-th largest ``p_j - p_i`` among the samples labelled
    ``i`` (``inf``: none taken)."""
    n_classes = probs.shape[1]
    margins = np.full((n_classes, n_classes), np.inf)
    order, bounds = _sorted_groups(labels, n_classes)
    by_label = np.ascontiguousarray(probs.T).take(order, axis=1)  # one row per class, samples by label
    for i in range(n_classes):
        if not np.delete(cells[i], i).any():
            continue
        columns = by_label[:, bounds[i]:bounds[i + 1]]
        for j in range(n_classes):
            take = min(int(cells[i, j]), columns.shape[1])
            if i == j or take <= 0:
                continue
            margins[i, j] = _kth_largest(columns[j] - columns[i], take)
    return margins


def _kth_largest(values, k):
    """The ``k``-th largest of ``values`` (``1 <= k <= values.size``). The cells take few
    samples, so the partition runs over the values above a cut that at least ``k`` of them
    pass (the same answer as over all of them, at a fraction of the cost)."""
    for cut in (0.0, -0.5):
        above = values[values > cut]
        if above.size >= k:
            return np.partition(above, above.size - k)[above.size - k]
    return np.partition(values, values.size - k)[values.size - k]


def class_index(classes, labels):
    """Each label's index in ``classes`` (sorted as a fit stores them), -1 for one not there."""
    labels = np.asarray(labels)
    if labels.dtype == object and all(isinstance(label, str) for label in labels):
        labels = labels.astype(str)
    order = np.argsort(classes, kind="stable")
    try:
        where = np.clip(np.searchsorted(classes[order], labels), 0, classes.size - 1)
        found = classes[order][where] == labels
    except TypeError:  # labels of another type than at fit: none of them was seen
        return np.full(labels.size, -1)
    return np.where(found, order[where], -1)


def _by_label(per_class, other, labels):
    value = np.full(labels.size, other, dtype=np.float64)
    seen = labels >= 0
    value[seen] = per_class[labels[seen]]
    return np.where(np.isnan(value), other, value)


def shifted_log_odds(readout, log_odds, labels, probs):
    """p(noisy)'s log-odds: the mixture's ``log_odds`` (or, with ``probs``, the probabilities')
    plus each sample's shift."""
    if probs is not None:
        if "posterior" not in readout:
            raise ValueError("this detector was fitted without pred_probs; predict without them")
        return probability_log_odds(probs, labels, readout["posterior"], readout["loss_ranked"]) + readout["prob_shift"]
    if labels is None or "shifts" not in readout:
        return log_odds + readout["shift"]
    return log_odds + _by_label(readout["shifts"], readout["other_shift"], labels)


def flags(readout, noisiness, labels, probs):
    """Which samples the count flags (see the module's docstring)."""
    if probs is not None:
        if "margins" not in readout:
            raise ValueError("this detector was fitted without pred_probs; predict without them")
        rows = np.arange(labels.size)
        margin = probs - probs[rows, labels][:, None]
        over = (margin >= readout["margins"][labels]).any(axis=1)
        return over & (probs.argmax(axis=1) != labels)
    if labels is None or "thresholds" not in readout:
        return noisiness >= readout["threshold"]
    return noisiness >= _by_label(readout["thresholds"], readout["other_threshold"], labels)


def with_classes(count, classes):
    """``count`` with its classes named (a count is made over label indices)."""
    return replace(count, classes=np.asarray(classes))


# -- detectors saved or pickled before the count had a readout --------------------------------
_OLD = ("noise_separation_", "noise_rate_interval_", "noise_evidence_", "threshold_", "log_odds_shift_",
        "rate_estimate_used_", "noise_from_mixture_", "labels_seen_", "label_noise_rates_", "label_thresholds_",
        "label_log_odds_shifts_", "n_fit_samples_")


def readout_from_old_attributes(fitted):
    """The new fitted attributes from a detector's old ones (``fitted``, a dict of them, is
    changed in place): where ``rate_estimate_used_`` was ``"log-odds"``, the readout of its
    thresholds and shifts (labels of the pooled small-label group read it as labels the fit did
    not see), else none (the mixture's p(noisy) and ``p > 0.5``)."""
    old = {name: fitted.pop(name) for name in _OLD if name in fitted}
    fitted.setdefault("classes_", None)
    for name in ("noise_rate_interval_", "noise_matrix_", "noise_count_"):
        fitted.setdefault(name, None)
    if old.get("rate_estimate_used_", "mixture") != "log-odds":
        fitted["_readout"] = None
        return fitted
    readout = {"shift": old.get("log_odds_shift_", 0.0), "threshold": old["threshold_"]}
    seen = old.get("labels_seen_")
    if seen is not None:
        rates = np.asarray(old["label_noise_rates_"])
        pooled = rates.size > len(seen)
        readout.update(
            shifts=np.asarray(old["label_log_odds_shifts_"])[:len(seen)],
            thresholds=np.asarray(old["label_thresholds_"])[:len(seen)],
            other_shift=old["label_log_odds_shifts_"][-1] if pooled else readout["shift"],
            other_threshold=old["label_thresholds_"][-1] if pooled else readout["threshold"],
        )
        fitted["classes_"] = np.asarray(seen)
    fitted["_readout"] = readout
    return fitted


def migrate_state(name, state):
    """A pickled detector's ``__dict__`` in today's form: detectors from before the log-odds count
    had no such parameters and read p(noisy) and the rate off the mixture; detectors from before
    the readout had the count's internals as public attributes."""
    state = dict(state)
    if "rate_estimate" not in state and "input_type" in state:
        state = {"rate_estimate": "mixture", "min_separation": 2.5, **state}
        if name == "BetaMixtureNoiseDetector":
            state.setdefault("random_state", None)
    state["n_bootstrap"] = "deprecated"  # the bootstrap is gone; the interval needs no resampling
    if name == "BetaMixtureNoiseDetector":
        state["random_state"] = "deprecated"
    state.setdefault("classes", None)
    if state.get("rate_estimate") == "log-odds":
        state["rate_estimate"] = "count"
    if "gaussian_mixture_" in state:
        state["_gaussian_mixture"] = state.pop("gaussian_mixture_")
    if "_readout" not in state and "bounds_" in state:
        readout_from_old_attributes(state)
    return state
