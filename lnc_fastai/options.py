"""``DynamicBootstrapMixUp``'s arguments: the modes, the paper's presets, the checks, and what
happened to the arguments earlier versions took. Plain Python, no torch, no fastai."""

import numpy as np

from .paper import PAPER_OPTIONS
from .policy import TrainingPolicy
from .schedule import epochs_of

__all__ = ["MODES", "MODE_DEFAULTS", "PRESETS", "REMOVED", "check_options"]

MODES = ("lnc", "paper")
# Each mode's values for the arguments left at None.
MODE_DEFAULTS = {
    "lnc": {"bootstrap": "hard", "alpha": 0.4, "warmup": 0.1},
    "paper": {"bootstrap": "hard", "alpha": 32.0, "warmup": 0.35},
}
# The paper's methods, exactly as published.
PRESETS = {
    "m-dyr-h": {"mode": "paper", "bootstrap": "hard"},
    "m-dyr-s": {"mode": "paper", "bootstrap": "soft"},
    "md-dyr-sh": {"mode": "paper", "bootstrap": "soft-to-hard", "detector_mixing": True},
}

_POLICY = "lnc mode's policy constant: pass policy=TrainingPolicy({name}=...)"
_DROPPED = ("its mechanism is gone: switching it off cost nothing on the policy's validation cells "
            "(benchmarks/results/policy_validation_before.md)")
_SPEED = "a speed setting, now chosen for the device (set the attribute of the same name after construction to override)"
# Arguments of earlier versions: why each went, and what replaces it.
REMOVED = {
    "memorisation_threshold": _POLICY,
    "ramp": _POLICY,
    "strong_alpha": _DROPPED + "; pass alpha= for mixup's strength throughout",
    "fitted_share": _DROPPED,
    "light_noise_rate": _DROPPED + "; only heavy noise, once the network memorises, starts bootstrapping",
    "settle": _DROPPED,
    "unmixed_until_memorising": _DROPPED,
    "rewind": _DROPPED,
    "prediction_floor": _DROPPED,
    "memorising_gain": "a factor on p(noisy) after the call that was 1 (no change) by default: gone",
    "target_momentum": "the running average's momentum is fixed at 0.7 (lnc_fastai.correction.TARGET_MOMENTUM)",
    "fresh_targets": "after the memorisation call the targets always come from a forward of each batch",
    "tracking_every": _SPEED,
    "keep_pass_inputs": _SPEED,
    "pass_from_batches": _SPEED,
    "channels_last": _SPEED,
    "channels_last_pooling": _SPEED,
}


def check_options(mode, alpha, warmup, detector, policy, tracking_bs, paper_options):
    """The constructor's arguments checked and completed: ``alpha``, ``warmup``, ``policy`` and
    the paper's options with their defaults. Removed arguments raise ``TypeError`` with what
    replaces them; bad values ``ValueError``."""
    removed = [name for name in paper_options if name in REMOVED]
    if removed:
        name = removed[0]
        raise TypeError(f"DynamicBootstrapMixUp no longer takes {name!r}: {REMOVED[name].format(name=name)}")
    unknown = sorted(set(paper_options) - set(PAPER_OPTIONS))
    if unknown:
        raise TypeError(f"DynamicBootstrapMixUp got unexpected arguments {unknown}; the paper's options are "
                        f"{sorted(PAPER_OPTIONS)}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    defaults = MODE_DEFAULTS[mode]
    if policy is not None and not isinstance(policy, TrainingPolicy):
        raise TypeError(f"policy must be a lnc_fastai.TrainingPolicy, got {type(policy).__name__}")
    if policy is not None and mode != "lnc":
        raise ValueError("policy is lnc mode's; the paper's methods follow their published schedule")
    if policy is not None and (alpha is not None or warmup is not None):
        raise ValueError("give alpha and warmup to the TrainingPolicy when passing policy=, not to the callback")
    if policy is not None:
        alpha, warmup = policy.alpha, policy.warmup
    alpha = defaults["alpha"] if alpha is None else alpha
    warmup = defaults["warmup"] if warmup is None else warmup
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    epochs_of(warmup, 1)  # validates
    if detector is not None and not (hasattr(detector, "fit") and hasattr(detector, "predict_proba")):
        raise TypeError(f"detector must have fit and predict_proba, got {type(detector).__name__}")
    if tracking_bs is not None and not (isinstance(tracking_bs, (int, np.integer)) and tracking_bs > 0):
        raise ValueError(f"tracking_bs must be a positive int or None, got {tracking_bs!r}")
    if policy is None and mode == "lnc":
        policy = TrainingPolicy(warmup=warmup, alpha=float(alpha))
    options = {**PAPER_OPTIONS, **paper_options}
    if options["bootstrap"] is None:
        options["bootstrap"] = defaults["bootstrap"]
    return {**options, "alpha": float(alpha), "warmup": warmup, "policy": policy}
