"""lnc for fastai: train through label noise with dynamic bootstrapping and mixup.

``DynamicBootstrapMixUp`` is a fastai ``Callback`` (lnc's own mode, and M-DYR-H, M-DYR-S and
MD-DYR-SH of Arazo et al., 2019). lnc's mode is :class:`NoiseCorrection` with its
:class:`TrainingPolicy`, usable from a plain PyTorch loop; :mod:`lnc_fastai.losses` holds the
bootstrapping losses as plain PyTorch functions. Detection itself comes from
:mod:`lnc_sklearn`, which never imports torch or fastai.

Importing ``lnc_fastai`` (or ``lnc_fastai.losses``) imports torch but not fastai, and changes
nothing in fastai or torch: fastai is imported when a fastai-facing name (the callback, the
checkpoint helpers, ``GlooBroadcast``, ``plot_top_suspects``) is first used.
"""

import importlib

from .losses import (
    bootstrap_targets,
    bootstrapping_loss,
    class_balance_regulariser,
    detector_mixing_weights,
    mixup_bootstrapping_loss,
    sharpening_temperature,
    static_bootstrapping_loss,
)
from .correction import NoiseCorrection, loss_pass
from .policy import EpochPlan, PassStats, Plan, TrainingPolicy
from .posterior_table import PosteriorTable

# Names whose modules import fastai, loaded on first use.
_FASTAI = {
    "DynamicBootstrapMixUp": "callback",
    "plot_top_suspects": "plots",
    "save_checkpoint": "state",
    "load_checkpoint": "state",
    "SaveModelWithState": "state",
    "GlooBroadcast": "gloo",
}

__all__ = [
    "DynamicBootstrapMixUp",
    "NoiseCorrection",
    "TrainingPolicy",
    "Plan",
    "EpochPlan",
    "PassStats",
    "loss_pass",
    "PosteriorTable",
    "plot_top_suspects",
    "save_checkpoint",
    "load_checkpoint",
    "SaveModelWithState",
    "GlooBroadcast",
    "bootstrap_targets",
    "bootstrapping_loss",
    "class_balance_regulariser",
    "detector_mixing_weights",
    "mixup_bootstrapping_loss",
    "sharpening_temperature",
    "static_bootstrapping_loss",
]


def __getattr__(name):
    if name in _FASTAI:
        value = getattr(importlib.import_module(f".{_FASTAI[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
