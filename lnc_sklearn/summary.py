"""What a report says overall: the estimated share of wrong labels with its interval and verdict,
per given class, the estimated noise matrix, and the class pairs the suspects are confused
between. Plain numpy and pandas."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .noise_count import NoiseCount

__all__ = ["NoiseSummary", "noise_summary", "noise_matrix_table"]

#: The noise matrix is printed whole up to this many classes.
PRINTED_CLASSES = 12


def noise_matrix_table(count):
    """The count's noise matrix as a table: one row per given label, one column per true class,
    each entry ``P(given label | true class)`` (columns sum to 1); None without one."""
    if count is None or count.noise_matrix is None:
        return None
    names = [str(c) for c in count.classes]
    return pd.DataFrame(count.noise_matrix, index=pd.Index(names, name="given label"),
                        columns=pd.Index(names, name="true class"))


@dataclass
class NoiseSummary:
    """What a report says overall. ``str()`` prints it.

    Attributes
    ----------
    n_samples : int
    noise_fraction : float
        Estimated share of wrong labels: the count's rate where the report has one
        (``report.attrs["noise_count"]``), else the mean p_noisy.
    n_flagged : int
        Samples with ``is_noisy``.
    true_noise_fraction : float or None
        From ``noise_mask`` when the report has it.
    per_class : pandas.DataFrame
        Indexed by given label: ``n_samples``, ``noise_fraction`` (the count's share of wrong
        labels among that label's samples where it has one, else the mean p_noisy),
        ``n_flagged`` and, with a noise mask, ``true_noise_fraction``.
    confused_pairs : pandas.DataFrame
        Among flagged samples whose prediction differs from their label: ``given_label``,
        ``predicted_label`` (and their class names when the report has them), ``n_suspects``
        and ``mean_p_noisy``, most frequent first.
    count : NoiseCount or None
        The detector's count: interval, verdict, source.
    noise_matrix : pandas.DataFrame or None
        With predicted probabilities: ``P(given label | true class)`` (:func:`noise_matrix_table`).
    """

    n_samples: int
    noise_fraction: float
    n_flagged: int
    true_noise_fraction: float | None
    per_class: pd.DataFrame
    confused_pairs: pd.DataFrame
    count: NoiseCount | None = None
    noise_matrix: pd.DataFrame | None = None

    @property
    def noise_rate_interval(self):
        """The count's 90% interval, or None."""
        return None if self.count is None else self.count.interval

    @property
    def verdict(self):
        """One sentence: is there noise to act on, how sure, and why."""
        if self.count is None:
            return f"estimated noise rate {self.noise_fraction:.3f} (the mixture's mean p(noisy))"
        return f"{self.count.reason} [{self.count.source}]"

    def __str__(self):
        interval = ""
        if self.count is not None:
            low, high = self.count.interval
            interval = f", 90% interval [{low:.3f}, {high:.3f}]"
        lines = [
            f"{self.n_samples} samples; estimated noise fraction {self.noise_fraction:.3f}{interval}"
            + ("" if self.true_noise_fraction is None else f" (true {self.true_noise_fraction:.3f})")
            + f"; {self.n_flagged} flagged",
            self.verdict,
        ]
        if len(self.per_class):
            lines += ["", "per given class:", self.per_class.to_string(float_format="{:.3f}".format)]
        if self.noise_matrix is not None and len(self.noise_matrix) <= PRINTED_CLASSES:
            lines += ["", "estimated noise matrix, P(given label | true class):",
                      self.noise_matrix.to_string(float_format="{:.3f}".format)]
        if len(self.confused_pairs):
            lines += ["", "most confused pairs among the flagged:",
                      self.confused_pairs.to_string(index=False, float_format="{:.3f}".format)]
        return "\n".join(lines)


def noise_summary(report, top=10):
    """Summarise a report: noise fraction overall and per given class, confused class pairs.

    ``report`` is a DataFrame from :func:`lnc_sklearn.noise_report` (or the callback's
    ``report()``); it needs ``p_noisy`` and ``is_noisy``, and ``given_label`` for the per-class
    parts. ``top`` limits the confused pairs listed.
    """
    missing = [c for c in ("p_noisy", "is_noisy") if c not in report.columns]
    if missing:
        raise ValueError(f"report lacks the column(s) {missing}; build it with noise_report")
    # "truly_noisy": the column's name in reports written before it was called noise_mask
    truth_column = next((c for c in ("noise_mask", "truly_noisy") if c in report.columns), None)
    truth = None if truth_column is None else report[truth_column]
    count = report.attrs.get("noise_count")
    has_labels = "given_label" in report.columns and report["given_label"].notna().all()
    per_class = _per_class(report, count, truth_column) if has_labels else pd.DataFrame(
        columns=["n_samples", "noise_fraction", "n_flagged"])
    has_predictions = has_labels and "predicted_label" in report.columns and report["predicted_label"].notna().all()
    pairs = _confused_pairs(report, top) if has_predictions else pd.DataFrame(
        columns=["given_label", "predicted_label", "n_suspects", "mean_p_noisy"])
    return NoiseSummary(
        n_samples=len(report),
        noise_fraction=float(count.rate if count is not None else report["p_noisy"].mean()),
        n_flagged=int(report["is_noisy"].sum()),
        true_noise_fraction=None if truth is None else float(truth.mean()),
        per_class=per_class,
        confused_pairs=pairs,
        count=count,
        noise_matrix=noise_matrix_table(count),
    )


def _per_class(report, count, truth_column):
    by_class = report.groupby("given_label", sort=True)
    per_class = pd.DataFrame({
        "n_samples": by_class.size(),
        "noise_fraction": by_class["p_noisy"].mean(),
        "n_flagged": by_class["is_noisy"].sum().astype(np.int64),
    })
    if count is not None and count.class_rates is not None:
        rates = pd.Series(count.class_rates, index=pd.Index(count.classes))
        counted = per_class.index.map(lambda c: rates.get(c, np.nan))
        per_class["noise_fraction"] = np.where(np.isnan(counted), per_class["noise_fraction"], counted)
    if truth_column is not None:
        per_class["true_noise_fraction"] = by_class[truth_column].mean()
    if "given_class" in report.columns:
        per_class.insert(0, "class", by_class["given_class"].first())
    return per_class


def _confused_pairs(report, top):
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
    return pairs
