"""Test accuracy under label noise: cross-entropy, mixup, M-DYR-H, M-DYR-S, MD-DYR-SH, lnc's default.

Same model (a small CNN), schedule (``fit_one_cycle``), data order and seed for every method;
noise injected into the training labels only: symmetric (paper convention: a fraction r of
samples gets a uniformly random label, its true class included) or, with ``--noise-type
asymmetric``, the usual MNIST flips (2 -> 7, 3 -> 8, 5 <-> 6, 7 -> 1) of a fraction r of those
classes. ``default`` is ``DynamicBootstrapMixUp()`` with no arguments (lnc's own mode), whatever
``--alpha`` and ``--warmup`` say; ``mixup`` is fastai's ``MixUp(--alpha)``, ``mixup-0.4`` its
default ``MixUp()``. For every run: test accuracy at the last
epoch and the best over epochs, and for the bootstrapping methods the detector's ROC-AUC per
epoch against the true noise mask. Results accumulate in ``results/noise_accuracy_<dataset>.json``
(each run is saved as it finishes, so an interrupted sweep keeps what it measured) and the
Markdown table is rewritten from it.

Run: ``python benchmarks/noise_accuracy.py --dataset fashion_mnist --n-train 10000 --epochs 12``
"""

import argparse
import json
import time
import warnings

import pandas as pd
import torch

from lnc_experiments.data import as_float_images, image_dataloaders, load_arrays
from lnc_experiments.models import small_cnn
from lnc_experiments.results import RESULTS, callback_history, markdown_table, method_by_noise, write_json, write_results
from lnc_experiments.validation import ScoreTestSet, validation_seed
from fastai.basics import CrossEntropyLossFlat, Learner, accuracy  # noqa: E402
from fastai.callback.mixup import MixUp  # noqa: E402
from fastai.callback.schedule import fit_one_cycle  # noqa: E402,F401
from fastai.torch_core import set_seed  # noqa: E402
from lnc_fastai import DynamicBootstrapMixUp  # noqa: E402
from lnc_sklearn import BetaMixtureNoiseDetector, asymmetric_noise, symmetric_noise  # noqa: E402

# The usual asymmetric flips of digit images (MNIST; the scikit-learn digits alike).
DIGIT_FLIPS = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}

# The callback's detector: the default (anchored M-steps), the paper's plain fit, or the
# k-means start with plain M-steps.
# p(noisy) read off the mixture (rate_estimate="mixture"), as these tables were measured and as
# the callback's default detector reads it.
DETECTOR_FITS = {
    "anchored": {"rate_estimate": "mixture"},
    "paper": {"anchored": False, "rate_estimate": "mixture"},
    "kmeans": {"init_params": "kmeans", "anchored": False, "rate_estimate": "mixture"},
}
METHODS = ("ce", "mixup", "mixup-0.4", "m-dyr-h", "m-dyr-s", "md-dyr-sh", "md-dyr-sh-share", "default")
LABELS = {"ce": "cross-entropy", "mixup": "fastai MixUp (alpha 32)", "mixup-0.4": "fastai MixUp (alpha 0.4)",
          "m-dyr-h": "M-DYR-H", "m-dyr-s": "M-DYR-S", "md-dyr-sh": "MD-DYR-SH",
          "md-dyr-sh-share": "MD-DYR-SH, partners weighed by input share", "default": "DynamicBootstrapMixUp()"}


class ShareWeightedMdDyrSh(DynamicBootstrapMixUp):
    """lnc's earlier reading of MD-DYR-SH, kept here to measure it against the reference: the
    bootstrapping loss weighs each partner by its share of the mixed input, not 0.5 / 0.5."""

    def before_batch(self):
        super().before_batch()
        if self.training and self.phase == "bootstrap":
            self._batch = self._batch._replace(loss_lam=self._batch.input_lam)


def callbacks(method, changed, args):
    if method == "ce":
        return []
    if method == "mixup":
        return [MixUp(alpha=args.alpha)]
    if method == "mixup-0.4":
        return [MixUp()]
    if method == "default":
        return [DynamicBootstrapMixUp(noise_mask=changed)]
    detector = BetaMixtureNoiseDetector(**DETECTOR_FITS[args.detector_init])
    options = dict(mode="paper", alpha=args.alpha, warmup=args.warmup, noise_mask=changed, detector=detector)
    if method == "md-dyr-sh":  # the reference's MD-DYR-SH, its milestones as fractions of the run
        return [DynamicBootstrapMixUp(bootstrap="soft-to-hard", detector_mixing=True, **options)]
    if method == "md-dyr-sh-share":  # lnc's earlier reading: no mixing-only phase, loss weighed by input share
        return [ShareWeightedMdDyrSh(bootstrap="soft-to-hard", detector_mixing=True, mixing_only=0, **options)]
    return [DynamicBootstrapMixUp(bootstrap="hard" if method == "m-dyr-h" else "soft", **options)]


def noisy_labels(y_train, noise, args):
    """``(labels, changed)``: ``y_train`` with ``noise`` injected as ``args.noise_type`` says."""
    if getattr(args, "noise_type", "symmetric") == "asymmetric":
        return asymmetric_noise(y_train, noise, DIGIT_FLIPS, random_state=args.seed)
    return symmetric_noise(y_train, noise, n_classes=10, random_state=args.seed)


def noisy_validation_labels(y_valid, noise, args):
    """The held-out validation labels, noised as the training labels are (same rate and type) but
    from their own random stream: what a user's validation split of noisy data looks like."""
    return noisy_labels(y_valid, noise, argparse.Namespace(**dict(vars(args), seed=validation_seed(args.seed))))[0]


def run(method, noise, data, args):
    """One training run. ``data`` is ``(x_train, y_train, x_test, y_test)``: the test set is then
    also the validation set the callbacks see (clean labels). With a held-out validation split,
    ``(x_train, y_train, x_test, y_test, x_valid, y_valid)``: the learner validates on ``x_valid``
    with labels noised as the training labels are, and the test set is only scored."""
    x_train, y_train, x_test, y_test = data[:4]
    noisy, changed = noisy_labels(y_train, noise, args)
    held_out = len(data) == 6
    set_seed(args.seed)  # torch, numpy and Python's random (fastai's DataLoader seeds its shuffling from the last)
    if held_out:
        x_valid, y_valid, scorer = data[4], noisy_validation_labels(data[5], noise, args), ScoreTestSet(x_test, y_test)
    else:
        x_valid, y_valid, scorer = x_test, y_test, None
    dls = image_dataloaders(x_train, noisy, x_valid, y_valid, bs=args.bs, augment=not args.no_augment)
    cbs = callbacks(method, changed, args) + ([scorer] if held_out else [])
    learn = Learner(dls, small_cnn(x_train.shape[1]), loss_func=CrossEntropyLossFlat(), metrics=accuracy, cbs=cbs)
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit_one_cycle(args.epochs, args.lr)
    accuracies = scorer.accuracies if held_out else [float(row[2]) for row in learn.recorder.values]
    result = {"method": method, "noise": noise, "noise_type": getattr(args, "noise_type", "symmetric"), "seed": args.seed,
              "wrong_label_rate": float(changed.mean()),
              "last_acc": accuracies[-1], "best_acc": max(accuracies), "acc_per_epoch": accuracies,
              "seconds": time.perf_counter() - start}
    result.update(callback_history(getattr(learn, "dynamic_bootstrap_mix_up", None)))
    # A network collapsing under heavy noise predicts few classes.
    if held_out:
        preds = scorer.predicted  # the last epoch's, scored after it: no second forward
        result["valid_wrong_label_rate"] = float((y_valid != data[5]).mean())
    else:
        with learn.no_bar():
            preds = learn.get_preds(dl=dls.valid)[0].argmax(dim=1)
    result["classes_predicted"] = int(torch.unique(preds).numel())
    return result


def add_paired_options(parser, noise):
    """The options of the paired-run benchmarks beside this one (``anchoring_training.py``,
    ``md_dyr_sh_variants.py``): this file's runs, by default on the digits without augmentation
    (where cross-entropy memorises), for several seeds."""
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist", "fashion_mnist", "cifar10"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n-train", type=int, default=1257)
    parser.add_argument("--n-test", type=int, default=0, help="first N test images (0: all)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=32.0)
    parser.add_argument("--warmup", type=float, default=0.35)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--noise", type=float, nargs="+", default=noise)


def paired_data(args):
    """``(x_train, y_train, x_test, y_test)`` for :func:`run`, as the paired benchmarks' options say."""
    x_train, y_train, x_test, y_test = load_arrays(args.dataset, args.data_dir)
    if args.n_test:
        x_test, y_test = x_test[: args.n_test], y_test[: args.n_test]
    return as_float_images(x_train[: args.n_train]), y_train[: args.n_train], as_float_images(x_test), y_test


def print_row(row):
    print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)


def write_tables(results, args, json_path):
    frame = pd.DataFrame(results)
    lines = [
        f"Data: first {args.n_train} {args.dataset} training images (of {args.n_available}) with "
        + ("asymmetric noise (rate r: that fraction of the 2s, 3s, 5s, 6s and 7s flipped to 7, 8, 6, 5, 1), "
           if getattr(args, "noise_type", "symmetric") == "asymmetric" else
           "symmetric noise (rate r: that fraction relabelled uniformly, true class included), ")
        + f"{args.n_test or 'all'} clean test images. Model: small CNN "
        f"(`examples/_images.py`); `fit_one_cycle({args.epochs}, {args.lr})` with Adam, batch {args.bs}, "
        f"{'no augmentation' if args.no_augment else 'random crop (pad 2) and flip'}; seed {args.seed} for every run. Mixup alpha {args.alpha} (one weight per batch "
        f"for M-DYR, fastai's per-sample max(lam, 1-lam) for MixUp); M-DYR warm-up {args.warmup} of the run, "
        f"detector `BetaMixtureNoiseDetector({', '.join(f'{k}={v!r}' for k, v in DETECTOR_FITS[args.detector_init].items())})`.",
        "",
        f"Raw per-run numbers (accuracy per epoch, AUC per epoch): `benchmarks/results/{json_path.name}`.",
        "",
        "## Test accuracy, last epoch / best epoch",
        "",
    ]
    def by_method(values):
        return method_by_noise(frame, values, LABELS)

    frame["cell"] = [f"{a:.4f} / {b:.4f}" for a, b in zip(frame.last_acc, frame.best_acc)]
    lines.append(markdown_table(by_method("cell")))
    lines += ["", "## Classes predicted on the test set (of 10) at the last epoch", "", markdown_table(by_method("classes_predicted"))]
    if "auc_per_epoch" in frame:
        lines += ["", "## Detector ROC-AUC per epoch (M-DYR runs; undefined without noise)", ""]
        for row in frame.dropna(subset=["auc_per_epoch"]).itertuples():
            if row.noise > 0:
                lines.append(f"- {LABELS[row.method]}, r = {row.noise:g}: " + ", ".join(f"{a:.3f}" for a in row.auc_per_epoch))
    lines += ["", "## Seconds per run", "", markdown_table(by_method("seconds"), "{:.0f}")]
    return write_results(f"noise_accuracy_{args.dataset}{args.tag}.md", f"Accuracy under label noise, {args.dataset}", lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", choices=["digits", "mnist", "fashion_mnist", "cifar10"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=0, help="first N test images (0: all)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--bs", type=int, default=128)
    parser.add_argument("--no-augment", action="store_true", help="train without random crop and flip")
    parser.add_argument("--alpha", type=float, default=32.0)
    parser.add_argument("--warmup", type=float, default=0.35)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.2, 0.5, 0.8, 0.9])
    parser.add_argument("--noise-type", default="symmetric", choices=["symmetric", "asymmetric"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--detector-init", default="anchored", choices=sorted(DETECTOR_FITS),
                        help="the M-DYR runs' detector: the default (anchored), the paper's plain fit, or the k-means start")
    parser.add_argument("--tag", default="", help="suffix of the results files, to keep exploratory runs apart")
    parser.add_argument("--fresh", action="store_true", help="discard earlier results in the JSON file")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    x_train, y_train, x_test, y_test = load_arrays(args.dataset, args.data_dir)
    args.n_available = len(x_train)
    if args.n_test:
        x_test, y_test = x_test[: args.n_test], y_test[: args.n_test]
    data = (as_float_images(x_train[: args.n_train]), y_train[: args.n_train], as_float_images(x_test), y_test)
    json_path = RESULTS / f"noise_accuracy_{args.dataset}{args.tag}.json"
    results = [] if args.fresh or not json_path.exists() else json.loads(json_path.read_text())["runs"]
    for noise in args.noise:
        for method in args.methods:
            result = run(method, noise, data, args)
            results = [r for r in results if (r["method"], r["noise"]) != (method, noise)] + [result]
            print(f"{method:>8} r={noise:g}: last {result['last_acc']:.4f} best {result['best_acc']:.4f} "
                  f"({result['seconds']:.0f} s)", flush=True)
            write_json(json_path.name, {"settings": vars(args), "runs": results})
            write_tables(results, args, json_path)


if __name__ == "__main__":
    main()
