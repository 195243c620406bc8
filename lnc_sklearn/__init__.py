"""lnc_sklearn: is this training sample mislabelled? scikit-learn estimators over one
number per sample (its loss, or its confidence in the given label), from any framework.
How many labels are wrong (``noise_rate_``, :mod:`lnc_sklearn.noise_rate`) and which.

Reports (:mod:`lnc_sklearn.report`) and plots (:mod:`lnc_sklearn.plotting`, needs matplotlib)
of the suspects; the ``lnc-report`` command line (:mod:`lnc_sklearn.cli`)."""

from .beta_mixture import BetaMixtureNoiseDetector, DegenerateFitWarning
from .gaussian_mixture import GaussianMixtureNoiseDetector
from .noise import CIFAR10_ASYMMETRIC, asymmetric_noise, symmetric_noise
from .noise_count import NoiseCount, count_label_noise
from .noise_rate import estimate_noise_rate
from .persistence import load_detector, save_detector
from .probabilities import given_label_loss
from .report import noise_report, report_from_probabilities
from .summary import NoiseSummary, noise_summary

__all__ = [
    "BetaMixtureNoiseDetector",
    "GaussianMixtureNoiseDetector",
    "DegenerateFitWarning",
    "estimate_noise_rate",
    "NoiseCount",
    "count_label_noise",
    "given_label_loss",
    "symmetric_noise",
    "asymmetric_noise",
    "CIFAR10_ASYMMETRIC",
    "noise_report",
    "noise_summary",
    "report_from_probabilities",
    "NoiseSummary",
    "save_detector",
    "load_detector",
]
__version__ = "0.1.0"
