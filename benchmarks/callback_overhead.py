"""Seconds per training epoch: DynamicBootstrapMixUp after warm-up against fastai's MixUp.

Same model, data and batches for each method, in one process, epochs interleaved round-robin so
that drifts of a shared machine hit every method alike. An epoch is timed from ``before_train``
to the end of ``after_train``: the training batches plus, for the bootstrapping callbacks, the
per-epoch pass over the training set and the detector's refit (validation is left out, being
the same for all). Variants:

- ``fastai MixUp``: the baseline (one forward and one backward per batch).
- ``DynamicBootstrapMixUp``: one extra forward without gradients per batch; p(noisy) read from
  the posterior table on the device.
- ``reference-style``: as the reference code: a train-mode forward on the un-mixed batch for the
  targets (moving BatchNorm statistics) and another eval-mode forward for the losses, which go to
  the CPU every batch for the detector's posterior.

Run: ``python benchmarks/callback_overhead.py --dataset fashion_mnist --n-train 10000 --rounds 3``
(the paper's network: ``--dataset cifar10 --model preact-resnet18 --width 16``)
"""

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "examples")]
from _images import as_float_images, image_dataloaders, load_arrays, small_cnn  # noqa: E402
from preact_resnet import PreActResNet18  # noqa: E402
from benchmarks._report import markdown_table, write_results  # noqa: E402
from fastai.basics import Callback, CrossEntropyLossFlat, Learner  # noqa: E402
from fastai.callback.mixup import MixUp  # noqa: E402
from lnc_fastai import DynamicBootstrapMixUp  # noqa: E402
from lnc_fastai.callback import eval_mode  # noqa: E402
from lnc_fastai.losses import bootstrap_targets  # noqa: E402
from lnc_fastai.posterior_table import noisy_probability  # noqa: E402
from lnc_sklearn import symmetric_noise  # noqa: E402


class ReferenceStyleBootstrap(DynamicBootstrapMixUp):
    """The reference code's per-batch work: two extra forwards and a GPU-to-CPU round trip."""

    def noise_weights_and_targets(self, xb, labels):
        with torch.no_grad():
            targets = bootstrap_targets(self.model(*xb).float(), self.bootstrap)  # train mode
        with torch.no_grad(), eval_mode(self.model):
            losses = F.cross_entropy(self.model(*xb).float(), labels, reduction="none")
        weights = noisy_probability(self.detector, losses.cpu().numpy())
        return torch.from_numpy(weights).float().to(labels.device), targets


def time_tracking(cb):
    """Record the seconds of each per-epoch loss pass and refit of a bootstrapping callback."""
    cb.tracking_seconds, track = [], cb._track_and_refit

    def timed():
        start = time.perf_counter()
        track()
        cb.tracking_seconds.append(time.perf_counter() - start)

    cb._track_and_refit = timed


class TrainTimer(Callback):
    """Wall time of each epoch's training part; its two halves run first and last."""

    def __init__(self):
        self.seconds = []

    def start(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def stop(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self._start)


class _Start(Callback):
    order = -1000

    def __init__(self, timer):
        self.timer = timer

    def before_train(self):
        self.timer.start()


class _Stop(Callback):
    order = 1000

    def __init__(self, timer):
        self.timer = timer

    def after_train(self):
        self.timer.stop()


def make_learner(callback, data, args):
    x_train, noisy, x_test, y_test = data
    torch.manual_seed(args.seed)
    dls = image_dataloaders(x_train, noisy, x_test, y_test, bs=args.bs)
    timer = TrainTimer()
    model = small_cnn(x_train.shape[1]) if args.model == "small-cnn" else PreActResNet18(width=args.width, in_channels=x_train.shape[1])
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=[callback, _Start(timer), _Stop(timer)])
    return learn, timer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", choices=["mnist", "fashion_mnist", "cifar10"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--bs", type=int, default=128)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--model", default="small-cnn", choices=["small-cnn", "preact-resnet18"])
    parser.add_argument("--width", type=int, default=16, help="preact-resnet18's first-stage channels (64 in the paper)")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per method")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)

    x_train, y_train, x_test, y_test = load_arrays(args.dataset, args.data_dir)
    noisy, _ = symmetric_noise(y_train[: args.n_train], args.noise, n_classes=10, random_state=args.seed)
    data = (as_float_images(x_train[: args.n_train]), noisy, as_float_images(x_test[: args.n_test]), y_test[: args.n_test])
    variants = {
        "fastai MixUp": MixUp(alpha=32.0),
        "DynamicBootstrapMixUp": DynamicBootstrapMixUp(warmup=0),
        "reference-style": ReferenceStyleBootstrap(warmup=0),
    }
    for cb in variants.values():
        if isinstance(cb, DynamicBootstrapMixUp):
            time_tracking(cb)
    learners = {name: make_learner(cb, data, args) for name, cb in variants.items()}
    device = next(iter(learners.values()))[0].dls.device
    # One untimed epoch each: warm caches, and give the bootstrapping callbacks a fitted detector
    # (with warmup=0 every later fit bootstraps from its first batch).
    for learn, timer in learners.values():
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 1e-2)
        timer.seconds.clear()
    for cb in variants.values():
        if hasattr(cb, "tracking_seconds"):
            cb.tracking_seconds.clear()
    for _ in range(args.rounds):
        for learn, _timer in learners.values():
            with learn.no_bar(), learn.no_logging():
                learn.fit(1, 1e-2)
    base = statistics.median(learners["fastai MixUp"][1].seconds)
    rows = []
    for name, (learn, timer) in learners.items():
        median = statistics.median(timer.seconds)
        tracking = getattr(variants[name], "tracking_seconds", None)
        rows.append({"variant": name, "median s/epoch": median, "ratio to MixUp": median / base,
                     "of which loss pass + refit": statistics.median(tracking) if tracking else 0.0,
                     "epochs timed": ", ".join(f"{s:.2f}" for s in timer.seconds)})
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False))
    # What any per-epoch loss pass must at least spend: the bare forward over the training set.
    model, images = learners["DynamicBootstrapMixUp"][0].model, data[0].to(device)
    with torch.inference_mode(), eval_mode(model):
        start = time.perf_counter()
        for i in range(0, len(images), 4 * args.bs):
            model(images[i : i + 4 * args.bs])
        if device.type == "cuda":
            torch.cuda.synchronize()
        bare_forward = time.perf_counter() - start
    lines = [
        f"Data: first {args.n_train} {args.dataset} training images ({args.noise:g} symmetric noise), batch "
        f"{args.bs}, random crop and flip on the batch; "
        + ("small CNN from `examples/_images.py`" if args.model == "small-cnn" else f"PreAct ResNet-18 at width {args.width} (`examples/preact_resnet.py`)")
        + f"; device: {device}. "
        "Timed: training batches plus, for the bootstrapping variants, the per-epoch loss pass over the "
        "training set and the detector refit. Median of the timed epochs, after one untimed epoch each; "
        "variants interleaved round-robin in one process.",
        "",
        markdown_table(frame, "{:.3f}"),
        "",
        f"For scale: a bare eval-mode forward over the {args.n_train} training images (tensors already in "
        f"memory, no data pipeline, batch {4 * args.bs}) takes {bare_forward:.3f} s = "
        f"{bare_forward / base:.2f} of a MixUp epoch on this device. The loss pass costs at least that, "
        "and the extra forward per batch about as much again.",
    ]
    model_tag = "" if args.model == "small-cnn" else f"_{args.model}_w{args.width}"
    path = write_results(f"callback_overhead_{args.dataset}{model_tag}_{'gpu' if device.type == 'cuda' else 'cpu'}.md",
                         "DynamicBootstrapMixUp overhead per epoch", lines)
    print(f"written {path}")


if __name__ == "__main__":
    main()
