"""What :class:`DynamicBootstrapMixUp` hands back after training: the per-epoch history, the
per-sample report, pictures and the trace file. A mixin over the attributes the callback fills
in (``epoch_records``, ``losses_``, ``labels_``, ``predictions_``, ``p_noisy_``, ``trace``,
``detector_``)."""

from pathlib import Path

import numpy as np
import pandas as pd

from lnc_sklearn import NoiseCount, report_from_probabilities
from lnc_sklearn._atomic import atomic_path

from .posterior_table import detector_input
from .tracking import training_loader

__all__ = ["ResultsMixin"]


class ResultsMixin:
    """``history``, ``report()``, the plots and ``save_trace()`` of the callback."""

    @property
    def history(self):
        """One row per tracked epoch: estimated noise fraction, AUC (with a noise mask), parameters."""
        return pd.DataFrame(self.epoch_records)

    def _check_tracked(self):
        if self.losses_ is None:
            raise RuntimeError("no epoch has been tracked yet: fit the learner with this callback first")

    def report(self, sort=False, threshold=None):
        """One row per training sample, in dataset order (``sort=True``: most suspect first), from
        the last tracked epoch: the columns of :func:`lnc_sklearn.noise_report`.

        ``item`` is the file path or row label where fastai knows it, else the sample's index;
        ``given_class``/``predicted_class`` appear when the data has a vocabulary, ``mean_p_noisy``
        and ``epochs_flagged`` (the sample's history) with ``keep_trace=True``,
        ``given_label_probability`` with ``trace_probs=True``, ``noise_mask`` with a noise mask.
        Samples whose loss was not finite have no ``p_noisy`` and rank last.

        ``is_noisy`` is ``p_noisy > threshold`` when a threshold is given, else the history's count:
        within each given label, its share of samples with the highest losses (``p_noisy`` stays
        what the training weights came from). ``report.attrs["noise_count"]`` holds the last epoch's
        count (a :class:`lnc_sklearn.NoiseCount`), which ``noise_summary`` prints.
        """
        self._check_tracked()
        n = self.losses_.size
        record = self.epoch_records[-1] if self.epoch_records else {}
        flags = estimate = None
        if "noise_rate" in record:
            estimate = _count_of(record)
            if threshold is None and self.noise_flags_ is not None:  # the count: each label's highest losses
                flags = self.noise_flags_
        vocab = getattr(self.dls, "vocab", None)
        names = None
        if vocab is not None and not isinstance(vocab[0], (list, tuple)) and len(vocab) > max(self.labels_.max(), self.predictions_.max()):
            names = [str(v) for v in vocab]
        kept = self.keep_trace and self.trace["p_noisy"]
        return report_from_probabilities(
            self.losses_,
            self.p_noisy_ if self.p_noisy_ is not None else np.full(n, np.nan),
            labels=self.labels_,
            pred_probs=self.trace["probs"][-1].astype(np.float64) if self.trace["probs"] else None,
            predicted_labels=self.predictions_,
            items=self._items(n),
            class_names=names,
            p_noisy_history=np.stack(self.trace["p_noisy"]) if kept else None,
            noise_mask=self.noise_mask,
            is_noisy=flags,
            noise_count=estimate,
            threshold=threshold,
            sort=sort,
        )

    def plot_top_suspects(self, k=9, **kwargs):
        """A grid of the ``k`` most suspect training samples; see :func:`lnc_fastai.plot_top_suspects`."""
        from .plots import plot_top_suspects

        return plot_top_suspects(self, k, **kwargs)

    def plot_mixture(self, **kwargs):
        """The last epoch's losses with the fitted mixture; see :func:`lnc_sklearn.plotting.plot_loss_mixture`."""
        from lnc_sklearn.plotting import plot_loss_mixture

        if self.losses_ is None or self.p_noisy_ is None:
            raise RuntimeError("no fitted epoch yet: fit the learner with this callback first")
        finite = np.isfinite(self.losses_)
        mask = None if self.noise_mask is None else self.noise_mask[finite]
        values = detector_input(self.detector_, self.losses_[finite])
        return plot_loss_mixture(self.detector_, values, noise_mask=mask, **kwargs)

    def plot_history(self, **kwargs):
        """Noise fraction (and ROC-AUC) per epoch; see :func:`lnc_sklearn.plotting.plot_history`."""
        from lnc_sklearn.plotting import plot_history

        if self.noise_mask is not None:
            kwargs.setdefault("true_noise_fraction", float(self.noise_mask.mean()))
        return plot_history(self.history, **kwargs)

    def _items(self, n):
        items = getattr(training_loader(self.dls), "items", None)
        if items is None or len(items) != n:
            return np.arange(n)
        if isinstance(items, (pd.DataFrame, pd.Series)):
            return items.index.to_numpy()
        if all(isinstance(item, (int, np.integer)) for item in items):
            return np.asarray(items, dtype=np.int64)  # sample indices stay integers
        return np.asarray([str(item) for item in items], dtype=object)  # file paths and the like

    def save_trace(self, path):
        """Write the kept per-epoch losses (and p_noisy, probabilities) to ``path`` as ``.npz``.

        Keys: ``losses`` and ``p_noisy`` (epochs x samples, float32), ``noisy_labels`` (the given
        labels), ``epochs``, and ``probs`` (epochs x samples x classes, float16) and ``noise_mask``
        when kept/given. The file is written whole or not at all.
        """
        if not self.keep_trace or not self.trace["losses"]:
            raise RuntimeError("no trace kept: create the callback with keep_trace=True and fit first")
        arrays = {
            "losses": np.stack(self.trace["losses"]),
            "p_noisy": np.stack(self.trace["p_noisy"]),
            "noisy_labels": self.labels_,
            "epochs": np.asarray([record["epoch"] for record in self.epoch_records]),
        }
        if self.trace["probs"]:
            arrays["probs"] = np.stack(self.trace["probs"])
        if self.noise_mask is not None:
            arrays["noise_mask"] = self.noise_mask
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
        return path


def _count_of(record):
    """The count an epoch's record holds, as a :class:`lnc_sklearn.NoiseCount` (records from
    before the interval give a point interval and the verdict the rate gave then)."""
    rate = float(record["noise_rate"])
    from_mixture = bool(record.get("noise_from_mixture", 0.0))
    source = record.get("noise_source", "mixture" if from_mixture else "log-odds count")
    verdict = record.get("noise_verdict", "cannot tell" if from_mixture else ("noise" if rate > 0 else "little or no noise"))
    interval = (record.get("noise_interval_low", rate), record.get("noise_interval_high", rate))
    return NoiseCount(rate, tuple(float(v) for v in interval), verdict, source,
                      separation=float(record.get("noise_separation", float("nan"))), most_disbelieved=from_mixture)
