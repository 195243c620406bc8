"""Mapping raw per-sample values (losses or confidences) into the unit interval.

The mixtures are fitted on a scale where 0 is "cleanest" and 1 "noisiest". The reference
code takes the 5th and 95th percentiles of the training losses as that scale's ends, leaves
the values outside them out of the fit (they are the extreme tails the mixture fits worst)
and clamps everything into ``[eps, 1 - eps]`` so that a Beta density stays finite. New
values are mapped with the bounds learned at fit time, never re-normalised per call, so a
sample's probability does not depend on which batch it arrives in.
"""

import warnings

import numpy as np

__all__ = ["percentile_bounds", "to_unit_interval", "log_span"]

def _span(low, high):
    """``(high - low, scale)``: the width of the bounds, computed on values divided by ``scale``
    (1 unless the plain difference overflows, as between -1e308 and 1e308)."""
    with np.errstate(over="ignore"):
        span = float(high) - float(low)
    if np.isfinite(span):
        return span, 1.0
    scale = max(abs(float(low)), abs(float(high)))
    return float(high) / scale - float(low) / scale, scale


def log_span(low, high):
    """``log(high - low)``, also where ``high - low`` overflows.

    >>> float(log_span(-1.5e308, 1.5e308)) > 709
    True
    """
    span, scale = _span(low, high)
    return np.log(span) + np.log(scale)


def percentile_bounds(values, percentiles):
    """Return ``(low, high)``, the given percentiles of ``values``.

    When the percentiles coincide (more than 90% of the values equal, say) but the values
    are not all equal, the full range is used instead, with a warning, because a zero-width
    interval maps everything onto one point.

    >>> percentile_bounds(np.arange(101.0), (5, 95))
    (5.0, 95.0)
    """
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        low, high = (float(v) for v in np.percentile(values, percentiles))
    if not (np.isfinite(low) and np.isfinite(high)):
        # The interpolation's differences overflowed (values near +-1.8e308): work scaled down.
        scale = float(np.max(np.abs(values)))
        low, high = (float(v) * scale for v in np.percentile(values / scale, percentiles))
    if high > low:
        return low, high
    vmin, vmax = float(values.min()), float(values.max())
    if vmax > vmin:
        warnings.warn(
            f"the {percentiles[0]}th and {percentiles[1]}th percentiles of the values are "
            f"equal ({low!r}); normalising with the full range [{vmin!r}, {vmax!r}] instead",
            UserWarning,
            stacklevel=3,
        )
        return vmin, vmax
    raise ValueError(
        f"all {values.size} values are equal ({vmin!r}): a two-component mixture needs "
        "values that differ (per-sample losses or confidences)"
    )


def to_unit_interval(values, low, high, *, higher_is_noisier=True, eps=1e-4):
    """Map ``values`` to ``[eps, 1 - eps]``: 0 at the clean end, 1 at the noisy end.

    Losses (``higher_is_noisier=True``) become ``(v - low) / (high - low)``; confidences
    become ``(high - v) / (high - low)``. Values outside ``[low, high]`` are clamped.

    >>> to_unit_interval(np.array([0.0, 5.0, 10.0, 20.0]), 0.0, 10.0, eps=0.0)
    array([0. , 0.5, 1. , 1. ])
    >>> to_unit_interval(np.array([0.0, 10.0]), 0.0, 10.0, higher_is_noisier=False, eps=0.0)
    array([1., 0.])
    """
    values = np.asarray(values, dtype=np.float64)
    span, scale = _span(low, high)
    if scale != 1.0:
        values, low, high = values / scale, low / scale, high / scale
    # A finite value far outside the bounds may overflow to +-inf here; the clip maps it home.
    with np.errstate(over="ignore"):
        x = (values - low) / span if higher_is_noisier else (high - values) / span
    return np.clip(x, eps, 1.0 - eps, out=x)
