"""Tables people act on: which training samples are suspect, how sure we are, and why.

``noise_report`` turns per-sample losses (or confidences) and a fitted detector into one row per
sample, in input order, with cleanlab's familiar columns (``given_label``, ``predicted_label``,
``label_quality``, ``is_label_issue``) next to the mixture's calibrated ``p_noisy``, a ``rank``
and, given per-epoch probabilities, each sample's history over training. ``noise_summary``
condenses a report into the estimated noise fraction overall and per class and the class pairs
the suspects are most confused between. Plain numpy and pandas: no torch.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

__all__ = ["noise_report", "report_from_probabilities", "noise_estimate", "noise_summary", "NoiseSummary"]


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
    values,
    detector=None,
    *,
    labels=None,
    pred_probs=None,
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
    values : array-like of shape (n_samples,)
        Each sample's loss (or, for a detector with ``input_type="confidence"``, its confidence
        in the given label). Must be finite.
    detector : fitted or unfitted noise detector, optional
        Anything with ``predict_proba`` whose column 1 is p(noisy). A fitted one is used as it
        is; an unfitted one is cloned and fitted on ``values`` (and ``labels``, when given; the
        argument is not changed); None fits a default ``BetaMixtureNoiseDetector``.
    labels : array-like of shape (n_samples,), optional
        The given (possibly wrong) labels. lnc's detectors fitted with them (as this function
        fits them) count the wrong labels within each label, and flag and scale per label.
    pred_probs : array-like of shape (n_samples, n_classes), optional
        Predicted class probabilities; their argmax is ``predicted_label`` (unless
        ``predicted_labels`` is given), and with ``labels`` the probability of the given label
        is reported as ``given_label_probability``.
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
        See :func:`report_from_probabilities` for the columns. ``report.attrs["noise_estimate"]``
        holds the detector's count (``noise_rate``, and where it has them ``noise_separation``,
        ``noise_rate_interval``, ``noise_evidence``), which :func:`noise_summary` prints.

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
    values = _vector("values", values).astype(np.float64)
    _check_finite("values", values)
    if detector is None:
        from .beta_mixture import BetaMixtureNoiseDetector

        detector = BetaMixtureNoiseDetector()
    if not hasattr(detector, "predict_proba"):
        raise TypeError(f"detector must have predict_proba; got {type(detector).__name__}")
    y = None if labels is None else _vector("labels", labels, values.size, numeric=False)
    try:
        check_is_fitted(detector)
    except NotFittedError:
        detector = clone(detector).fit(values.reshape(-1, 1), y)
    # lnc's detectors count within each label when they were fitted with labels
    by_label = y is not None and getattr(detector, "labels_seen_", None) is not None
    extra = {"y": y} if by_label else {}
    p_noisy = np.asarray(detector.predict_proba(values.reshape(-1, 1), **extra))[:, 1]
    flags = None
    if threshold is None and hasattr(detector, "predict"):
        flags = np.asarray(detector.predict(values.reshape(-1, 1), **extra)).astype(bool)
    return report_from_probabilities(
        values,
        p_noisy,
        is_noisy=flags,
        noise_estimate=noise_estimate(detector, p_noisy),
        input_type=getattr(detector, "input_type", "loss"),
        labels=labels,
        pred_probs=pred_probs,
        predicted_labels=predicted_labels,
        items=items,
        class_names=class_names,
        p_noisy_history=p_noisy_history,
        noise_mask=noise_mask,
        threshold=threshold,
        sort=sort,
    )


def noise_estimate(detector, p_noisy=None):
    """The detector's count as a dict: ``noise_rate`` (``noise_rate_``, else the mean of
    ``p_noisy``) and, where the detector has them, ``noise_separation``, ``min_separation``,
    ``noise_from_mixture``, ``noise_rate_interval`` and ``noise_evidence``."""
    rate = getattr(detector, "noise_rate_", None)
    if rate is None:
        rate = float(np.nanmean(p_noisy)) if p_noisy is not None and np.isfinite(p_noisy).any() else float("nan")
    estimate = {"noise_rate": float(rate)}
    if getattr(detector, "rate_estimate_used_", None) == "log-odds":
        estimate["noise_separation"] = float(detector.noise_separation_)
        estimate["min_separation"] = float(detector.min_separation)
        estimate["noise_from_mixture"] = float(detector.noise_from_mixture_)
        if detector.noise_rate_interval_ is not None:
            estimate["noise_rate_interval"] = tuple(detector.noise_rate_interval_)
            estimate["noise_evidence"] = detector.noise_evidence_
    return estimate


def report_from_probabilities(
    values,
    p_noisy,
    *,
    is_noisy=None,
    noise_estimate=None,
    input_type="loss",
    labels=None,
    pred_probs=None,
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

    ``noise_estimate`` (a dict, see :func:`noise_estimate`) is kept as
    ``report.attrs["noise_estimate"]``; without it the estimated rate is the mean ``p_noisy``.
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
    predicted = _predictions(pred_probs, predicted_labels, n)
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
        columns["given_label_probability"] = _given_label_probability(pred_probs, given)
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
    if noise_estimate is not None:
        report.attrs["noise_estimate"] = dict(noise_estimate)
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


def _predictions(pred_probs, predicted_labels, n):
    if pred_probs is not None and predicted_labels is None:
        probs = np.asarray(pred_probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[0] != n:
            raise ValueError(f"pred_probs must have shape ({n}, n_classes); got {probs.shape}")
        return probs.argmax(axis=1)
    return _labels_column("predicted_labels", predicted_labels, n)


def _class_names(labels, names):
    if not isinstance(labels, np.ndarray):  # no labels given
        return pd.array([pd.NA] * len(labels), dtype="string")
    if labels.dtype.kind not in "iu":  # the labels are names already
        return labels.astype(str).astype(object)
    if labels.size and (labels.min() < 0 or labels.max() >= names.size):
        raise ValueError(f"labels run from {labels.min()} to {labels.max()} but there are {names.size} class names")
    return names[labels]


def _given_label_probability(pred_probs, given):
    probs = np.asarray(pred_probs, dtype=np.float64)
    if not isinstance(given, np.ndarray) or given.dtype.kind not in "iu":
        raise ValueError("given_label_probability needs labels given as class indices")
    if given.size and given.max() >= probs.shape[1]:
        raise ValueError(f"labels go up to {given.max()} but pred_probs has {probs.shape[1]} columns")
    return probs[np.arange(given.size), given]


def _suspicion_rank(p_noisy, noisiness):
    """1 for the most suspect: highest p_noisy, then highest noisiness, then first in input."""
    order = np.lexsort((np.arange(p_noisy.size), -noisiness, -np.nan_to_num(p_noisy, nan=-np.inf)))
    rank = np.empty(p_noisy.size, dtype=np.int64)
    rank[order] = np.arange(1, p_noisy.size + 1)
    return rank


@dataclass
class NoiseSummary:
    """What a report says overall. ``str()`` prints it.

    Attributes
    ----------
    n_samples : int
    noise_fraction : float
        Estimated fraction of wrong labels: the detector's ``noise_rate_`` where the report
        has it (``report.attrs["noise_estimate"]``), else the mean p_noisy.
    n_flagged : int
        Samples with ``is_noisy``.
    true_noise_fraction : float or None
        From ``noise_mask`` when the report has it.
    per_class : pandas.DataFrame
        Indexed by given label: ``n_samples``, ``noise_fraction``, ``n_flagged`` and, with a
        noise mask, ``true_noise_fraction``.
    confused_pairs : pandas.DataFrame
        Among flagged samples whose prediction differs from their label: ``given_label``,
        ``predicted_label`` (and their class names when the report has them), ``n_suspects``
        and ``mean_p_noisy``, most frequent first.
    separation : float or None
        How clearly the wrong labels stand apart from the rest (the detector's
        ``noise_separation_``; noise is reported from ``min_separation`` on).
    min_separation : float or None
    noise_rate_interval : (float, float) or None
        A 90% bootstrap interval of the rate, where the detector computed one.
    evidence : float or None
        The share of bootstrap resamples that found a noisy group, where computed.
    from_mixture : float or None
        1 where the rate is the mixture's (the network gives most labels less than even odds),
        0 where it is the count.
    """

    n_samples: int
    noise_fraction: float
    n_flagged: int
    true_noise_fraction: float | None
    per_class: pd.DataFrame
    confused_pairs: pd.DataFrame
    separation: float | None = None
    min_separation: float | None = None
    noise_rate_interval: tuple | None = None
    evidence: float | None = None
    from_mixture: float | None = None

    @property
    def verdict(self):
        """One sentence: is there noise to act on."""
        if self.separation is None:
            return f"estimated noise rate {self.noise_fraction:.3f} (the mixture's mean p(noisy))"
        if self.from_mixture:
            return (
                f"estimated noise rate {self.noise_fraction:.3f}, the mixture's: the network gives most labels less "
                "than even odds (early in training, or heavy noise), so the losses cannot count the wrong ones; "
                "the mixture's rate over-estimates on clean labels"
            )
        if self.noise_fraction == 0:
            return (
                f"little or no label noise found: no group of samples stands apart whose labels the network "
                f"disbelieves (separation {self.separation:.2f}, below {self.min_separation:g})"
            )
        return (
            f"estimated noise rate {self.noise_fraction:.3f}: a group of samples whose labels the network "
            f"disbelieves stands apart (separation {self.separation:.2f})"
        )

    def __str__(self):
        interval = ""
        if self.noise_rate_interval is not None:
            low, high = self.noise_rate_interval
            interval = f", 90% interval [{low:.3f}, {high:.3f}]"
            if self.evidence is not None:
                interval += f", noise found in {self.evidence:.0%} of bootstrap resamples"
        lines = [
            f"{self.n_samples} samples; estimated noise fraction {self.noise_fraction:.3f}{interval}"
            + ("" if self.true_noise_fraction is None else f" (true {self.true_noise_fraction:.3f})")
            + f"; {self.n_flagged} flagged",
            self.verdict,
        ]
        if len(self.per_class):
            lines += ["", "per given class:", self.per_class.to_string(float_format="{:.3f}".format)]
        if len(self.confused_pairs):
            lines += ["", "most confused pairs among the flagged:",
                      self.confused_pairs.to_string(index=False, float_format="{:.3f}".format)]
        return "\n".join(lines)


def noise_summary(report, top=10):
    """Summarise a report: noise fraction overall and per given class, confused class pairs.

    ``report`` is a DataFrame from :func:`noise_report` (or the callback's ``report()``); it
    needs ``p_noisy`` and ``is_noisy``, and ``given_label`` for the per-class parts. ``top``
    limits the confused pairs listed.
    """
    missing = [c for c in ("p_noisy", "is_noisy") if c not in report.columns]
    if missing:
        raise ValueError(f"report lacks the column(s) {missing}; build it with noise_report")
    # "truly_noisy": the column's name in reports written before it was called noise_mask
    truth_column = next((c for c in ("noise_mask", "truly_noisy") if c in report.columns), None)
    truth = None if truth_column is None else report[truth_column]
    has_labels = "given_label" in report.columns and report["given_label"].notna().all()
    if has_labels:
        by_class = report.groupby("given_label", sort=True)
        per_class = pd.DataFrame(
            {
                "n_samples": by_class.size(),
                "noise_fraction": by_class["p_noisy"].mean(),
                "n_flagged": by_class["is_noisy"].sum().astype(np.int64),
            }
        )
        if truth is not None:
            per_class["true_noise_fraction"] = by_class[truth_column].mean()
        if "given_class" in report.columns:
            per_class.insert(0, "class", by_class["given_class"].first())
    else:
        per_class = pd.DataFrame(columns=["n_samples", "noise_fraction", "n_flagged"])
    pair_columns = ["given_label", "predicted_label", "n_suspects", "mean_p_noisy"]
    has_predictions = has_labels and "predicted_label" in report.columns and report["predicted_label"].notna().all()
    if has_predictions:
        suspects = report[report["is_noisy"] & (report["given_label"] != report["predicted_label"])]
        pairs = (
            suspects.groupby(["given_label", "predicted_label"])["p_noisy"]
            .agg(n_suspects="size", mean_p_noisy="mean")
            .reset_index()
            .sort_values(["n_suspects", "mean_p_noisy"], ascending=False, kind="stable")
            .head(top)
            .reset_index(drop=True)
        )
        if "given_class" in report.columns and "predicted_class" in report.columns:
            names = report.drop_duplicates("given_label").set_index("given_label")["given_class"]
            names = names.combine_first(report.drop_duplicates("predicted_label").set_index("predicted_label")["predicted_class"])
            pairs.insert(1, "given_class", pairs["given_label"].map(names))
            pairs.insert(3, "predicted_class", pairs["predicted_label"].map(names))
    else:
        pairs = pd.DataFrame(columns=pair_columns)
    estimate = report.attrs.get("noise_estimate") or {}
    interval = estimate.get("noise_rate_interval")
    return NoiseSummary(
        n_samples=len(report),
        noise_fraction=float(estimate.get("noise_rate", report["p_noisy"].mean())),
        separation=estimate.get("noise_separation"),
        min_separation=estimate.get("min_separation"),
        noise_rate_interval=None if interval is None else tuple(interval),
        evidence=estimate.get("noise_evidence"),
        from_mixture=estimate.get("noise_from_mixture"),
        n_flagged=int(report["is_noisy"].sum()),
        true_noise_fraction=None if truth is None else float(truth.mean()),
        per_class=per_class,
        confused_pairs=pairs,
    )
