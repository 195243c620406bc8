"""When each phase of ``DynamicBootstrapMixUp`` starts: epochs given as counts or as fractions of
the run, and the reference code's MD-DYR-SH milestones. Plain Python, no torch."""

import numbers

__all__ = ["PAPER_MIXING_ONLY", "PAPER_SHARPENING_LENGTH", "epochs_of", "phase_end", "check_sharpening",
           "sharpening_epochs"]

# The reference's MD-DYR-SH milestones, 0-based epochs of its 300-epoch run: detector mixing from
# epoch 105 (1-based 106), bootstrapping from 110 (111), temperature 1 at 110 falling by equal
# steps to 0.001 at 198 (``linspace(1, 0.001, 89)``, one step per epoch).
PAPER_MIXING_ONLY = 5 / 300
PAPER_SHARPENING_LENGTH = 88 / 300


def epochs_of(value, n_epoch, name="warmup"):
    """An epoch given as a number of epochs (int >= 0) or as a fraction of the run (float in [0, 1]).

    >>> epochs_of(0.35, 300), epochs_of(3, 10)
    (105, 3)
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:  # NumPy's too
        return int(value)
    if isinstance(value, float) and 0 <= value <= 1:
        return int(round(value * n_epoch))
    raise ValueError(
        f"{name} must be a number of epochs (int >= 0) or a fraction of the run (float in [0, 1]); got {value!r}"
    )


def phase_end(start, length, n_epoch, name):
    """The epoch that ends a phase of ``length`` begun at ``start`` (each an int of epochs or a
    float fraction of the run). Two fractions are added before rounding, so that the phase ends
    where the paper's milestone falls in a run of any length.

    >>> phase_end(0.35, 5 / 300, 300, "mixing_only"), phase_end(0.35, 5 / 300, 30, "mixing_only")
    (110, 11)
    """
    if isinstance(start, float) and isinstance(length, float):
        return epochs_of(start + length, n_epoch, f"warmup + {name}") if start + length <= 1 else n_epoch
    return epochs_of(start, n_epoch) + epochs_of(length, n_epoch, name)


def check_sharpening(sharpening):
    """``None`` or a ``(start, end)`` pair of epochs or fractions; ``ValueError`` otherwise."""
    if sharpening is None:
        return None
    if not (isinstance(sharpening, (tuple, list)) and len(sharpening) == 2):
        raise ValueError(f"sharpening must be a (start, end) pair of epochs or fractions of the run, got {sharpening!r}")
    for value in sharpening:
        epochs_of(value, 1, "sharpening")  # validates
    start, end = sharpening
    if isinstance(start, float) == isinstance(end, float) and end < start:
        raise ValueError(f"sharpening must end after it starts, got {sharpening!r}")
    return tuple(sharpening)


def sharpening_epochs(sharpening, bootstrap_epoch, n_epoch):
    """The first and last epoch of the soft-to-hard temperature's fall in a run of ``n_epoch``:
    from ``sharpening`` as given, or by default from ``bootstrap_epoch`` for 88/300 of the run.

    >>> sharpening_epochs(None, 110, 300), sharpening_epochs((0.5, 1.0), 0, 30)
    ((110, 198), (15, 30))
    """
    if sharpening is None:
        return bootstrap_epoch, bootstrap_epoch + epochs_of(PAPER_SHARPENING_LENGTH, n_epoch, "sharpening")
    start, end = (epochs_of(value, n_epoch, "sharpening") for value in sharpening)
    if end < start:
        raise ValueError(f"sharpening must end after it starts; {sharpening!r} in a run of {n_epoch} epochs "
                         f"is epochs {(start, end)}")
    return start, end
