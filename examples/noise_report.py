"""Reports and pictures of the suspected mislabelled samples, from plain arrays and from fastai.

1. scikit-learn only: an MLP is trained on scikit-learn's digits with 40% injected label noise;
   its per-sample losses go into ``noise_report`` (one row per sample, ranked) and
   ``noise_summary`` (noise per class, confused pairs), and the fitted mixture is drawn over the
   loss histogram, split by the true noise mask, as in the paper's figures.
2. fastai (skipped when fastai is not installed, or with ``--no-fastai``): a small CNN trains
   on the digits as 8x8 images with ``DynamicBootstrapMixUp``; its report carries each sample's
   history over training, and the most suspect images are drawn in a grid.

Everything is written to ``--out`` (default ``noise_report_output``): the report as CSV, the
losses as CSV for the ``lnc-report`` command line, and the figures as PNG.

Run: ``python examples/noise_report.py [--out folder] [--noise 0.4] [--no-fastai]``
"""

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no window

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lnc_experiments.digits import digits_training_losses  # noqa: E402
from lnc_sklearn import BetaMixtureNoiseDetector, noise_report, noise_summary  # noqa: E402
from lnc_sklearn.plotting import plot_loss_mixture, plot_posterior  # noqa: E402


def from_arrays(args, out):
    losses, noisy, true, changed, probs = digits_training_losses(args.noise, args.epochs)
    detector = BetaMixtureNoiseDetector().fit(losses)
    report = noise_report(losses, detector, labels=noisy, pred_probs=probs, noise_mask=changed)
    print("== from plain arrays (an MLP's losses on the digits) ==\n")
    print(noise_summary(report, top=5))
    print(f"\ntop {args.top} suspects:")
    print(report.sort_values("rank").head(args.top).to_string(float_format="{:.3f}".format))
    report.to_csv(out / "digits_report.csv", index_label="row")
    pd.DataFrame({"loss": losses, "label": noisy, "mislabelled": changed}).to_csv(out / "digits_losses.csv", index=False)
    plt.close(plot_loss_mixture(detector, losses, noise_mask=changed, path=out / "mixture.png"))
    plt.close(plot_posterior(detector, losses, path=out / "posterior.png"))
    print(f"\nwritten to {out}: digits_report.csv, digits_losses.csv, mixture.png, posterior.png")
    print(f"the same from the command line: lnc-report {out / 'digits_losses.csv'} --label-column label "
          f"--noise-mask-column mislabelled -o report.csv --plot mixture.png")


def from_fastai(args, out):
    from fastai.basics import CrossEntropyLossFlat, Learner, accuracy
    from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (adds Learner.fit_one_cycle)

    from lnc_experiments.data import as_float_images, image_dataloaders, load_arrays
    from lnc_experiments.models import small_cnn
    from lnc_fastai import DynamicBootstrapMixUp
    from lnc_sklearn import symmetric_noise
    from fastai.torch_core import set_seed

    x_train, y_train, x_test, y_test = load_arrays("digits")
    noisy, changed = symmetric_noise(y_train, args.noise, n_classes=10, random_state=0)
    set_seed(0)  # torch, numpy and Python's random (fastai's DataLoader seeds its shuffling from the last)
    dls = image_dataloaders(as_float_images(x_train), noisy, as_float_images(x_test), y_test, bs=64, augment=False)
    cb = DynamicBootstrapMixUp(warmup=0.5, noise_mask=changed, keep_trace=True)
    learn = Learner(dls, small_cnn(1), loss_func=CrossEntropyLossFlat(), metrics=accuracy, cbs=cb)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit_one_cycle(args.fastai_epochs, 1e-2)
    report = cb.report().assign(true_label=y_train).sort_values("rank")
    print(f"\n== from fastai (DynamicBootstrapMixUp, {args.fastai_epochs} epochs on the digits as images) ==\n")
    print(f"test accuracy {learn.recorder.values[-1][2]:.3f}")
    print(noise_summary(report, top=5))
    columns = ["item", "given_label", "predicted_label", "true_label", "loss", "p_noisy", "mean_p_noisy", "epochs_flagged", "rank"]
    print(f"\ntop {args.top} suspects (item = index in the training set):")
    print(report[columns].head(args.top).to_string(float_format="{:.3f}".format))
    report.to_csv(out / "fastai_report.csv", index_label="row")
    plt.close(cb.plot_history(path=out / "history.png"))
    plt.close(cb.plot_top_suspects(k=8, ncols=4, path=out / "suspects.png"))
    print(f"\nwritten to {out}: fastai_report.csv, history.png, suspects.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="noise_report_output", help="folder for the reports and figures")
    parser.add_argument("--noise", type=float, default=0.4, help="symmetric noise rate (paper convention)")
    parser.add_argument("--epochs", type=int, default=20, help="MLP epochs (part 1)")
    parser.add_argument("--fastai-epochs", type=int, default=30, help="CNN epochs (part 2)")
    parser.add_argument("--top", type=int, default=8, help="suspects to print")
    parser.add_argument("--no-fastai", action="store_true", help="skip part 2")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from_arrays(args, out)
    if args.no_fastai:
        return
    try:
        import fastai  # noqa: F401
    except ImportError:
        print('\n(fastai is not installed: part 2 skipped; pip install -e ".[fastai]" to run it)')
        return
    from_fastai(args, out)


if __name__ == "__main__":
    main()
