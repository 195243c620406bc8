"""Train through label noise in a hand-written PyTorch loop, without fastai.

scikit-learn's digits (embedded, no download), 40% of the training labels replaced by another
class, a small MLP, one-cycle learning rate. The loop hands each batch's dataset indices to
:class:`lnc_fastai.NoiseCorrection`, makes a loss pass after every epoch, validates on a split
whose labels are as noisy as the training labels, and lets the policy plan the next epoch.
Cross-entropy is trained on the same data, order and seed for comparison.

Run: ``python examples/plain_pytorch.py`` (about 20 seconds on a CPU).
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lnc_fastai import NoiseCorrection, loss_pass
from lnc_sklearn import symmetric_noise


def data(noise, seed):
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    train, rest = train_test_split(np.arange(len(y)), test_size=0.4, random_state=seed, stratify=y)
    valid, test = train_test_split(rest, test_size=0.5, random_state=seed, stratify=y[rest])
    noisy = y.copy()
    noisy[train], changed = symmetric_noise(y[train], noise, n_classes=10, include_true_class=False, random_state=seed)
    noisy[valid], _ = symmetric_noise(y[valid], noise, n_classes=10, include_true_class=False, random_state=seed + 1)
    labels = torch.tensor(noisy)
    # the training set yields (x, y, index): the index tells the correction which samples a batch holds
    train_set = TensorDataset(x[train], labels[train], torch.arange(len(train)))
    return train_set, (x[valid], labels[valid]), (x[test], torch.tensor(y[test])), changed


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(method, train_set, valid, test, epochs, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    loader = DataLoader(train_set, batch_size=64, shuffle=True, drop_last=True)
    in_order = DataLoader(train_set, batch_size=256, shuffle=False)  # the loss pass: dataset order
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=epochs * len(loader))
    correction = NoiseCorrection() if method == "lnc" else None
    if correction is not None:
        correction.start(epochs)
    history = []
    for epoch in range(epochs):
        plan = correction.epoch_plan(epoch) if correction is not None else None
        model.train()
        for x, y, idx in loader:
            if correction is None:
                loss = F.cross_entropy(model(x), y)
            else:
                loss = correction.training_loss(model, x, y, idx, plan)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        history.append(accuracy(model, *valid))  # against the noisy validation labels
        if correction is not None:
            correction.observe(epoch, *loss_pass(model, in_order))
            next_plan = correction.update(epoch, history)
            print(f"  {next_plan.reason}")
    return accuracy(model, *test)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise", type=float, default=0.4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train_set, valid, test, changed = data(args.noise, args.seed)
    print(f"digits: {len(train_set)} training images, {changed.mean():.0%} of their labels wrong")
    print("lnc (NoiseCorrection in a plain PyTorch loop), the policy's reasons after each pass:")
    lnc = train("lnc", train_set, valid, test, args.epochs, args.seed)
    ce = train("ce", train_set, valid, test, args.epochs, args.seed)
    print(f"test accuracy, clean labels: cross-entropy {ce:.3f}, lnc {lnc:.3f}")


if __name__ == "__main__":
    main()
