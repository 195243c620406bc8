"""Train through label noise with fastai: plain training, fastai's MixUp, DynamicBootstrapMixUp.

scikit-learn's digits (ships with scikit-learn, no download) with symmetric label noise
injected into the training part; the same small network, schedule and seed for each method;
accuracy on the clean held-out digits. Then the samples the callback suspects most.
Runs in about a minute on a CPU.

Run: ``python examples/fastai_quickstart.py [--noise 0.6] [--epochs 40]``
"""

import argparse
import time
import warnings

import numpy as np
import torch
from fastai.basics import CrossEntropyLossFlat, DataLoaders, Learner, accuracy
from fastai.callback.mixup import MixUp
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (adds Learner.fit_one_cycle)
from fastai.data.load import DataLoader
from fastai.torch_core import set_seed
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from lnc_fastai import DynamicBootstrapMixUp
from lnc_sklearn import symmetric_noise


def digits_dataloaders(noise, seed, bs=64):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        (X / 16.0).astype(np.float32), y, test_size=0.3, stratify=y, random_state=seed
    )
    noisy, changed = symmetric_noise(y_train, noise, n_classes=10, random_state=seed)
    as_dataset = lambda X, y: list(zip(torch.from_numpy(X), torch.from_numpy(y).long()))  # noqa: E731
    dls = DataLoaders(
        DataLoader(as_dataset(X_train, noisy), bs=bs, shuffle=True, drop_last=True),
        DataLoader(as_dataset(X_test, y_test), bs=512),
    )
    return dls, noisy, y_train, changed


def network():
    return nn.Sequential(
        nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(),
        nn.Linear(256, 10),
    )


def train(method, dls, epochs, lr, seed, changed):
    set_seed(seed)  # torch, numpy and Python's random (fastai's DataLoader seeds its shuffling from the last)
    callbacks = {
        "cross-entropy": [],
        "fastai MixUp": [MixUp(alpha=0.4)],
        "DynamicBootstrapMixUp": [DynamicBootstrapMixUp(noise_mask=changed)],  # lnc's default mode
    }[method]
    learn = Learner(dls, network(), loss_func=CrossEntropyLossFlat(), metrics=accuracy, cbs=callbacks)
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, lr)
    accuracies = [row[2] for row in learn.recorder.values]
    return learn, accuracies, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=0.6, help="symmetric noise rate (paper convention)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=10, help="suspects to list")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="fastai")

    dls, noisy, true, changed = digits_dataloaders(args.noise, args.seed)
    print(f"digits: {len(noisy)} training samples, {changed.mean():.1%} of their labels wrong; "
          f"{len(dls.valid.dataset)} clean test samples\n")
    print(f"{'method':<24}{'last acc':>9}{'best acc':>9}{'seconds':>9}")
    for method in ("cross-entropy", "fastai MixUp", "DynamicBootstrapMixUp"):
        learn, accuracies, seconds = train(method, dls, args.epochs, args.lr, args.seed, changed)
        print(f"{method:<24}{accuracies[-1]:>9.3f}{max(accuracies):>9.3f}{seconds:>9.1f}")

    cb = learn.dynamic_bootstrap_mix_up
    history = cb.history
    print(f"\ndetector, last epoch: estimated noise fraction {history['noise_fraction'].iloc[-1]:.3f} "
          f"(true {changed.mean():.3f}), ROC-AUC {history['auc'].iloc[-1]:.3f}")
    report = cb.report().assign(true_label=true).sort_values("rank")
    print(f"\nthe {args.top} most suspect training samples:")
    columns = ["item", "given_label", "predicted_label", "true_label", "loss", "p_noisy", "noise_mask"]
    print(report[columns].head(args.top).to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
