"""Real image data for the examples and benchmarks as fastai DataLoaders (per-sample, or whole tensors kept on the device).

Reads ``mnist.npz``, ``fashion_mnist.npz`` or ``cifar10_jpeg.npz`` (official order and labels)
from ``--data-dir``, else ``$LNC_DATA_DIR``. Where
neither is given, MNIST and CIFAR-10 come from fastai's ``untar_data`` (needs a network; the order
is then the folders' sorted order, not the official one).
"""

import io
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fastai.data.core import DataLoaders, Datasets, TfmdDL
from fastai.torch_core import TensorCategory, TensorImage
from fastai.data.transforms import IntToFloatTensor, Normalize, Transform

FILES = {"mnist": "mnist.npz", "fashion_mnist": "fashion_mnist.npz", "cifar10": "cifar10_jpeg.npz"}
CLASSES = {
    "digits": [str(i) for i in range(10)],
    "synthetic": [str(i) for i in range(10)],
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def data_dir(arg=None):
    """The data folder: ``arg``, else ``$LNC_DATA_DIR``; None if neither names a folder."""
    path = arg or os.environ.get("LNC_DATA_DIR")
    return Path(path) if path and Path(path).is_dir() else None


def _decode_jpegs(jpeg, offsets):
    from PIL import Image

    return np.stack(
        [np.asarray(Image.open(io.BytesIO(jpeg[offsets[i] : offsets[i + 1]].tobytes())).convert("RGB")) for i in range(len(offsets) - 1)]
    )


def _from_untar_data(dataset):
    from fastai.data.external import URLs, untar_data
    from PIL import Image

    if dataset == "fashion_mnist":
        raise SystemExit("fashion_mnist.npz not found and fastai has no download for it: give --data-dir or set LNC_DATA_DIR")
    root = untar_data(URLs.MNIST if dataset == "mnist" else URLs.CIFAR)
    splits = ("training", "testing") if dataset == "mnist" else ("train", "test")
    arrays = []
    for split in splits:
        files = sorted((root / split).glob("*/*.png"))
        names = sorted({f.parent.name for f in files})
        images = np.stack([np.asarray(Image.open(f)) for f in files])
        arrays += [images, np.asarray([names.index(f.parent.name) for f in files])]
    return arrays


def _digits():
    """scikit-learn's 8x8 digits (ships with it): a stratified 70/30 split, pixels as uint8."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    images = (images.reshape(-1, 8, 8) * (255 / 16)).round().astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(images, labels, test_size=0.3, stratify=labels, random_state=0)
    return x_train, y_train, x_test, y_test


def _synthetic(n_train=5000, n_test=1000, seed=0):
    """CIFAR-shaped stand-ins for smoke tests: random 32x32x3 uint8 images whose class c
    brightens channel c % 3 by 12 c, so that a network can learn them in an epoch or two."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n_train + n_test)
    images = rng.integers(0, 128, (len(labels), 32, 32, 3))
    images[np.arange(len(labels)), :, :, labels % 3] += 12 * labels[:, None, None]
    images = images.clip(0, 255).astype(np.uint8)
    return images[:n_train], labels[:n_train], images[n_train:], labels[n_train:]


def load_arrays(dataset, directory=None):
    """``(x_train, y_train, x_test, y_test)``: uint8 images (N, H, W) or (N, H, W, 3), int64 labels.
    ``"synthetic"`` gives CIFAR-shaped random images for smoke tests (no data needed)."""
    if dataset == "digits":
        return _digits()
    if dataset == "synthetic":
        return _synthetic()
    if dataset not in FILES:
        raise SystemExit(f"unknown dataset {dataset!r}; choose from {sorted(CLASSES)}")
    directory = data_dir(directory)
    if directory is None or not (directory / FILES[dataset]).is_file():
        return _from_untar_data(dataset)
    path = directory / FILES[dataset]
    try:
        raw = np.load(path, allow_pickle=False)
        keys = ("train_jpeg", "train_offsets", "y_train", "test_jpeg", "test_offsets", "y_test") if dataset == "cifar10" else (
            "x_train", "y_train", "x_test", "y_test")
        missing = [key for key in keys if key not in raw.files]
    except (OSError, ValueError) as error:
        raise SystemExit(f"{path} is not a readable .npz file: {error}") from None
    if missing:
        raise SystemExit(f"{path} lacks the arrays {missing}; see the data folder's README for the expected layout")
    if dataset == "cifar10":
        return (_decode_jpegs(raw["train_jpeg"], raw["train_offsets"]), raw["y_train"],
                _decode_jpegs(raw["test_jpeg"], raw["test_offsets"]), raw["y_test"])
    return raw["x_train"], raw["y_train"], raw["x_test"], raw["y_test"]


def as_float_images(images):
    """uint8 (N, H, W[, 3]) to float32 (N, C, H, W) in [0, 1]."""
    images = torch.from_numpy(np.ascontiguousarray(images))
    images = images[:, None] if images.ndim == 3 else images.permute(0, 3, 1, 2)
    return images.float().div_(255.0)


class PadCropFlip(Transform):
    """Training-only batch augmentation on the device: random crop after zero padding (per
    sample) and horizontal flip, as in the paper's CIFAR runs."""

    split_idx, order = 0, 20

    def __init__(self, pad=2, flip=True):
        super().__init__()
        self.pad, self.flip = pad, flip

    def encodes(self, x: TensorImage):
        n, c, h, w = x.shape
        p, device = self.pad, x.device
        padded = F.pad(x.as_subclass(torch.Tensor), (p, p, p, p))
        rows = torch.randint(0, 2 * p + 1, (n, 1), device=device) + torch.arange(h, device=device)
        cols = torch.randint(0, 2 * p + 1, (n, 1), device=device) + torch.arange(w, device=device)
        out = padded[
            torch.arange(n, device=device)[:, None, None, None],
            torch.arange(c, device=device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
        if self.flip:
            out = torch.where(torch.rand(n, 1, 1, 1, device=device) < 0.5, out.flip(-1), out)
        return TensorImage(out)


def image_dataloaders(train_images, train_labels, test_images, test_labels, bs=128, augment=True, device=None):
    """fastai DataLoaders over in-memory images: train (shuffled, augmented) and test.

    Items are dataset indices, so the callback's report lists each sample's index in the
    training array; validation-time transforms (no augmentation) apply to the test set and to
    the callback's per-epoch loss pass.
    """
    images = torch.cat([train_images, test_images])
    labels = torch.from_numpy(np.concatenate([train_labels, test_labels])).long()
    n_train = len(train_images)
    datasets = Datasets(
        range(len(images)),
        tfms=[[lambda i: TensorImage(images[i])], [lambda i: TensorCategory(labels[i])]],
        splits=[list(range(n_train)), list(range(n_train, len(images)))],
    )
    after_batch = [PadCropFlip()] if augment else []
    return datasets.dataloaders(bs=bs, val_bs=512, after_batch=after_batch, drop_last=True, device=device)


class Rows:
    """A dataset of row numbers into tensors held elsewhere, with fastai's split switch (the
    callback's loss pass sets split 1 so that training-only transforms stay off)."""

    def __init__(self, rows, split_idx):
        self.items, self.split_idx = list(rows), split_idx

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    @contextmanager
    def set_split_idx(self, split_idx):
        old, self.split_idx = self.split_idx, split_idx
        try:
            yield self
        finally:
            self.split_idx = old


class TensorBatchDL(TfmdDL):
    """A fastai DataLoader that cuts each batch out of whole image and label tensors by indexing
    (no per-sample collation, no worker processes). With the tensors on the GPU, the data never
    leaves it: batches, augmentation (``after_batch``) and normalisation all run there."""

    def __init__(self, dataset, images=None, labels=None, **kwargs):
        self.images, self.labels = images, labels
        super().__init__(dataset, **{**kwargs, "num_workers": 0})

    def create_batch(self, rows):
        # Copied without waiting: a blocking copy to the GPU would stall the host every batch.
        rows = torch.as_tensor(rows).to(self.images.device, non_blocking=True)
        return TensorImage(self.images[rows]), TensorCategory(self.labels[rows])

    def new(self, dataset=None, cls=None, **kwargs):
        return super().new(dataset, cls, images=self.images, labels=self.labels, **kwargs)


class ChannelsLast(Transform):
    """Batches in channels-last memory order, which tensor cores run convolutions fastest in."""

    order = 100

    def encodes(self, x: TensorImage):
        return x.contiguous(memory_format=torch.channels_last)


def tensor_dataloaders(train_images, train_labels, test_images, test_labels, bs=128, pad=4, device=None,
                       channels_last=False, val_bs=512, more=()):
    """DataLoaders over uint8 images (N, H, W, 3) kept whole on ``device``: per batch, uint8 to
    float, random crop after ``pad`` zero pixels and horizontal flip (training only), then
    per-channel normalisation with the training set's statistics. ``more``: further
    ``(images, labels)`` pairs, each a loader transformed as the validation one (``dls[2]``, ...),
    e.g. a test set scored apart from a held-out validation split."""
    device = torch.device(device or "cpu")
    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    parts = [(train_images, train_labels), (test_images, test_labels), *more]
    images = torch.cat([to_tensor(x) for x, _ in parts])
    images = (images[..., None] if images.ndim == 3 else images).permute(0, 3, 1, 2).contiguous().to(device)  # NCHW
    labels = torch.cat([to_tensor(y) for _, y in parts]).long().to(device)
    n_train = len(train_images)
    train_float = images[:n_train].float().div_(255)
    mean, std = train_float.mean(dim=(0, 2, 3)), train_float.std(dim=(0, 2, 3))
    del train_float
    after_batch = [IntToFloatTensor(), PadCropFlip(pad), Normalize.from_stats(mean, std, cuda=device.type == "cuda")]
    if channels_last:
        after_batch.append(ChannelsLast())
    common = dict(images=images, labels=labels, after_batch=after_batch, device=device)
    train = TensorBatchDL(Rows(range(n_train), 0), bs=bs, shuffle=True, drop_last=True, **common)
    ends = np.cumsum([len(x) for x, _ in parts])
    others = [TensorBatchDL(Rows(range(start, end), 1), bs=val_bs, **common) for start, end in zip(ends[:-1], ends[1:])]
    return DataLoaders(train, *others, device=device)
