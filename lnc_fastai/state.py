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

from .policy import TrainingPolicy
from .paper import PAPER_OPTIONS
from .posterior_table import PosteriorTable

__all__ = ["StateMixin", "save_checkpoint", "load_checkpoint", "SaveModelWithState", "state_path"]

STATE_FORMAT = "lnc-callback-state/1"
# What the passes found, per sample (kept in the callback's NoiseCorrection)
ARRAYS = ("losses_", "labels_", "predictions_", "p_noisy_", "noise_flags_", "target_average_", "confidence_")
# Earlier versions kept lnc mode's memory as the callback's own attributes: their policy fields
OLD_POLICY_FIELDS = {"noise_regime_": "regime", "memorising_since_": "memorising_since", "collapse_guard_": "collapse_guard",
                     "widest_classes_": "widest_classes", "_previous_flags_epoch": "previous_flags_epoch",
                     "_previous_flags": "previous_flags", "_previous_predictions": "previous_predictions"}
# and the constants of its policy that remain (the others went with their mechanisms: lnc_fastai.options.REMOVED)
OLD_POLICY_CONSTANTS = ("memorisation_threshold", "ramp")
OLD_DROPPED = ("strong_alpha", "light_noise_rate", "fitted_share", "memorising_gain", "settle", "bootstrap_since_",
               "fitted_since_", "light_rate_", "light_memorising_", "valid_fits_", "rewound_to_")
# What the callback learns while training: put back after an ``lr_find`` (see ``StateMixin``).
LEARNED = ("correction", "table", "epoch_records", "trace", "skipped_batches", "valid_fits_")


def _policy_from_old(state):
    """A TrainingPolicy with the constants and memory an earlier version's callback kept."""
    constants = {name: state[name] for name in OLD_POLICY_CONSTANTS if state.get(name) is not None}
    policy = TrainingPolicy(warmup=state.get("warmup", 0.1), alpha=float(state.get("alpha", 0.4)), **constants)
    policy.load_state_dict({new: state[old] for old, new in OLD_POLICY_FIELDS.items() if state.get(old) is not None})
    return policy


class StateMixin:
    """``state_dict`` / ``load_state_dict`` / ``save_state`` / ``load_state`` of the callback,
    and the snapshot that fastai's ``lr_find`` gets: ``lr_find`` saves the model, trains a few
    epochs and loads the model back; the callback's state is kept and put back the same way."""

    STATE_FORMAT = STATE_FORMAT

    def __setstate__(self, state):
        """Unpickle (``load_learner``), also a callback exported by an earlier version: its
        fitted detector, per-sample arrays and lnc mode's memory move into the correction and
        policy; options it had that no longer exist are dropped."""
        if "correction" not in state:
            state = _migrate(type(self), state)
        super().__setstate__(state)
        self.policy = self.correction.policy

    def _snapshot(self):
        return copy.deepcopy({name: getattr(self, name, None) for name in LEARNED})

    def _restore(self, snapshot):
        for name, value in snapshot.items():
            setattr(self, name, value)
        self.policy = self.correction.policy
        self.correction._device_copy = None

    def state_dict(self):
        """What the callback has learned, as NumPy arrays plus one JSON string: the fitted
        detector, the posterior table, the history, the last pass's per-sample results, the
        policy's state and the trace."""
        detector = None
        if self.detector_ is not None:
            try:
                detector = detector_to_dict(self.detector_)
            except TypeError as error:
                warnings.warn(f"the detector is not saved ({error}); the table and history are", RuntimeWarning, stacklevel=2)
        policy = self.policy.state_dict()
        policy_arrays = {name: policy.pop(name) for name in TrainingPolicy.ARRAYS}
        meta = {
            "format": STATE_FORMAT,
            "detector": detector,
            "epoch_records": self.epoch_records,
            "failed_fits": self.failed_fits,
            "skipped_batches": self.skipped_batches,
            "table_max_loss": None if self.table is None else self.table.max_loss,
            "policy": policy,
            "lnc_state": {"valid_fits_": self.valid_fits_},
        }
        arrays = {"meta": np.array(json.dumps(meta))}
        arrays.update({name: getattr(self, name) for name in ARRAYS if getattr(self, name) is not None})
        arrays.update({f"policy_{name}": np.asarray(v) for name, v in policy_arrays.items() if v is not None})
        if self.table is not None:
            arrays["table_p_noisy"] = self.table.p_noisy.cpu().numpy()
        arrays.update({f"trace_{key}": np.stack(parts) for key, parts in self.trace.items() if parts})
        return arrays

    def load_state_dict(self, arrays):
        """Restore what :meth:`state_dict` gave (also an earlier version's); ``ValueError`` if it
        is not such a state."""
        try:
            meta = json.loads(str(arrays["meta"]))
        except (KeyError, ValueError) as error:
            raise ValueError(f"not a DynamicBootstrapMixUp state ({error})") from None
        if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
            raise ValueError(f"not a DynamicBootstrapMixUp state (expected format {STATE_FORMAT!r})")
        if meta["detector"] is not None:
            self.correction.detector_ = detector_from_dict(meta["detector"])
        self.epoch_records = meta["epoch_records"]
        self.correction.failed_fits, self.skipped_batches = meta["failed_fits"], meta["skipped_batches"]
        for name in ARRAYS:
            setattr(self, name, arrays[name] if name in arrays else None)
        lnc_state = meta.get("lnc_state") or {}
        self.valid_fits_ = list(lnc_state.get("valid_fits_") or [])
        if "policy" in meta:
            policy = dict(meta["policy"])
            policy.update({name: arrays[f"policy_{name}"] for name in TrainingPolicy.ARRAYS if f"policy_{name}" in arrays})
            self.policy.load_state_dict(policy)
        else:  # an earlier version's checkpoint: its memory of the run, by the names it had
            old = {**lnc_state, **{name: arrays[name] for name in ("_previous_flags", "_previous_predictions") if name in arrays}}
            self.policy.load_state_dict({new: old[name] for name, new in OLD_POLICY_FIELDS.items() if old.get(name) is not None})
        self.correction._device_copy = None
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


def _migrate(cls, state):
    """An earlier version's pickled callback as this version's ``__dict__``: a callback of
    ``cls`` built with the options it had gives the layout and defaults; what it had learned (the
    detector's fit, the per-sample arrays, lnc mode's memory in the policy, the history, the
    trace, the table) is put in; options that no longer exist are dropped."""
    state = dict(state)
    if "detector_" not in state:  # exported before the fitted detector became detector_
        state["detector_"], state["detector"] = state.get("detector"), None
    mode = state.get("mode", "paper")  # exported before lnc's own mode: the paper's was the only one
    given = {name: state[name] for name in PAPER_OPTIONS if state.get(name) is not None}
    given.update({name: state[name] for name in ("detector", "noise_mask", "keep_trace", "trace_probs", "tracking_bs")
                  if state.get(name) is not None})
    if mode == "lnc":
        given["policy"] = _policy_from_old(state)
    else:
        given.update({name: state[name] for name in ("alpha", "warmup") if name in state})
    fresh = cls(mode=mode, **given).__dict__
    correction = fresh["correction"]
    for name in (*ARRAYS, "detector_", "failed_fits"):
        if state.get(name) is not None:
            setattr(correction, name, state[name])
    learned = {name: state[name] for name in ("epoch_records", "trace", "skipped_batches", "table", "valid_fits_")
               if state.get(name) is not None}
    dropped = set(OLD_POLICY_FIELDS) | set(OLD_POLICY_CONSTANTS) | set(OLD_DROPPED) | {
        "alpha_", "bootstrap_scale_", "unmixed_", "settling_", "fresh_targets_used_", "target_momentum", "ramp_epochs",
        "settle_epochs", "unmixed_until_memorising", "rewind", "prediction_floor", "fresh_targets", "pass_from_batches",
        "_rewind_point", "_per_sample", "_lam_distrib", "tracking_every_", *ARRAYS, "detector_", "failed_fits"}
    # the base classes' own attributes (fastai's) as they were, this version's layout over them
    kept = {name: value for name, value in state.items() if name not in dropped and name not in fresh}
    return {**kept, **fresh, **learned}
