"""Does the anchored default detector change what M-DYR training reaches? Paired runs.

For every seed, noise rate and M-DYR method, trains the same network on the same noisy
labels twice, once with the callback's detector fitted as the paper does
(``anchored=False``) and once with the default's anchored M-steps, and reports test
accuracy at the last epoch for both and their difference. The runs are
``noise_accuracy.py``'s (digits by default, no augmentation, 40 epochs: the setting where
cross-entropy memorises). Single CPU runs of the same seed differ by a few points, so read
the per-seed spread, not only the mean.

Run: ``python benchmarks/anchoring_training.py [--seeds 1 2 3 4] [--noise 0.8 0.9]``
"""

import argparse

import numpy as np
import pandas as pd

from noise_accuracy import LABELS, add_paired_options, paired_data, print_row, run  # the sibling benchmark

from lnc_experiments.results import markdown_table, write_json, write_results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_paired_options(parser, noise=[0.8, 0.9])
    parser.add_argument("--methods", nargs="+", default=["m-dyr-h", "m-dyr-s"], choices=["m-dyr-h", "m-dyr-s"])
    args = parser.parse_args()
    args.no_augment = True

    data = paired_data(args)
    rows = []
    for seed in args.seeds:
        for noise in args.noise:
            for method in args.methods:
                row = {"method": LABELS[method], "noise": noise, "seed": seed}
                for init in ("paper", "anchored"):
                    args.seed, args.detector_init = seed, init
                    result = run(method, noise, data, args)
                    row[f"last {init}"] = result["last_acc"]
                    row[f"final noise estimate {init}"] = result["noise_fraction_per_epoch"][-1]
                row["true noise"] = result["wrong_label_rate"]
                row["anchored - paper"] = row["last anchored"] - row["last paper"]
                print_row(row)
                rows.append(row)
    frame = pd.DataFrame(rows)
    summary = frame.groupby(["method", "noise"], sort=False).agg(
        mean_paper=("last paper", "mean"),
        mean_anchored=("last anchored", "mean"),
        mean_difference=("anchored - paper", "mean"),
        pairs_anchored_better=("anchored - paper", lambda d: f"{int(np.sum(d > 0))} of {len(d)}"),
    ).reset_index()
    lines = [
        f"Data: first {args.n_train} {args.dataset} training images, symmetric noise (paper convention), all "
        f"test images; `noise_accuracy.py`'s small CNN, `fit_one_cycle({args.epochs}, {args.lr})`, batch "
        f"{args.bs}, no augmentation, mixup alpha {args.alpha}, warm-up {args.warmup}. Each row: one seed "
        "(noisy labels and initial weights), trained twice, the callback's detector being "
        "`BetaMixtureNoiseDetector(anchored=False)` or the default (`anchored=True`).",
        "",
        "## Last-epoch test accuracy, mean over seeds",
        "",
        markdown_table(summary),
        "",
        "## Every pair",
        "",
        markdown_table(frame),
    ]
    write_json(f"anchoring_training_{args.dataset}.json", {"settings": vars(args), "rows": rows})
    print(write_results(f"anchoring_training_{args.dataset}.md", "Paper fit against anchored fit inside M-DYR training", lines))


if __name__ == "__main__":
    main()
