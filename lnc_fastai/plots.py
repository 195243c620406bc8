"""The most suspect training samples as a picture grid, like fastai's ``plot_top_losses``.

Each tile shows a sample as the network saw it in the per-epoch loss pass (validation
transforms, no augmentation), titled with its given label, the predicted label and p(noisy).
Samples are drawn with fastai's own ``show`` where the data has types that know how to show
themselves (images from a ``DataBlock``), as images where they are image-shaped tensors (a flat
vector of a square number of values, like the digits, is drawn as a square), and by a function
the caller gives otherwise.
"""

import math

import numpy as np
import torch
from fastai.torch_core import to_cpu

from lnc_sklearn.plotting import _finish, _pyplot

__all__ = ["plot_top_suspects"]


def _has_report(cb):
    """A DynamicBootstrapMixUp, told by what it offers (this module does not import the callback)."""
    return callable(getattr(cb, "report", None)) and hasattr(cb, "losses_") and hasattr(cb, "p_noisy_")


def _as_image(x):
    """An array ``imshow`` can draw, or None when ``x`` does not look like an image."""
    x = np.asarray(to_cpu(x).as_subclass(torch.Tensor).float() if torch.is_tensor(x) else x, dtype=np.float64)
    if x.ndim == 1 and math.isqrt(x.size) ** 2 == x.size:
        return x.reshape(math.isqrt(x.size), -1)
    if x.ndim == 3 and x.shape[0] in (1, 3):
        x = x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)
    if x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3):
        if x.ndim == 3 and (x.min() < 0 or x.max() > 1):  # normalised colour: rescale for display
            x = (x - x.min()) / max(x.max() - x.min(), 1e-12)
        return x
    return None


def _default_show(x, ax):
    if hasattr(x, "show"):
        # One-channel images with fastai's default colour map (viridis) show in grey; types with
        # a map of their own (PILImageBW's "Greys") keep it.
        grey = getattr(x, "ndim", 0) == 3 and x.shape[0] == 1 and getattr(x, "_show_args", {}).get("cmap", "viridis") == "viridis"
        x.show(ctx=ax, **({"cmap": "gray"} if grey else {}))
        return
    image = _as_image(x)
    if image is None:
        raise TypeError(
            f"cannot draw a sample of type {type(x).__name__} with shape {tuple(np.shape(x))} as an image; "
            "pass show=a function (sample, ax) that draws one"
        )
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None)


def _samples(cb, indices):
    """The inputs of the training samples at ``indices``, un-augmented and decoded where fastai
    can decode them (so normalised images show as images)."""
    train = cb.dls.train
    dataset = train.dataset
    if hasattr(train, "decode_batch") and hasattr(dataset, "set_split_idx"):
        dl = train.new(shuffle=False, drop_last=False, bs=len(indices), get_idxs=lambda: list(indices))
        with dataset.set_split_idx(1):
            batch = next(iter(dl))
        return [sample[0] for sample in dl.decode_batch(batch, max_n=len(indices))]
    samples = []
    for i in indices:
        item = dataset[int(i)]
        samples.append(item[0] if isinstance(item, (tuple, list)) else item)
    return samples


def _name(report, row, column, label_column):
    if column in report.columns:
        return str(row[column])
    return str(row[label_column])


def plot_top_suspects(cb, k=9, *, ncols=3, show=None, figsize=None, path=None):
    """A grid of the ``k`` training samples most likely mislabelled, most suspect first.

    Parameters
    ----------
    cb : DynamicBootstrapMixUp, or a Learner that has one
        After fitting (its report comes from the last tracked epoch).
    k : int
        How many samples.
    ncols : int
        Tiles per row.
    show : callable, optional
        ``show(sample, ax)`` draws one input; by default fastai's ``show`` or ``imshow``.
    figsize : tuple, optional
        Default: 2.6 inches per tile.
    path : str or Path, optional
        Save the figure there (whole or not at all).

    Returns
    -------
    matplotlib.figure.Figure
        Tile titles read ``given -> predicted`` (red when they differ), ``p_noisy`` and the loss,
        and, when the callback has a noise mask, whether the label was truly wrong.
    """
    if not _has_report(cb):
        found = [c for c in getattr(cb, "cbs", []) if _has_report(c)]
        if not found:
            raise TypeError(f"plot_top_suspects needs a DynamicBootstrapMixUp or a Learner with one; got {type(cb).__name__}")
        cb = found[0]
    if not (isinstance(k, (int, np.integer)) and k > 0):
        raise ValueError(f"k must be a positive int, got {k!r}")
    report = cb.report(sort=True).head(k)
    samples = _samples(cb, report.index.to_numpy())
    nrows = math.ceil(len(report) / ncols)
    fig = _pyplot().figure(figsize=figsize or (2.6 * ncols, 2.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    draw = show or _default_show
    for ax, (position, row), sample in zip(axes, report.iterrows(), samples):
        draw(sample, ax)
        given = _name(report, row, "given_class", "given_label")
        predicted = _name(report, row, "predicted_class", "predicted_label")
        title = f"{given} -> {predicted}\np_noisy {row['p_noisy']:.2f}, loss {row['loss']:.2f}"
        if "noise_mask" in report.columns:
            title += "\n(truly mislabelled)" if row["noise_mask"] else "\n(label was right)"
        ax.set_title(title, fontsize="small", color="tab:red" if given != predicted else "black")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(report):]:
        ax.axis("off")
    fig.suptitle("Most suspect training samples (given -> predicted)", fontsize="medium")
    return _finish(fig, path)
