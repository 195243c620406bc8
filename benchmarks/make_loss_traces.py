"""Per-sample training-loss traces from real noisy-label training, for detector benchmarks.

Trains a network with plain cross-entropy (SGD, no correction) on real data with injected
label noise, and after every epoch records each training sample's cross-entropy against its
noisy label and its softmax output (eval mode, no augmentation), as the training callback's
loss pass sees them. Saves one ``.npz`` per run with ``losses`` (epochs x samples, float32),
``probs`` (epochs x samples x classes, float16), ``noisy_labels``, ``true_labels`` and
``noise_mask`` (the true noise mask).

Noise: ``sym`` relabels a fraction R of the samples to one of the *other* classes (so R of the
labels are wrong); ``asym`` flips a fraction R of some classes to a fixed similar class
(``ASYMMETRIC``: the usual CIFAR-10 pairs; MNIST 2->7, 3->8, 5<->6, 7->1; Fashion-MNIST
T-shirt->shirt, pullover->coat, sandal->sneaker, ankle boot->sneaker), so fewer than R of all
labels are wrong; ``pair`` flips a fraction R of every class to the next one (i -> i+1 mod 10).
Models: ``cnn`` (two conv blocks), ``resnet`` (PreAct ResNet-18, width 16) or ``mlp`` (two
hidden layers of 256). ``--offset`` starts at another training image than the first.

Data (``mnist.npz``, ``fashion_mnist.npz``, ``cifar10_jpeg.npz``) is read from
``--data-dir``, else ``$LNC_DATA_DIR``.

Run: ``python benchmarks/make_loss_traces.py --dataset mnist --noise 0 0.05 0.1 0.2 --type sym``
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lnc_experiments.data import as_float_images, load_arrays
from lnc_experiments.models import PreActResNet18
from lnc_sklearn import CIFAR10_ASYMMETRIC, asymmetric_noise, symmetric_noise

REPO = Path(__file__).resolve().parents[1]

ASYMMETRIC = {
    "cifar10": CIFAR10_ASYMMETRIC,
    "mnist": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},
    "fashion_mnist": {0: 6, 2: 4, 5: 7, 9: 7},
}


def load_images(data_dir, dataset, n_train, offset=0):
    """``n_train`` training images from ``offset`` on (N, C, H, W float32 in [0, 1]) and labels."""
    x_train, y_train, _, _ = load_arrays(dataset, data_dir)
    part = slice(offset, offset + n_train)
    return as_float_images(x_train[part]), np.asarray(y_train[part], dtype=np.int64)


def small_cnn(channels):
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.LazyLinear(128), nn.ReLU(), nn.Linear(128, 10),
    )


def make_model(name, channels):
    if name == "resnet":
        return PreActResNet18(width=16, in_channels=channels)
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    return small_cnn(channels)


@torch.inference_mode()
def losses_and_probs(model, images, labels, batch=1024):
    model.eval()
    logits = torch.cat([model(images[i : i + batch]) for i in range(0, len(labels), batch)])
    losses = nn.functional.cross_entropy(logits, labels, reduction="none")
    return losses.numpy(), torch.softmax(logits, 1).numpy()


def train_trace(images, noisy, epochs, seed, lr, model_name, true_labels):
    torch.manual_seed(seed)
    model = make_model(model_name, images.shape[1])
    model(images[:2])  # materialise a lazy layer
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    targets = torch.from_numpy(noisy)
    losses, probs = [], []
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        for idx in torch.randperm(len(targets), generator=generator).split(128):
            loss = nn.functional.cross_entropy(model(images[idx]), targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        epoch_losses, epoch_probs = losses_and_probs(model, images, targets)
        losses.append(epoch_losses)
        probs.append(epoch_probs.astype(np.float16))
        clean_acc = (epoch_probs.argmax(1) == true_labels).mean()
        print(f"  epoch {epoch + 1}: mean loss {epoch_losses.mean():.3f}, accuracy on the true "
              f"labels {clean_acc:.3f} ({time.perf_counter() - start:.1f}s)", flush=True)
    return np.stack(losses).astype(np.float32), np.stack(probs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["mnist", "fashion_mnist", "cifar10"], default="fashion_mnist")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.2, 0.5, 0.8])
    parser.add_argument("--type", choices=["sym", "asym", "pair"], default="sym")
    parser.add_argument("--model", choices=["cnn", "resnet", "mlp"], default="cnn")
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--offset", type=int, default=0, help="the first training image used")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "traces"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    images, labels = load_images(args.data_dir, args.dataset, args.n_train, args.offset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in args.seed:
        for rate in args.noise:
            if args.type == "sym":
                noisy, noise_mask = symmetric_noise(labels, rate, include_true_class=False, random_state=seed)
            else:
                mapping = ASYMMETRIC[args.dataset] if args.type == "asym" else {c: (c + 1) % 10 for c in range(10)}
                noisy, noise_mask = asymmetric_noise(labels, rate, mapping, random_state=seed)
            print(f"{args.dataset}, {rate:.0%} {args.type} noise ({noise_mask.mean():.1%} wrong), seed {seed}")
            losses, probs = train_trace(images, noisy, args.epochs, seed, args.lr, args.model, labels)
            start = f"_o{args.offset}" if args.offset else ""
            name = f"{args.dataset}_{args.model}{start}_{args.type}{int(round(rate * 100))}_s{seed}.npz"
            path = out / name
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez_compressed(tmp, losses=losses, probs=probs, noisy_labels=noisy, true_labels=labels,
                                noise_mask=noise_mask)
            tmp.replace(path)
            print(f"  saved {path}")


if __name__ == "__main__":
    main()
