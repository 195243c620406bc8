"""Arazo et al.'s CIFAR-10 experiments with fastai: PreAct ResNet-18 under label noise.

Methods: plain cross-entropy (``ce``), fastai's ``MixUp`` (``mixup``), and
``DynamicBootstrapMixUp`` as M-DYR-H (``m-dyr-h``), M-DYR-S (``m-dyr-s``), MD-DYR-SH
(``md-dyr-sh``: mixing weights from the detector, soft targets sharpened towards hard ones; the
paper's choice at 90% noise) and with no arguments at all (``default``: whatever
``DynamicBootstrapMixUp()`` does, with its own warm-up fraction in either schedule). Noise: symmetric (paper convention: a fraction r of the samples gets
a uniformly random label, its true class included) or asymmetric (truck -> automobile, bird ->
airplane, deer -> horse, cat <-> dog), or a label array of your own (``--labels file.npy``, one
int per training image in the official order; it replaces the injected noise and is compared with
the official labels to measure detection).

Schedules:
  paper      SGD (momentum 0.9, weight decay 1e-4 on every parameter), batch 128, lr 0.1 divided
             by 10 at 1/3 and 5/6 of the run (epochs 100 and 250 of 300); plain mixup until
             epoch 105 of 300, bootstrapping from epoch 106; MD-DYR-SH mixes by the detector
             from epoch 106, bootstraps from 111 and sharpens over 111-199 (1-based, as the
             reference code).
             Every epoch figure scales with ``--epochs`` (300 by default).
  one-cycle  ``fit_one_cycle(--epochs, --lr)`` with the same SGD (fastai cycles its momentum),
             weight decay 5e-4; warm-up 35% of the run.

Data stay on the training device as uint8; each batch is indexed out of them, augmented there
(random crop after 4-pixel zero padding, horizontal flip) and normalised, so a GPU never waits
for the CPU. On CUDA, mixed precision and channels-last memory are on by default.

Validation: the test set with its clean labels, unless ``--n-valid N`` holds out the N training
images after the first ``--n-train`` as a validation split whose labels are as noisy as the
training labels (a user's would be; lnc's default reads the validation accuracy under heavy
noise), and scores the test set after every epoch apart from it.

Data: ``--data-dir``, else ``$LNC_DATA_DIR`` (a folder holding ``cifar10_jpeg.npz``); with
neither, fastai's ``untar_data(URLs.CIFAR)`` (network needed).

Run (full paper schedule, GPU):  ``python examples/cifar10.py --method m-dyr-h --noise 0.8``
Short schedule:  ``python examples/cifar10.py --schedule one-cycle --epochs 30 --method m-dyr-h --noise 0.8``
Small CPU run:  ``python examples/cifar10.py --schedule one-cycle --epochs 2 --n-train 2000 --n-test 1000 --width 16``
"""

import argparse
import json
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from fastai.basics import Callback, CrossEntropyLossFlat, Learner, accuracy
from fastai.callback.channelslast import ChannelsLast  # noqa: F401  (adds Learner.to_channelslast)
from fastai.callback.fp16 import MixedPrecision  # noqa: F401  (adds Learner.to_fp16)
from fastai.callback.mixup import MixUp
from fastai.callback.schedule import ParamScheduler, fit_one_cycle  # noqa: F401
from fastai.optimizer import SGD
from fastai.torch_core import set_seed

from lnc_experiments.data import CLASSES, load_arrays, tensor_dataloaders
from lnc_experiments.models import PreActResNet18
from lnc_experiments.results import callback_history
from lnc_experiments.validation import ScoreTestSet, validation_seed
from lnc_fastai import DynamicBootstrapMixUp
from lnc_sklearn import CIFAR10_ASYMMETRIC, asymmetric_noise, symmetric_noise
from lnc_sklearn._atomic import atomic_path

METHODS = ("ce", "mixup", "m-dyr-h", "m-dyr-s", "md-dyr-sh", "default")
PAPER_EPOCHS = 300  # the paper's run, which its milestones below are 0-based epochs of
PAPER_MILESTONES = (100, 250)
PAPER_WARMUP = 105
PAPER_BOOTSTRAP_SH = 110  # MD-DYR-SH: detector mixing alone from 105, bootstrapping from 110
PAPER_SHARPENING = (110, 198)


class EpochTimer(Callback):
    """Wall-clock seconds of every epoch (training, the callback's loss pass and validation)."""

    order = -10

    def before_fit(self):
        self.seconds = []

    def _now(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def before_epoch(self):
        self.start = self._now()

    def after_epoch(self):
        self.seconds.append(self._now() - self.start)


def run_numbers(learn, seconds, args, changed, device, fp16, channels_last, scorer=None, valid_changed=None):
    """The run's numbers so far: test accuracy and seconds per epoch, the detector's history. With a
    held-out validation split (``scorer`` scores the test set), also its accuracy against its
    noisy labels and their wrong-label rate (``valid_changed``)."""
    valid_accuracies = [float(row[2]) for row in learn.recorder.values]
    accuracies = list(scorer.accuracies) if scorer is not None else valid_accuracies
    result = {
        "method": args.method, "schedule": args.schedule, "epochs": args.epochs,
        "noise": 0.0 if args.labels else args.noise, "noise_type": "labels file" if args.labels else args.noise_type,
        "wrong_label_rate": float(changed.mean()), "last_acc": accuracies[-1] if accuracies else float("nan"),
        "best_acc": max(accuracies, default=float("nan")), "acc_per_epoch": accuracies,
        "seconds_per_epoch": [round(t, 2) for t in seconds], "finished": False,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "fp16": fp16, "channels_last": channels_last,
    }
    if scorer is not None:
        result.update(validation="held-out", n_valid=args.n_valid, valid_acc_per_epoch=valid_accuracies,
                      valid_wrong_label_rate=float(np.mean(valid_changed)))
    result.update(callback_history(getattr(learn, "dynamic_bootstrap_mix_up", None)))
    return result


class WriteProgress(Callback):
    """Rewrites ``--out`` after every epoch (``"finished": false`` until the run ends), so a run
    cut short still leaves its per-epoch curves."""

    order = 60  # after the Recorder has logged the epoch

    def __init__(self, path, numbers, timer):
        self.path, self.numbers, self.timer, self.trained = Path(path), numbers, timer, False

    def before_train(self):
        self.trained = True  # a training epoch, not get_preds' validation-only pass

    def after_epoch(self):
        if not self.trained:
            return
        self.trained = False
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.numbers(self.learn, self.timer.seconds), indent=1))


def paper_epochs(value, epochs):
    """An epoch of the paper's 300-epoch schedule, scaled to a run of ``epochs``."""
    return int(round(value * epochs / PAPER_EPOCHS))


def training_labels(y_train, args, start=0, seed=None):
    """Labels for the training images ``start``, ``start + 1``, ... (official order), whose official
    labels are ``y_train``, and the mask of those that differ from them: the ``--labels`` file's,
    else ``y_train`` with injected noise drawn from ``seed`` (default ``--seed``)."""
    if args.labels:
        path = Path(args.labels)
        if path.suffix != ".npy" or not path.is_file():
            raise SystemExit(f"--labels must name an existing .npy file, got {args.labels!r}")
        try:
            labels = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise SystemExit(f"{path} is not a plain .npy array ({error}); object arrays are not accepted") from None
        if labels.ndim != 1 or len(labels) < start + len(y_train):
            raise SystemExit(
                f"{path} must be a 1-D array with one label per training image (at least {start + len(y_train)}, "
                f"in the official order); got shape {labels.shape}"
            )
        labels = labels[start : start + len(y_train)]
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= 10:
            raise SystemExit(f"{path} must hold integer class indices in 0..9; got dtype {labels.dtype}, "
                             f"values {labels.min()}..{labels.max()}")
        labels = labels.astype(np.int64)
        return labels, labels != y_train
    seed = args.seed if seed is None else seed
    if args.noise_type == "asymmetric":
        return asymmetric_noise(y_train, args.noise, CIFAR10_ASYMMETRIC, random_state=seed)
    return symmetric_noise(y_train, args.noise, n_classes=10, random_state=seed)


def held_out_split(x_train, y_train, args):
    """``--n-valid``: the images after the first ``--n-train`` as a validation split, with labels
    as noisy as the training labels (the ``--labels`` file's, or noise of the same rate and type
    from the validation seed); returns ``(x_valid, y_valid, valid_labels)``, or None without it."""
    if not getattr(args, "n_valid", 0):  # sweeps may build args without it
        return None
    if not args.n_train or args.n_train + args.n_valid > len(x_train):
        raise SystemExit(f"--n-valid {args.n_valid} takes the training images after the first --n-train: it needs "
                         f"--n-train set and --n-train + --n-valid <= {len(x_train)} (got --n-train {args.n_train})")
    rows = slice(args.n_train, args.n_train + args.n_valid)
    x_valid, y_valid = x_train[rows], y_train[rows]
    labels, _ = training_labels(y_valid, args, start=args.n_train, seed=validation_seed(args.seed))
    return x_valid, y_valid, labels


def method_callbacks(args, changed):
    if args.method == "ce":
        return []
    if args.method == "mixup":
        return [MixUp(alpha=args.alpha)]
    paper = args.schedule == "paper"
    recording = dict(noise_mask=changed if changed.any() else None, keep_trace=bool(args.trace), trace_probs=bool(args.trace))
    if args.method == "default":
        return [DynamicBootstrapMixUp(**recording)]
    warmup = paper_epochs(PAPER_WARMUP, args.epochs) if paper else args.warmup
    options = dict(mode="paper", alpha=args.alpha, warmup=warmup, **recording)
    if args.method == "md-dyr-sh":
        if paper:  # the reference's epochs, scaled to this run
            options.update(mixing_only=paper_epochs(PAPER_BOOTSTRAP_SH, args.epochs) - warmup,
                           sharpening=tuple(paper_epochs(e, args.epochs) for e in PAPER_SHARPENING))
        return [DynamicBootstrapMixUp(bootstrap="soft-to-hard", detector_mixing=True, **options)]
    return [DynamicBootstrapMixUp(bootstrap="hard" if args.method == "m-dyr-h" else "soft", **options)]


def fit(learn, args):
    if args.schedule == "one-cycle":
        learn.fit_one_cycle(args.epochs, args.lr)
        return
    milestones = [paper_epochs(m, args.epochs) for m in PAPER_MILESTONES]

    def step_lr(position):  # position: the fraction of training done; lr / 10 at each milestone passed
        epoch = position * args.epochs + 1e-9
        return args.lr * 0.1 ** sum(epoch >= m for m in milestones)

    learn.fit(args.epochs, args.lr, cbs=ParamScheduler({"lr": step_lr}))


def train(args):
    """One run of the parsed ``args``; returns ``(numbers, learner)``: accuracy and seconds per
    epoch, detector AUC, ... and the trained Learner. ``args.arrays``, when set, are the decoded
    ``(x_train, y_train, x_test, y_test)`` to use instead of loading them (sweeps decode once)."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fp16 = args.fp16 if args.fp16 is not None else device.type == "cuda"
    channels_last = args.channels_last if args.channels_last is not None else device.type == "cuda"
    dataset = "synthetic" if args.synthetic else "cifar10"
    x_train, y_train, x_test, y_test = args.arrays if getattr(args, "arrays", None) else load_arrays(dataset, args.data_dir)
    held_out = held_out_split(x_train, y_train, args)
    if args.n_train:
        x_train, y_train = x_train[: args.n_train], y_train[: args.n_train]
    if args.n_test:
        x_test, y_test = x_test[: args.n_test], y_test[: args.n_test]
    labels, changed = training_labels(y_train, args)

    set_seed(args.seed)  # torch, numpy and Python's random (fastai's DataLoader seeds its shuffling from the last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    # with a held-out split the learner validates on it and its noisy labels; the test set is scored apart
    if held_out is None:
        x_valid, valid_labels, more = x_test, y_test, []
    else:
        x_valid, valid_labels, more = held_out[0], held_out[2], [(x_test, y_test)]
    dls = tensor_dataloaders(x_train, labels, x_valid, valid_labels, bs=args.bs, device=device,
                             channels_last=channels_last, more=more)
    scorer = None if held_out is None else ScoreTestSet(dl=dls[2])
    valid_changed = None if held_out is None else valid_labels != held_out[1]
    timer = EpochTimer()
    numbers = partial(run_numbers, args=args, changed=changed, device=device, fp16=fp16, channels_last=channels_last,
                      scorer=scorer, valid_changed=valid_changed)
    progress = [WriteProgress(args.out, numbers, timer)] if args.out else []
    learn = Learner(
        dls, PreActResNet18(width=args.width), loss_func=CrossEntropyLossFlat(), metrics=accuracy,
        opt_func=partial(SGD, mom=0.9, decouple_wd=False), wd=args.wd, wd_bn_bias=True,
        cbs=[timer, *method_callbacks(args, changed), *([scorer] if scorer else []), *progress],
    )
    if channels_last:
        learn.to_channelslast(use_amp=fp16)
    elif fp16:
        learn.to_fp16()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="fastai")
        if args.quiet:
            with learn.no_bar(), learn.no_logging():
                fit(learn, args)
        else:
            fit(learn, args)

    result = numbers(learn, timer.seconds)  # get_preds below starts the callbacks afresh
    if scorer is not None:
        predicted = scorer.predicted  # the test set's, scored after the last epoch
    else:
        with learn.no_bar():
            predicted = learn.get_preds(dl=dls.valid)[0].argmax(dim=1)
    result["classes_predicted"] = int(torch.unique(predicted).numel())
    result["finished"] = True
    cb = getattr(learn, "dynamic_bootstrap_mix_up", None)
    if cb is not None and args.trace:
        result["trace"] = str(cb.save_trace(args.trace))
    return result, learn


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--method", default="m-dyr-h", choices=METHODS)
    p.add_argument("--noise", type=float, default=0.8, help="noise rate r (default 0.8)")
    p.add_argument("--noise-type", default="symmetric", choices=["symmetric", "asymmetric"])
    p.add_argument("--labels", default=None, help="a .npy array of training labels to use instead of injected noise")
    p.add_argument("--schedule", default="paper", choices=["paper", "one-cycle"])
    p.add_argument("--epochs", type=int, default=None, help="default: 300 (paper), 30 (one-cycle)")
    p.add_argument("--lr", type=float, default=None, help="default: 0.1 (paper), 0.2 (one-cycle, the peak)")
    p.add_argument("--wd", type=float, default=None, help="weight decay; default: 1e-4 (paper), 5e-4 (one-cycle)")
    p.add_argument("--bs", type=int, default=128)
    p.add_argument("--alpha", type=float, default=32.0, help="mixup's Beta(alpha, alpha)")
    p.add_argument("--warmup", type=float, default=0.35, help="one-cycle: fraction of the run of plain mixup first")
    p.add_argument("--width", type=int, default=64, help="channels of the first stage (64 in the paper)")
    p.add_argument("--n-train", type=int, default=0, help="first N training images (0: all 50,000)")
    p.add_argument("--n-test", type=int, default=0, help="first N test images (0: all 10,000)")
    p.add_argument("--n-valid", type=int, default=0,
                   help="validate on the N training images after the first --n-train, their labels as noisy as the "
                        "training labels (the --labels file's, or noise of the same rate and type drawn apart), and "
                        "score the test set after every epoch; 0 (default): validate on the test set")
    p.add_argument("--device", default=None, help="default: cuda when there is one, else cpu")
    p.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None, help="mixed precision (default: on CUDA)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory order (default: on CUDA)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--synthetic", action="store_true",
                   help="colour-coded random 32x32 images (5,000 train, 1,000 test) instead of CIFAR-10: a smoke test")
    p.add_argument("--trace", default=None, help="save the per-epoch losses (M-DYR methods) to this .npz")
    p.add_argument("--out", default=None, help="write the run's numbers to this .json (rewritten after every epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch table")
    return p


def complete(args):
    """Fill in the schedule-dependent defaults and check the numbers."""
    paper = args.schedule == "paper"
    args.epochs = args.epochs or (PAPER_EPOCHS if paper else 30)
    args.lr = args.lr or (0.1 if paper else 0.2)
    args.wd = args.wd if args.wd is not None else (1e-4 if paper else 5e-4)
    if not 0 <= args.noise <= 1:
        raise SystemExit(f"--noise must be in [0, 1], got {args.noise}")
    if getattr(args, "n_valid", 0) < 0:
        raise SystemExit(f"--n-valid must be >= 0, got {args.n_valid}")
    if args.epochs < 1 or args.width < 1 or args.bs < 2:
        raise SystemExit("--epochs and --width must be >= 1 and --bs >= 2")
    return args


def main():
    args = complete(parser().parse_args())
    result, learn = train(args)
    print(f"{args.method}, {result['noise_type']} r={result['noise']:g} ({result['wrong_label_rate']:.1%} of the labels wrong): "
          f"test accuracy last {result['last_acc']:.4f}, best {result['best_acc']:.4f}; "
          f"{np.median(result['seconds_per_epoch']):.1f} s per epoch on {result['device']}")
    cb = getattr(learn, "dynamic_bootstrap_mix_up", None)
    if cb is not None:
        names = CLASSES["cifar10"]
        top = cb.report(sort=True).head(10)
        top = top.assign(given=[names[i] for i in top.given_label], predicted=[names[i] for i in top.predicted_label])
        print("\nthe 10 most suspect training images (item = index in the official training order):")
        print(top[["item", "given", "predicted", "loss", "p_noisy"]].to_string(index=False, float_format="%.3f"))
    if args.out:
        with atomic_path(Path(args.out)) as tmp:
            tmp.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
