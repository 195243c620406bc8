"""Checkpoints of what :class:`DynamicBootstrapMixUp` has learned, without pickle.

A fastai checkpoint (``learn.save``) holds the model and the optimizer; the callback's fitted
detector, posterior table and history live beside it in a ``.npz`` of NumPy arrays and one JSON
string. Nothing here changes fastai: use :func:`save_checkpoint` / :func:`load_checkpoint` where
you would call ``learn.save`` / ``learn.load``, and :class:`SaveModelWithState` where you would
use fastai's ``SaveModelCallback``.
"""

import copy
import json
import warnings
from pathlib import Path

import numpy as np
from fastai.callback.tracker import SaveModelCallback
from fastai.torch_core import rank_distrib
from fastcore.xtras import join_path_file

from lnc_sklearn._atomic import atomic_path
from lnc_sklearn.persistence import detector_from_dict, detector_to_dict

from .pooling import PoolingForward
from .posterior_table import PosteriorTable

__all__ = ["StateMixin", "save_checkpoint", "load_checkpoint", "SaveModelWithState", "state_path"]

STATE_FORMAT = "lnc-callback-state/1"
ARRAYS = ("losses_", "labels_", "predictions_", "p_noisy_", "noise_flags_", "target_average_", "_previous_flags",
          "_previous_predictions", "confidence_")
# lnc mode's memory of the run so far (plain numbers, strings and lists of numbers)
LNC_STATE = ("noise_regime_", "memorising_since_", "bootstrap_since_", "collapse_guard_", "widest_classes_",
             "bootstrap_scale_", "alpha_", "light_rate_", "_previous_flags_epoch", "valid_fits_", "fitted_since_",
             "rewound_to_", "light_memorising_")

# the epochs at which lnc mode's one-way switches were made (None: not yet)
SWITCHES = ("memorising_since_", "bootstrap_since_", "fitted_since_")

# What the callback learns while training: put back after an ``lr_find`` (see ``StateMixin``).
LEARNED = ("detector_", "table", "epoch_records", "trace", "failed_fits", "skipped_batches", *ARRAYS, *LNC_STATE)


class StateMixin:
    """``state_dict`` / ``load_state_dict`` / ``save_state`` / ``load_state`` of the callback,
    and the snapshot that fastai's ``lr_find`` gets: ``lr_find`` saves the model, trains a few
    epochs and loads the model back; the callback's state is kept and put back the same way."""

    STATE_FORMAT = STATE_FORMAT

    def __setstate__(self, state):
        """Unpickle (``load_learner``), also a callback exported before the fitted detector
        became ``detector_``: then ``detector`` held the last fit."""
        super().__setstate__(state)
        if "detector_" not in state:
            self.detector_, self.detector = state.get("detector"), None
        self.__dict__.setdefault("stack_y", False)
        self.__dict__.setdefault("noise_flags_", None)  # exported before the noise count
        self.__dict__.setdefault("_previous_predictions", None)  # before the chance share: one pass without a signal
        # exported before these options: the behaviour of then (no switch, light mixup, averages)
        for name, value in (("fitted_share", None), ("fitted_since_", None), ("unmixed_until_memorising", False),
                            ("fresh_targets", False), ("unmixed_", False), ("fresh_targets_used_", False),
                            ("settling_", False), ("rewind", False), ("memorising_gain", 1.0),
                            ("prediction_floor", False), ("confidence_", None),
                            ("_rewind_point", None), ("rewound_to_", None), ("keep_pass_inputs", "auto"),
                            ("_pass_inputs", None), ("pass_from_batches", False), ("_batch_outputs", None),
                            ("pass_from_batches_", False), ("channels_last", False), ("channels_last_", False),
                            ("channels_last_pooling", "auto"), ("channels_last_pooling_", False)):
            self.__dict__.setdefault(name, value)
        self.__dict__.setdefault("_forward", PoolingForward(False))  # before_fit sets it for each fit
        if "mode" not in state:  # exported before lnc's own mode: the paper's was the only one
            self.__dict__.update(mode="paper", tracking_every=1, target_average_=None,
                                 _per_sample=None, _previous_flags=None)

    def _snapshot(self):
        return copy.deepcopy({name: getattr(self, name, None) for name in LEARNED})

    def _restore(self, snapshot):
        for name, value in snapshot.items():
            setattr(self, name, value)
        self._per_sample = None  # the device copies are made again from the arrays

    def state_dict(self):
        """What the callback has learned, as NumPy arrays plus one JSON string: the fitted
        detector (class, parameters, fitted attributes), the posterior table the next epoch's
        batches read, the history, the last epoch's per-sample results and the trace."""
        detector = None
        if self.detector_ is not None:
            try:
                detector = detector_to_dict(self.detector_)
            except TypeError as error:
                warnings.warn(f"the detector is not saved ({error}); the table and history are", RuntimeWarning, stacklevel=2)
        meta = {
            "format": STATE_FORMAT,
            "detector": detector,
            "epoch_records": self.epoch_records,
            "failed_fits": self.failed_fits,
            "skipped_batches": self.skipped_batches,
            "table_max_loss": None if self.table is None else self.table.max_loss,
            "lnc_state": {name: getattr(self, name, None) for name in LNC_STATE},
        }
        arrays = {"meta": np.array(json.dumps(meta))}
        arrays.update({name: getattr(self, name) for name in ARRAYS if getattr(self, name) is not None})
        if self.table is not None:
            arrays["table_p_noisy"] = self.table.p_noisy.cpu().numpy()
        arrays.update({f"trace_{key}": np.stack(parts) for key, parts in self.trace.items() if parts})
        return arrays

    def load_state_dict(self, arrays):
        """Restore what :meth:`state_dict` gave; ``ValueError`` if it is not such a state."""
        try:
            meta = json.loads(str(arrays["meta"]))
        except (KeyError, ValueError) as error:
            raise ValueError(f"not a DynamicBootstrapMixUp state ({error})") from None
        if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
            raise ValueError(f"not a DynamicBootstrapMixUp state (expected format {STATE_FORMAT!r})")
        if meta["detector"] is not None:
            self.detector_ = detector_from_dict(meta["detector"])
        self.epoch_records = meta["epoch_records"]
        self.failed_fits, self.skipped_batches = meta["failed_fits"], meta["skipped_batches"]
        for name in ARRAYS:
            setattr(self, name, arrays[name] if name in arrays else None)
        for name, value in (meta.get("lnc_state") or {}).items():
            # None is a value for the epochs a switch was made at: a checkpoint from before it has it unset
            if name in LNC_STATE and (value is not None or name in SWITCHES):
                setattr(self, name, value)
        self._per_sample = None
        self.table = None
        if meta["table_max_loss"] is not None:
            device = next(self.model.parameters()).device if getattr(self, "learn", None) is not None else "cpu"
            self.table = PosteriorTable(meta["table_max_loss"], arrays["table_p_noisy"]).to(device)
        self.trace = {key: list(arrays[f"trace_{key}"]) if f"trace_{key}" in arrays else [] for key in self.trace}

    def save_state(self, path):
        """Write :meth:`state_dict` to ``path`` (``.npz``), whole or not at all."""
        path = Path(path)
        with atomic_path(path) as tmp:
            np.savez(tmp, **self.state_dict())
        return path

    def load_state(self, path):
        """Read a state written by :meth:`save_state` (``allow_pickle=False``; ``ValueError`` if
        the file is not one)."""
        try:
            with np.load(path, allow_pickle=False) as file:
                arrays = {key: file[key] for key in file.files}
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} is not a DynamicBootstrapMixUp state file: {error}") from None
        self.load_state_dict(arrays)
        return self


def state_path(model_file, cb):
    """Where a callback's state goes beside a model file: ``models/name.<callback name>.npz``."""
    return Path(model_file).with_suffix(f".{cb.name}.npz")


def _stateful(learn):
    return [cb for cb in learn.cbs if isinstance(cb, StateMixin)]


def save_checkpoint(learn, file, **kwargs):
    """``learn.save(file, **kwargs)``, and the state of every ``DynamicBootstrapMixUp`` on the
    learner beside the model file (written by the main process only, like the model). Returns
    the model file's path."""
    path = learn.save(file, **kwargs)
    if not rank_distrib():
        for cb in _stateful(learn):
            cb.save_state(state_path(path, cb))
    return path


def load_checkpoint(learn, file, **kwargs):
    """``learn.load(file, **kwargs)``, and every ``DynamicBootstrapMixUp``'s state from beside
    the model file (a warning, and the callback keeps its own, where there is none). A run
    resumed this way (``fit_one_cycle(..., start_epoch=k)``) goes on with the same detector,
    table and history."""
    result = learn.load(file, **kwargs)
    _load_states(learn, file)
    return result


def _load_states(learn, file):
    model_file = join_path_file(file, learn.path / learn.model_dir, ext=".pth")
    for cb in _stateful(learn):
        path = state_path(model_file, cb)
        if path.exists():
            cb.load_state(path)
        else:
            warnings.warn(f"no {cb.name} state beside {model_file} ({path.name}); the callback keeps its own",
                          RuntimeWarning, stacklevel=3)


class SaveModelWithState(SaveModelCallback):
    """fastai's ``SaveModelCallback`` that also saves, and where it loads the best model restores,
    the state of every ``DynamicBootstrapMixUp`` on the learner (:func:`save_checkpoint`)."""

    def _save(self, name):
        self.last_saved_path = save_checkpoint(self.learn, name, with_opt=self.with_opt)

    def after_fit(self, **kwargs):
        super().after_fit(**kwargs)  # saves at the end, or loads the best model, as fastai does
        if not self.at_end and not self.every_epoch:
            _load_states(self.learn, self.fname)
