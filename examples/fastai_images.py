"""DynamicBootstrapMixUp on real images with ``fit_one_cycle``: Fashion-MNIST (or MNIST, CIFAR-10).

Injects symmetric label noise into the training labels, trains a small CNN with random crop and
flip, and prints the test accuracy, the detector's view of the noise per epoch, and the most
suspect training images with their given and predicted classes. Optionally saves the per-epoch
loss trace for detection benchmarks.

Data: ``--data-dir``, else ``$LNC_DATA_DIR`` (see
``lnc_experiments/data.py``); MNIST and CIFAR-10 fall back to fastai's download.

Run: ``python examples/fastai_images.py --dataset fashion_mnist --noise 0.5 --n-train 10000 --epochs 12``
"""

import argparse
import warnings

from fastai.basics import CrossEntropyLossFlat, Learner, accuracy
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (adds Learner.fit_one_cycle)
from fastai.torch_core import set_seed

from lnc_experiments.data import CLASSES, as_float_images, image_dataloaders, load_arrays
from lnc_experiments.models import small_cnn
from lnc_fastai import DynamicBootstrapMixUp
from lnc_sklearn import symmetric_noise


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", choices=sorted(CLASSES))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--noise", type=float, default=0.5, help="symmetric noise rate (paper convention)")
    parser.add_argument("--n-train", type=int, default=10000, help="first N training images (0: all)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--mode", default="lnc", choices=["lnc", "paper"], help="lnc's default mode or the paper's")
    parser.add_argument("--bootstrap", default=None, choices=["hard", "soft"], help="default: the mode's (hard)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="fraction of the run of plain mixup first (default: the mode's, 0.1 lnc, 0.35 paper)")
    parser.add_argument("--trace", default=None, help="save the per-epoch loss trace to this .npz")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="fastai")

    x_train, y_train, x_test, y_test = load_arrays(args.dataset, args.data_dir)
    if args.n_train:
        x_train, y_train = x_train[: args.n_train], y_train[: args.n_train]
    noisy, changed = symmetric_noise(y_train, args.noise, n_classes=10, random_state=args.seed)
    set_seed(args.seed)  # torch, numpy and Python's random (fastai's DataLoader seeds its shuffling from the last)
    train_images = as_float_images(x_train)
    dls = image_dataloaders(train_images, noisy, as_float_images(x_test), y_test)
    cb = DynamicBootstrapMixUp(bootstrap=args.bootstrap, warmup=args.warmup, mode=args.mode, noise_mask=changed,
                               keep_trace=args.trace is not None, trace_probs=args.trace is not None)
    learn = Learner(dls, small_cnn(train_images.shape[1]), loss_func=CrossEntropyLossFlat(),
                    metrics=accuracy, cbs=cb)
    print(f"{args.dataset}: {len(noisy)} training images, {changed.mean():.1%} of their labels wrong")
    learn.fit_one_cycle(args.epochs, args.lr)  # the progress table shows noise_frac and noise_auc

    if args.trace:
        print(f"trace written to {cb.save_trace(args.trace)}")
    names = CLASSES[args.dataset]
    report = cb.report().sort_values(["p_noisy", "loss"], ascending=False).head(args.top)
    report = report.assign(given=[names[i] for i in report.given_label],
                           predicted=[names[i] for i in report.predicted_label],
                           true=[names[i] for i in y_train[report.item.to_numpy()]])
    print(f"\nthe {args.top} most suspect training images (item = index in the training array):")
    print(report[["item", "given", "predicted", "true", "loss", "p_noisy"]].to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
