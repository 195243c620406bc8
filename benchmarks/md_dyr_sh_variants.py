"""MD-DYR-SH as the reference code does it against lnc's earlier reading of it: paired runs.

The two differ in two places only: the reference weighs the two mixed partners' terms of the
soft-to-hard loss 0.5 / 0.5 and has a phase (its epochs 106-110 of 300) where the inputs are
mixed by the detector but the loss is plain mixup; lnc's reading weighed each partner by its
share of the mixed input and bootstrapped at once. For every seed both are trained on the same
noisy labels with the same schedule (``noise_accuracy.py``'s runs: digits, no augmentation, 40
epochs of ``fit_one_cycle``, the setting where cross-entropy memorises). Single CPU runs of the
same seed differ by a few points, so read the per-seed rows, not only the mean.

Run: ``python benchmarks/md_dyr_sh_variants.py [--seeds 1 2 3 4] [--noise 0.9]``
"""

import argparse

import pandas as pd

from noise_accuracy import add_paired_options, paired_data, print_row, run  # the sibling benchmark

from lnc_experiments.results import markdown_table, write_json, write_results

VARIANTS = {"md-dyr-sh": "reference", "md-dyr-sh-share": "lnc's reading"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_paired_options(parser, noise=[0.9])
    parser.add_argument("--tag", default="", help="suffix of the results files")
    args = parser.parse_args()
    args.no_augment, args.detector_init = True, "anchored"

    data = paired_data(args)
    rows, runs = [], []
    name = f"md_dyr_sh_variants_{args.dataset}{args.tag}"
    for seed in args.seeds:
        for noise in args.noise:
            row = {"noise": noise, "seed": seed}
            for method, label in VARIANTS.items():
                args.seed = seed
                result = run(method, noise, data, args)
                runs.append({**result, "seed": seed})
                row[f"last {label}"] = result["last_acc"]
                row[f"best {label}"] = result["best_acc"]
                row[f"classes {label}"] = result["classes_predicted"]
            row["reference - lnc's (last)"] = row["last reference"] - row["last lnc's reading"]
            print_row(row)
            rows.append(row)
            write_json(f"{name}.json", {"settings": vars(args), "runs": runs})
    frame = pd.DataFrame(rows)
    summary = frame.groupby("noise").agg(
        runs=("seed", "size"),
        mean_last_reference=("last reference", "mean"),
        mean_last_lnc=("last lnc's reading", "mean"),
        mean_difference=("reference - lnc's (last)", "mean"),
        min_difference=("reference - lnc's (last)", "min"),
        max_difference=("reference - lnc's (last)", "max"),
        reference_better=("reference - lnc's (last)", lambda d: f"{int((d > 0).sum())} of {len(d)}"),
    ).reset_index()
    lines = [
        f"Data: first {args.n_train} {args.dataset} training images with symmetric noise, clean test images; small CNN, "
        f"`fit_one_cycle({args.epochs}, {args.lr})`, batch {args.bs}, no augmentation, mixup alpha {args.alpha}, "
        f"warm-up {args.warmup} of the run; the same seed gives both variants the same noisy labels.",
        "",
        "- reference: `DynamicBootstrapMixUp(bootstrap=\"soft-to-hard\", detector_mixing=True)` (partners 0.5 / 0.5, "
        "detector mixing with plain mixup's loss for 5/300 of the run before bootstrapping).",
        "- lnc's reading: `ShareWeightedMdDyrSh` in `benchmarks/noise_accuracy.py`: the same with `mixing_only=0`, and "
        "the bootstrapping loss weighing each partner by its share of the mixed input.",
        "",
        "## Test accuracy at the last epoch, per seed",
        "",
        markdown_table(frame),
        "",
        "## Summary",
        "",
        markdown_table(summary),
        "",
        f"Raw numbers per run (accuracy and detector AUC per epoch): `benchmarks/results/{name}.json`.",
    ]
    path = write_results(f"{name}.md", "MD-DYR-SH: the reference against lnc's earlier reading", lines)
    print(f"written {path}")


if __name__ == "__main__":
    main()
