"""Per-sample training-loss traces from real noisy-label training, for detector benchmarks.

Trains a small CNN with plain cross-entropy (SGD, no correction) on real data with injected
symmetric label noise, and after every epoch records each training sample's cross-entropy
against its noisy label (eval mode, no augmentation), as the training callback will. Saves
one ``.npz`` per run with ``losses`` (epochs x samples, float32), ``noisy_labels``,
``true_labels`` and ``changed`` (the true noise mask).

Data (``mnist.npz``, ``fashion_mnist.npz``, ``cifar10_jpeg.npz``) is read from
``--data-dir``, else ``$LNC_DATA_DIR``.

Run: ``python benchmarks/make_loss_traces.py --dataset fashion_mnist --noise 0.2 0.5 0.8``
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lnc_experiments.data import as_float_images, load_arrays
from lnc_sklearn import symmetric_noise

REPO = Path(__file__).resolve().parents[1]


def load_images(data_dir, dataset, n_train):
    """First ``n_train`` training images (N, C, H, W float32 in [0, 1]) and labels."""
    x_train, y_train, _, _ = load_arrays(dataset, data_dir)
    return as_float_images(x_train[:n_train]), np.asarray(y_train[:n_train], dtype=np.int64)


def small_cnn(channels):
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.LazyLinear(128), nn.ReLU(), nn.Linear(128, 10),
    )


@torch.inference_mode()
def per_sample_losses(model, images, labels, batch=1024):
    model.eval()
    out = [
        nn.functional.cross_entropy(model(images[i : i + batch]), labels[i : i + batch], reduction="none")
        for i in range(0, len(labels), batch)
    ]
    return torch.cat(out).numpy()


def train_trace(images, noisy, epochs, seed, lr):
    torch.manual_seed(seed)
    model = small_cnn(images.shape[1])
    model(images[:2])  # materialise the lazy layer
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    targets = torch.from_numpy(noisy)
    losses = []
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        for idx in torch.randperm(len(targets), generator=generator).split(128):
            loss = nn.functional.cross_entropy(model(images[idx]), targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(per_sample_losses(model, images, targets))
        print(f"  epoch {epoch + 1}: mean loss {losses[-1].mean():.3f} "
              f"({time.perf_counter() - start:.1f}s)", flush=True)
    return np.stack(losses).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["mnist", "fashion_mnist", "cifar10"], default="fashion_mnist")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.5, 0.8])
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "traces"))
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    images, labels = load_images(args.data_dir, args.dataset, args.n_train)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for rate in args.noise:
        noisy, changed = symmetric_noise(labels, rate, random_state=args.seed)
        print(f"{args.dataset}, {rate:.0%} symmetric noise ({changed.mean():.1%} wrong)")
        losses = train_trace(images, noisy, args.epochs, args.seed, args.lr)
        path = out / f"{args.dataset}_sym{int(round(rate * 100))}.npz"
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez_compressed(tmp, losses=losses, noisy_labels=noisy, true_labels=labels, noise_mask=changed)
        tmp.replace(path)
        print(f"  saved {path}")


if __name__ == "__main__":
    main()
