"""Tables people act on: which training samples are suspect, how sure we are, and why.

``noise_report`` turns per-sample losses (or confidences) and a fitted detector into one row per
sample, in input order, with cleanlab's familiar columns (``given_label``, ``predicted_label``,
``label_quality``, ``is_label_issue``) next to the mixture's calibrated ``p_noisy``, a ``rank``
and, given per-epoch probabilities, each sample's history over training. ``noise_summary``
condenses a report into the estimated noise fraction overall and per class and the class pairs
the suspects are most confused between. Plain numpy and pandas: no torch.
"""

import inspect

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from .probabilities import check_pred_probs, given_label_loss, label_columns

__all__ = ["noise_report", "report_from_probabilities"]


def _vector(name, values, n=None, *, numeric=True):
    """``values`` as a 1-D array (optionally of length ``n``), or a ValueError saying why not."""
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be one value per sample (a 1-D array); got shape {array.shape}")
    if n is not None and array.size != n:
        raise ValueError(f"{name} has {array.size} entries but there are {n} samples")
    if numeric and array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric; got values of dtype {array.dtype}")
    return array


def _check_finite(name, values):
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise ValueError(
            f"{name} has {bad.size} value(s) that are NaN or infinite (at positions {shown}); "
            "a report needs a finite loss or confidence for every sample"
        )


def noise_report(
    values=None,
    detector=None,
    *,
    labels=None,
    pred_probs=None,
    classes=None,
    predicted_labels=None,
    items=None,
    class_names=None,
    p_noisy_history=None,
    noise_mask=None,
    threshold=None,
    sort=False,
):
    """One row per sample: is its label wrong, how likely, and what the model thinks instead.

    Parameters
    ----------
    values : array-like of shape (n_samples,), optional
        Each sample's loss (or, for a detector with ``input_type="confidence"``, its confidence
        in the given label). Must be finite. Without it, ``labels`` and ``pred_probs`` give
        it: the cross-entropy of each given label, ``-log pred_probs[i, label_i]``.
    detector : fitted or unfitted noise detector, optional
        Anything with ``predict_proba`` whose column 1 is p(noisy). A fitted one is used as it
        is; an unfitted one is cloned and fitted on ``values`` (with ``labels`` and
        ``pred_probs`` where given; the argument is not changed); None fits a default
        ``BetaMixtureNoiseDetector``.
    labels : array-like of shape (n_samples,), optional
        The given (possibly wrong) labels, class indices or names. lnc's detectors fitted with
        them (as this function fits them) count the wrong labels within each label.
    pred_probs : array-like of shape (n_samples, n_classes), optional
        Predicted class probabilities (out-of-fold ones count the noise; see
        ``BetaMixtureNoiseDetector.fit``). With ``labels``, lnc's detectors count from them
        (confident learning) and read p(noisy) from every class. Their argmax is
        ``predicted_label`` (unless ``predicted_labels`` is given), and the probability of the
        given label is reported as ``given_label_probability``.
    classes : array-like, optional
        The class of each column of ``pred_probs`` (a classifier's ``classes_``); by default
        integer labels 0..K-1 are the column numbers and other labels map to the columns in
        sorted order.
    predicted_labels : array-like of shape (n_samples,), optional
        Predicted labels; they take precedence over the argmax of ``pred_probs``.
    items : array-like of shape (n_samples,), optional
        What each sample is (file name, row id); the ``item`` column.
    class_names : sequence, optional
        Names of the integer classes; adds ``given_class`` and ``predicted_class``.
    p_noisy_history : array-like of shape (n_epochs, n_samples), optional
        p(noisy) at each tracked epoch (a callback's trace); adds ``mean_p_noisy`` and
        ``epochs_flagged`` (the fraction of epochs in which the sample was flagged).
    noise_mask : array-like of bool, optional
        The true "is mislabelled" flag, for experiments: the ``noise_mask`` column.
    threshold : float, optional
        ``is_noisy`` is ``p_noisy > threshold``. By default it is the detector's ``predict``: for
        lnc's detectors with their default ``rate_estimate="log-odds"``, the
        ``round(noise_rate_ * n)`` noisiest samples (none where no noise was found); else
        ``p_noisy > 0.5``.
    sort : bool, default=False
        Return the rows by rank (most suspect first) instead of input order. The index is the
        sample's position in the input either way.

    Returns
    -------
    pandas.DataFrame
        See :func:`report_from_probabilities` for the columns. ``report.attrs["noise_count"]``
        holds the detector's count (``noise_count_``, a :class:`~lnc_sklearn.NoiseCount`),
        which :func:`~lnc_sklearn.noise_summary` prints.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> losses = np.concatenate([rng.gamma(1.0, 0.2, 80), rng.normal(2.5, 0.4, 20)])
    >>> labels = rng.integers(0, 3, 100)
    >>> report = noise_report(losses, labels=labels, sort=True)
    >>> list(report.columns)  # doctest: +NORMALIZE_WHITESPACE
    ['given_label', 'predicted_label', 'loss', 'p_noisy', 'is_noisy', 'label_quality',
     'is_label_issue', 'rank']
    >>> bool(report["rank"].is_monotonic_increasing and report.index[0] >= 80)
    True
    """
    if values is None:
        if labels is None or pred_probs is None:
            raise ValueError("give the values (per-sample losses or confidences), or labels and pred_probs to "
                             "derive the losses from")
        values = given_label_loss(_vector("labels", labels, numeric=False), pred_probs, classes)
    values = _vector("values", values).astype(np.float64)
    _check_finite("values", values)
    if detector is None:
        from .beta_mixture import BetaMixtureNoiseDetector

        detector = BetaMixtureNoiseDetector(classes=classes)
    if not hasattr(detector, "predict_proba"):
        raise TypeError(f"detector must have predict_proba; got {type(detector).__name__}")
    y = None if labels is None else _vector("labels", labels, values.size, numeric=False)
    probs = None if pred_probs is None else check_pred_probs(pred_probs, values.size)
    takes_probs = "pred_probs" in inspect.signature(detector.fit).parameters
    evidence = {"pred_probs": probs} if takes_probs and probs is not None and y is not None else {}
    try:
        check_is_fitted(detector)
    except NotFittedError:
        detector = clone(detector).fit(values.reshape(-1, 1), y, **evidence)
    # lnc's detectors use the labels (and probabilities) they were fitted with
    if getattr(detector, "classes_", None) is None or y is None:
        evidence = {}
    elif getattr(detector, "noise_matrix_", None) is None:
        evidence = {"y": y}
    else:
        evidence = {"y": y, **evidence}
    p_noisy = np.asarray(detector.predict_proba(values.reshape(-1, 1), **evidence))[:, 1]
    flags = None
    if threshold is None and hasattr(detector, "predict"):
        flags = np.asarray(detector.predict(values.reshape(-1, 1), **evidence)).astype(bool)
    return report_from_probabilities(
        values,
        p_noisy,
        is_noisy=flags,
        noise_count=getattr(detector, "noise_count_", None),
        input_type=getattr(detector, "input_type", "loss"),
        labels=labels,
        pred_probs=probs,
        classes=classes,
        predicted_labels=predicted_labels,
        items=items,
        class_names=class_names,
        p_noisy_history=p_noisy_history,
        noise_mask=noise_mask,
        threshold=threshold,
        sort=sort,
    )


def report_from_probabilities(
    values,
    p_noisy,
    *,
    is_noisy=None,
    noise_count=None,
    input_type="loss",
    labels=None,
    pred_probs=None,
    classes=None,
    predicted_labels=None,
    items=None,
    class_names=None,
    p_noisy_history=None,
    noise_mask=None,
    threshold=None,
    sort=False,
):
    """The report of :func:`noise_report` from probabilities already computed.

    ``p_noisy`` may be NaN for samples that have none (a non-finite training loss, say): they
    are not flagged and rank last. Columns, in this order (those in brackets when their input
    is given):

    - [``item``]
    - ``given_label``, [``given_class``], ``predicted_label``, [``predicted_class``]: missing
      values (``<NA>``) where labels or predictions were not given.
    - ``loss``; with confidences, ``confidence`` too, and ``loss = -log(confidence)`` where the
      confidences are probabilities (else NaN).
    - [``given_label_probability``]: the predicted probability of the given label, cleanlab's
      default label-quality score.
    - ``p_noisy``: the detector's probability that the label is wrong; ``is_noisy``: the flags
      given as ``is_noisy`` (a detector's ``predict``), else ``p_noisy`` above ``threshold``
      (default 0.5).
    - ``label_quality`` (``1 - p_noisy``) and ``is_label_issue`` (``is_noisy``): cleanlab's
      names, so code written against cleanlab's tables reads these too.
    - ``rank``: 1 is the most suspect; by ``p_noisy``, ties broken by the loss (the higher the
      more suspect), then by position.
    - [``mean_p_noisy``, ``epochs_flagged``]: from ``p_noisy_history``.
    - [``noise_mask``]: from ``noise_mask``.

    ``noise_count`` (a :class:`~lnc_sklearn.NoiseCount`) is kept as ``report.attrs["noise_count"]``;
    without it the estimated rate is the mean ``p_noisy``. ``classes`` names the columns of
    ``pred_probs`` (see :func:`noise_report`).
    """
    if input_type not in ("loss", "confidence"):
        raise ValueError(f"input_type must be 'loss' or 'confidence', got {input_type!r}")
    if is_noisy is not None and threshold is not None:
        raise ValueError("give is_noisy (the flags) or threshold (flag p_noisy above it), not both")
    threshold = 0.5 if threshold is None else threshold
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    values = _vector("values", values).astype(np.float64)
    n = values.size
    p_noisy = _vector("p_noisy", p_noisy, n).astype(np.float64)
    columns = {}
    if items is not None:
        columns["item"] = _vector("items", items, n, numeric=False)
    given = _labels_column("labels", labels, n)
    predicted = _predictions(pred_probs, predicted_labels, n, classes)
    columns["given_label"] = given
    names = None if class_names is None else np.asarray([str(c) for c in class_names], dtype=object)
    if names is not None:
        columns["given_class"] = _class_names(given, names)
    columns["predicted_label"] = predicted
    if names is not None:
        columns["predicted_class"] = _class_names(predicted, names)
    if input_type == "loss":
        columns["loss"] = values
    else:
        is_probability = np.all((values >= 0) & (values <= 1))
        with np.errstate(divide="ignore"):
            columns["loss"] = -np.log(values) if is_probability else np.full(n, np.nan)
        columns["confidence"] = values
    if pred_probs is not None and labels is not None:
        probs = check_pred_probs(pred_probs, n)
        columns["given_label_probability"] = probs[np.arange(n), label_columns(np.asarray(given), probs.shape[1], classes)[0]]
    if is_noisy is not None:
        flagged = _vector("is_noisy", is_noisy, n).astype(bool)
    else:
        flagged = p_noisy > threshold  # NaN compares False: not flagged
    columns.update(
        p_noisy=p_noisy,
        is_noisy=flagged,
        label_quality=1.0 - p_noisy,
        is_label_issue=flagged,
        rank=_suspicion_rank(p_noisy, values if input_type == "loss" else -values),
    )
    if p_noisy_history is not None:
        history = np.asarray(p_noisy_history, dtype=np.float64)
        if history.ndim != 2 or history.shape[1] != n:
            raise ValueError(
                f"p_noisy_history must have shape (n_epochs, {n}); got {history.shape}"
            )
        columns["mean_p_noisy"] = history.mean(axis=0)
        columns["epochs_flagged"] = (history > threshold).mean(axis=0)  # p_noisy > 0.5 unless told
    if noise_mask is not None:
        columns["noise_mask"] = _vector("noise_mask", noise_mask, n).astype(bool)
    report = pd.DataFrame(columns)
    if sort:
        report = report.sort_values("rank")
    if noise_count is not None:
        report.attrs["noise_count"] = noise_count
    return report


def _labels_column(name, labels, n):
    if labels is None:
        return pd.array([pd.NA] * n, dtype="Int64")
    labels = _vector(name, labels, n, numeric=False)
    if labels.dtype.kind in "biu":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(f"{name} must be class indices or names; got non-integer numbers")
        return labels.astype(np.int64)
    return labels  # class names as given


def _predictions(pred_probs, predicted_labels, n, classes=None):
    if pred_probs is not None and predicted_labels is None:
        probs = check_pred_probs(pred_probs, n)
        columns = probs.argmax(axis=1)
        return columns if classes is None else np.asarray(classes)[columns]
    return _labels_column("predicted_labels", predicted_labels, n)


def _class_names(labels, names):
    if not isinstance(labels, np.ndarray):  # no labels given
        return pd.array([pd.NA] * len(labels), dtype="string")
    if labels.dtype.kind not in "iu":  # the labels are names already
        return labels.astype(str).astype(object)
    if labels.size and (labels.min() < 0 or labels.max() >= names.size):
        raise ValueError(f"labels run from {labels.min()} to {labels.max()} but there are {names.size} class names")
    return names[labels]


def _suspicion_rank(p_noisy, noisiness):
    """1 for the most suspect: highest p_noisy, then highest noisiness, then first in input."""
    order = np.lexsort((np.arange(p_noisy.size), -noisiness, -np.nan_to_num(p_noisy, nan=-np.inf)))
    rank = np.empty(p_noisy.size, dtype=np.int64)
    rank[order] = np.arange(1, p_noisy.size + 1)
    return rank
