"""Predicted class probabilities and the labels they go with: checks and the class order.

A model's ``predict_proba`` gives one column per class, in its own class order (a scikit-learn
classifier's ``classes_``: the sorted distinct training labels). The labels may be class
indices or class names; ``classes`` states which class each column is. Without it, integer
labels 0 to K - 1 are the column numbers (cleanlab's convention), and any other labels map to
the columns in sorted order, as scikit-learn's classifiers order them.
"""

import numpy as np

__all__ = ["check_pred_probs", "given_labels", "label_columns", "label_indices", "given_label_loss", "ROW_SUM_TOLERANCE"]

#: How far a row of probabilities may sum from 1 (float32 softmax outputs sum within 1e-6).
ROW_SUM_TOLERANCE = 1e-3


def check_pred_probs(pred_probs, n_samples=None):
    """``pred_probs`` as a float64 ``(n_samples, n_classes)`` array whose rows are probabilities
    (as given: rows summing to 1 within ``ROW_SUM_TOLERANCE`` are not rescaled), or a
    ``ValueError`` that says what is wrong with it.

    >>> check_pred_probs([[0.25, 0.75], [1.0, 0.0]]).shape
    (2, 2)
    >>> check_pred_probs([[0.5, 0.6]])
    Traceback (most recent call last):
    ...
    ValueError: pred_probs rows must each sum to 1 (within 0.001): 1 of 1 rows do not, first row 0 sums to 1.1
    """
    try:
        probs = np.asarray(pred_probs, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("pred_probs must be a numeric (n_samples, n_classes) array of class probabilities") from None
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(
            f"pred_probs must have shape (n_samples, n_classes) with at least 2 classes; got shape {probs.shape}"
        )
    if n_samples is not None and probs.shape[0] != n_samples:
        raise ValueError(f"pred_probs has {probs.shape[0]} rows but there are {n_samples} samples")
    sums = probs.sum(axis=1)  # a NaN or an infinity anywhere in a row makes its sum so
    bad = ~np.isfinite(sums)
    if bad.any():
        raise ValueError(
            f"pred_probs has NaN or infinite values in {int(bad.sum())} rows, first row {int(np.argmax(bad))}"
        )
    if probs.min() < 0 or probs.max() > 1:
        row = int(np.argmax(((probs < 0) | (probs > 1)).any(axis=1)))
        raise ValueError(f"pred_probs must lie in [0, 1]; row {row} has {float(probs[row].min()):.6g} to "
                         f"{float(probs[row].max()):.6g}")
    off = np.abs(sums - 1) > ROW_SUM_TOLERANCE
    if off.any():
        first = int(np.argmax(off))
        raise ValueError(
            f"pred_probs rows must each sum to 1 (within {ROW_SUM_TOLERANCE:g}): {int(off.sum())} of {probs.shape[0]} "
            f"rows do not, first row {first} sums to {sums[first]:.6g}"
        )
    return probs


def label_columns(labels, n_columns, classes=None):
    """``(columns, classes)``: each label's column in the probabilities, and the class of every
    column, in column order.

    ``classes`` (one entry per column) states the order. Without it, integer labels must lie in
    ``0 .. n_columns - 1`` and are the columns themselves; other labels (strings, say) map to
    the columns in sorted order, and there must be exactly ``n_columns`` distinct ones.

    >>> label_columns(np.array(["dog", "cat", "dog"]), 2)
    (array([1, 0, 1]), array(['cat', 'dog'], dtype='<U3'))
    >>> label_columns(np.array([2, 0]), 3, classes=[2, 1, 0])[0]
    array([0, 2])
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one label per sample (a 1-D array); got shape {labels.shape}")
    if labels.dtype == object and all(isinstance(label, str) for label in labels):
        labels = labels.astype(str)
    if classes is not None:
        classes = np.asarray(classes)
        if classes.ndim != 1 or classes.size != n_columns:
            raise ValueError(f"classes must name the class of each of the {n_columns} probability columns; "
                             f"got {classes.size} entries")
        if np.unique(classes).size != classes.size:
            raise ValueError("classes has repeated entries; each probability column is one class")
        order = np.argsort(classes, kind="stable")
        try:
            where = np.clip(np.searchsorted(classes[order], labels), 0, classes.size - 1)
            found = classes[order][where] == labels
        except TypeError:
            found, where = np.zeros(labels.size, dtype=bool), np.zeros(labels.size, dtype=int)
        if not found.all():
            missing = np.unique(labels[~found])[:5]
            raise ValueError(f"labels {list(missing)} are not among classes {list(classes[:10])}"
                             + (" ..." if classes.size > 10 else ""))
        return order[where], classes
    if labels.dtype.kind in "iub" or (labels.dtype.kind == "f" and np.all(labels == np.round(labels))):
        columns = labels.astype(np.int64)
        if columns.size and (columns.min() < 0 or columns.max() >= n_columns):
            raise ValueError(
                f"labels run from {columns.min()} to {columns.max()} but pred_probs has {n_columns} columns; "
                "give classes= (the class of each column) if the labels are not column numbers"
            )
        return columns, np.arange(n_columns)
    columns, names = label_indices(labels)
    if names.size != n_columns:
        raise ValueError(
            f"the labels have {names.size} distinct classes but pred_probs has {n_columns} columns; give classes= "
            "(the class of each column, as a classifier's classes_ lists them)"
        )
    return columns, names


def given_labels(n, y, pred_probs=None):
    """``y`` as an array of ``n`` labels, or None; probabilities without labels are an error."""
    if y is None:
        if pred_probs is not None:
            raise ValueError("pred_probs need the given labels too: pass y=labels (fit(X, y=labels, pred_probs=...))")
        return None
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"y (the given labels) must have one entry per value ({n}); got shape {y.shape}")
    return y


def label_indices(labels):
    """``(indices, classes)``: the labels as indices into their sorted distinct values.

    >>> label_indices(np.array(["dog", "cat", "dog"]))
    (array([1, 0, 1]), array(['cat', 'dog'], dtype='<U3'))
    """
    if labels.dtype == object and all(isinstance(label, str) for label in labels):
        labels = labels.astype(str)
    try:
        classes, indices = np.unique(labels, return_inverse=True)
    except TypeError:
        raise ValueError(
            "the labels must all be of one kind (class indices, or class names as strings); got a mix of "
            f"{sorted({type(label).__name__ for label in labels})}"
        ) from None
    return indices.astype(np.int64), classes


def given_label_loss(labels, pred_probs, classes=None):
    """Each sample's cross-entropy against its given label, ``-log pred_probs[i, label_i]``
    (probabilities below 1e-12 count as 1e-12): the detectors' input made from labels and
    probabilities alone.

    >>> given_label_loss([1, 0], [[0.5, 0.5], [0.25, 0.75]]).round(4)
    array([0.6931, 1.3863])
    """
    probs = check_pred_probs(pred_probs)
    columns, _ = label_columns(np.asarray(labels), probs.shape[1], classes)
    if columns.size != probs.shape[0]:
        raise ValueError(f"labels has {columns.size} entries but pred_probs has {probs.shape[0]} rows")
    return -np.log(np.maximum(probs[np.arange(columns.size), columns], 1e-12))
