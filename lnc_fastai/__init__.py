"""lnc for fastai: train through label noise with dynamic bootstrapping and mixup.

``DynamicBootstrapMixUp`` is a fastai ``Callback`` (M-DYR-H, M-DYR-S and MD-DYR-SH of Arazo et al., 2019);
:mod:`lnc_fastai.losses` holds the bootstrapping losses as plain PyTorch functions. Detection
itself comes from :mod:`lnc_sklearn`, which never imports torch or fastai.
"""

from .callback import DynamicBootstrapMixUp
from .losses import (
    bootstrap_targets,
    bootstrapping_loss,
    class_balance_regulariser,
    detector_mixing_weights,
    mixup_bootstrapping_loss,
    sharpening_temperature,
    static_bootstrapping_loss,
)
from .plots import plot_top_suspects
from .posterior_table import PosteriorTable

__all__ = [
    "DynamicBootstrapMixUp",
    "PosteriorTable",
    "plot_top_suspects",
    "bootstrap_targets",
    "bootstrapping_loss",
    "class_balance_regulariser",
    "detector_mixing_weights",
    "mixup_bootstrapping_loss",
    "sharpening_temperature",
    "static_bootstrapping_loss",
]
