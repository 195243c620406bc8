"""lnc_sklearn: is this training sample mislabelled? scikit-learn estimators over one
number per sample (its loss, or its confidence in the given label), from any framework."""

from .beta_mixture import BetaMixtureNoiseDetector, DegenerateFitWarning
from .gaussian_mixture import GaussianMixtureNoiseDetector
from .noise import CIFAR10_ASYMMETRIC, asymmetric_noise, symmetric_noise

__all__ = [
    "BetaMixtureNoiseDetector",
    "GaussianMixtureNoiseDetector",
    "DegenerateFitWarning",
    "symmetric_noise",
    "asymmetric_noise",
    "CIFAR10_ASYMMETRIC",
]
__version__ = "0.1.0"
