"""The callback's report, joined with image files, and the grid of the most suspect samples."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from fastai.torch_core import set_seed  # noqa: E402
from test_callback import make_data, quiet_fit, tensor_learner  # noqa: E402
from torch import nn  # noqa: E402

from lnc_fastai import DynamicBootstrapMixUp, plot_top_suspects  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def seeded_and_closed():
    set_seed(0)
    yield
    plt.close("all")


def test_report_has_ranks_history_and_cleanlabs_columns():
    mask = make_data()[3]
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, noise_mask=mask, keep_trace=True, trace_probs=True)
    quiet_fit(tensor_learner(cb), epochs=3)
    report = cb.report()
    probs = cb.trace["probs"][-1].astype(np.float64)
    np.testing.assert_array_equal(report["given_label_probability"], probs[np.arange(len(report)), cb.labels_])
    np.testing.assert_array_equal(report["predicted_label"], cb.predictions_)
    for column in ("given_label", "predicted_label", "label_quality", "is_label_issue", "p_noisy", "rank", "noise_mask"):
        assert column in report.columns
    history = np.stack(cb.trace["p_noisy"])
    assert history.shape == (3, len(report))
    np.testing.assert_allclose(report["mean_p_noisy"], history.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(report["epochs_flagged"], (history > 0.5).mean(axis=0))
    ranked = cb.report(sort=True)
    assert ranked["rank"].is_monotonic_increasing and ranked.index[0] == report["rank"].idxmin()
    assert np.all(np.diff(ranked["p_noisy"].to_numpy()) <= 0)


def test_mixture_and_history_plots_from_the_callback(tmp_path):
    mask = make_data()[3]
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, noise_mask=mask)
    quiet_fit(tensor_learner(cb), epochs=2)
    fig = cb.plot_mixture(path=tmp_path / "mixture.png")
    assert {"clean component", "noisy component", "mixture"} <= {line.get_label() for line in fig.axes[0].get_lines()}
    fig = cb.plot_history()
    labels = {line.get_label() for line in fig.axes[0].get_lines()}
    assert {"estimated noise rate", "mean p(noisy) (training weights)", "ROC-AUC (true mask)", "true noise fraction"} <= labels
    assert (tmp_path / "mixture.png").read_bytes()[:8] == PNG_MAGIC


def test_samples_that_are_not_images_need_a_show_function():
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    learn = tensor_learner(cb)
    quiet_fit(learn, epochs=2)
    with pytest.raises(TypeError, match="pass show="):
        plot_top_suspects(learn, k=4)
    drawn = []
    fig = plot_top_suspects(learn, k=4, ncols=2, show=lambda x, ax: drawn.append(x) or ax.plot(x.numpy()))
    ranked = cb.report(sort=True).head(4)
    x = make_data()[0]
    for sample, position in zip(drawn, ranked.index):
        torch.testing.assert_close(sample, x[position])
    assert len(fig.axes) == 4
    with pytest.raises(TypeError, match="needs a DynamicBootstrapMixUp"):
        plot_top_suspects(object())


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """A few hundred of scikit-learn's digits as 8x8 PNG files in class folders, 30% of the
    training ones filed under a wrong class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from lnc_sklearn import symmetric_noise

    root = tmp_path_factory.mktemp("digits")
    images, labels = load_digits(return_X_y=True)
    images = (images.reshape(-1, 8, 8) * (255 / 16)).round().astype(np.uint8)[:400]
    labels = labels[:400]
    noisy, changed = symmetric_noise(labels[:300], 0.3, include_true_class=False, random_state=0)
    filed = np.concatenate([noisy, labels[300:]])
    for i, (image, label) in enumerate(zip(images, filed)):
        folder = root / ("train" if i < 300 else "valid") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{i:03d}.png")
    truly_wrong = {f"{i:03d}.png" for i in np.flatnonzero(changed)}
    return root, truly_wrong


def test_image_files_report_and_top_suspects_grid(digit_files, tmp_path):
    from fastai.vision.all import (
        CategoryBlock,
        DataBlock,
        GrandparentSplitter,
        ImageBlock,
        Learner,
        PILImageBW,
        accuracy,
        get_image_files,
        parent_label,
    )

    root, truly_wrong = digit_files
    block = DataBlock(
        blocks=(ImageBlock(cls=PILImageBW), CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=GrandparentSplitter(train_name="train", valid_name="valid"),
    )
    dls = block.dataloaders(root, bs=32, num_workers=0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 64, len(dls.vocab))
    )
    items = [str(path) for path in dls.train.items]
    mask = np.array([path.rsplit("/", 1)[-1] in truly_wrong for path in items])
    cb = DynamicBootstrapMixUp(mode="paper", warmup=2, noise_mask=mask)
    learn = Learner(dls, model, metrics=accuracy, cbs=cb)
    quiet_fit(learn, epochs=3, lr=1e-2)

    report = cb.report()
    assert list(report["item"]) == items  # file paths, in the dataset's order
    assert set(report["given_class"]) <= set(dls.vocab)
    assert [name == str(path).split("/")[-2] for name, path in zip(report["given_class"], items)] == [True] * len(items)

    fig = cb.plot_top_suspects(k=6, ncols=3, path=tmp_path / "suspects.png")
    top = cb.report(sort=True).head(6)
    tiles = [ax for ax in fig.axes if ax.images]
    assert len(tiles) == 6
    for ax, (_, row) in zip(tiles, top.iterrows()):
        title = ax.get_title()
        assert title.startswith(f"{row['given_class']} -> {row['predicted_class']}")
        assert f"p_noisy {row['p_noisy']:.2f}" in title
        assert ax.images[0].get_array().shape[:2] == (8, 8)
    assert (tmp_path / "suspects.png").read_bytes()[:8] == PNG_MAGIC
