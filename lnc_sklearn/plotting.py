"""Pictures of a fitted noise detector, as in the paper's figures.

- ``plot_loss_mixture``: the histogram of the normalised losses the mixture was fitted on
  (stacked by the true noise mask when one is given), with the weighted clean and noisy
  component densities and the mixture drawn over it.
- ``plot_posterior``: p(noisy | loss) on the loss's own scale, with the mixture's raw posterior
  beside lnc's monotone one.
- ``plot_history``: estimated noise fraction (and ROC-AUC) per epoch from a training history.

Each draws into ``ax`` when given, else into a new figure, returns the ``Figure``, and saves it
to ``path`` (PNG, or any format matplotlib knows by the suffix) written whole or not at all.
Needs matplotlib (``pip install "lnc[plot]"``).
"""

import copy

import numpy as np

from ._atomic import atomic_path

__all__ = ["plot_loss_mixture", "plot_posterior", "plot_history", "save_figure"]

CLEAN_COLOUR, NOISY_COLOUR, MIXTURE_COLOUR = "tab:blue", "tab:red", "black"


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError('plotting needs matplotlib: pip install "lnc[plot]"') from error
    return plt


def _axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    fig = _pyplot().figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def save_figure(fig, path, dpi=120):
    """Save ``fig`` to ``path`` (format from the suffix), whole or not at all."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return fig


def _finish(fig, path):
    return fig if path is None else save_figure(fig, path)


def density_grid(detector, n_points=2001):
    """Points on the normalised scale to draw the component densities at: the detector's
    support, with extra points near the ends of a bounded one, where Beta densities with a
    parameter below 1 rise steeply."""
    lo, hi = detector._density_support()
    if (lo, hi) != (0.0, 1.0):
        return np.linspace(lo, hi, n_points)
    ends = np.geomspace(1e-7, 1e-2, n_points // 8)
    return np.unique(np.concatenate([ends, np.linspace(1e-2, 1 - 1e-2, n_points), 1 - ends]))


def _input_name(detector):
    return "confidence" if getattr(detector, "input_type", "loss") == "confidence" else "loss"


def plot_loss_mixture(detector, values, *, noise_mask=None, bins=60, ax=None, path=None, figsize=(6.4, 4)):
    """Histogram of the normalised values with the fitted clean, noisy and mixture densities.

    Parameters
    ----------
    detector : fitted BetaMixtureNoiseDetector or GaussianMixtureNoiseDetector
    values : array-like of shape (n_samples,)
        The losses (or confidences) the detector was fitted on, or new ones. Only those inside
        the detector's bounds are drawn: they are the ones a fit uses.
    noise_mask : array-like of bool, optional
        The true "is mislabelled" flag of each value: the histogram is then stacked, clean
        below and mislabelled on top, as in the paper's figures.
    bins : int
        Histogram bins over [0, 1].
    ax : matplotlib Axes, optional
    path : str or Path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
        Its lines are labelled ``clean component``, ``noisy component`` and ``mixture``; each
        component's density, times its weight, integrates to that weight.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = detector.bounds_
    inside = (values >= low) & (values <= high)
    x = detector.to_unit_interval(values[inside])
    fig, ax = _axes(ax, figsize)
    edges = np.linspace(0.0, 1.0, bins + 1)
    scale = 1.0 / (max(x.size, 1) * np.diff(edges)[0])  # the bars' total area is 1
    if noise_mask is None:
        heights, _, _ = ax.hist(x, bins=edges, weights=np.full(x.size, scale), color="0.75", label="samples")
        tallest = heights.max(initial=0.0)
    else:
        mask = np.asarray(noise_mask, dtype=bool).ravel()
        if mask.size != values.size:
            raise ValueError(f"noise_mask has {mask.size} entries but there are {values.size} values")
        mask = mask[inside]
        parts = [x[~mask], x[mask]]
        heights, _, _ = ax.hist(
            parts,
            bins=edges,
            weights=[np.full(p.size, scale) for p in parts],
            stacked=True,
            color=["#9ecae1", "#fcae91"],
            label=["correctly labelled", "mislabelled"],
        )
        tallest = np.max(heights[-1], initial=0.0)
    grid = density_grid(detector)
    densities = detector.component_densities(grid)
    clean_w, noisy_w = detector.weights_
    ax.plot(grid, densities[:, 0], color=CLEAN_COLOUR, lw=2, label="clean component")
    ax.plot(grid, densities[:, 1], color=NOISY_COLOUR, lw=2, label="noisy component")
    ax.plot(grid, densities.sum(axis=1), color=MIXTURE_COLOUR, lw=1.2, ls="--", label="mixture")
    # Beta densities with a parameter below 1 go to infinity at an end: scale to the data.
    middle = (grid > 0.02) & (grid < 0.98)
    top = max(tallest, densities[middle].sum(axis=1).max(initial=0.0))
    ax.set_ylim(0, 1.1 * top if top > 0 else 1)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"normalised {_input_name(detector)} (0 = cleanest)")
    ax.set_ylabel("density")
    ax.set_title(
        f"{type(detector).__name__}: weights clean {clean_w:.2f}, noisy {noisy_w:.2f}\n"
        f"{x.size} of {values.size} values inside the fit's bounds",
        fontsize="medium",
    )
    ax.legend(fontsize="small")
    return _finish(fig, path)


def plot_posterior(detector, values=None, *, threshold=0.5, ax=None, path=None, figsize=(6.4, 4)):
    """p(noisy | value) on the values' own scale.

    Draws the detector's posterior and, when it is made monotone (the default), the mixture's
    raw posterior dashed, so the correction is visible; the bounds learned in ``fit`` are
    dotted. The x-range is that of ``values`` when given, else the bounds widened by 10%.
    """
    low, high = detector.bounds_
    if values is not None:
        values = np.asarray(values, dtype=np.float64).ravel()
        lo, hi = float(np.min(values)), float(np.max(values))
    else:
        margin = 0.1 * (high - low)
        lo, hi = low - margin, high + margin
    grid = np.linspace(lo, hi, 1001)
    fig, ax = _axes(ax, figsize)
    p_noisy = detector.predict_proba(grid)[:, 1]
    ax.plot(grid, p_noisy, color=NOISY_COLOUR, lw=2, label="p(noisy)")
    if getattr(detector, "monotone", False):
        raw = copy.copy(detector)
        raw.monotone = False
        ax.plot(grid, raw.predict_proba(grid)[:, 1], color="0.4", lw=1, ls="--", label="raw mixture posterior")
    for bound in (low, high):
        ax.axvline(bound, color="0.6", lw=0.8, ls=":")
    ax.axhline(threshold, color="0.6", lw=0.8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"{_input_name(detector)} (dotted: the fit's bounds)")
    ax.set_ylabel("p(noisy)")
    ax.set_title(f"{type(detector).__name__}: probability of a wrong label", fontsize="medium")
    ax.legend(fontsize="small")
    return _finish(fig, path)


def plot_history(history, *, true_noise_fraction=None, ax=None, path=None, figsize=(6.4, 4)):
    """Estimated noise rate, and ROC-AUC where known, against the epoch.

    ``history`` is a DataFrame with columns ``epoch`` and ``noise_fraction`` and optionally
    ``noise_rate`` and ``auc``, as ``DynamicBootstrapMixUp.history`` gives: ``noise_rate`` (the
    log-odds count) is drawn as "estimated noise rate" and ``noise_fraction`` (the mean p(noisy)
    the training weights come from) dashed beside it; a history without ``noise_rate`` draws
    ``noise_fraction`` alone. ``true_noise_fraction`` draws the true rate as a horizontal line.
    """
    missing = [c for c in ("epoch", "noise_fraction") if c not in getattr(history, "columns", ())]
    if missing:
        raise ValueError(f"history needs the columns 'epoch' and 'noise_fraction'; missing {missing}")
    if len(history) == 0:
        raise ValueError("history is empty: no epoch has been tracked")
    fig, ax = _axes(ax, figsize)
    if "noise_rate" in history.columns:
        ax.plot(history["epoch"], history["noise_rate"], marker="o", ms=3, color=NOISY_COLOUR, label="estimated noise rate")
        ax.plot(history["epoch"], history["noise_fraction"], ls="--", lw=1, color=NOISY_COLOUR,
                label="mean p(noisy) (training weights)")
    else:
        ax.plot(history["epoch"], history["noise_fraction"], marker="o", ms=3, color=NOISY_COLOUR,
                label="estimated noise fraction")
    if "auc" in history.columns and history["auc"].notna().any():
        ax.plot(history["epoch"], history["auc"], marker="s", ms=3, color=CLEAN_COLOUR, label="ROC-AUC (true mask)")
    if true_noise_fraction is not None:
        ax.axhline(true_noise_fraction, color=NOISY_COLOUR, lw=0.8, ls=":", label="true noise fraction")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epoch")
    ax.set_title("Label noise seen by the detector over training", fontsize="medium")
    ax.legend(fontsize="small")
    return _finish(fig, path)
