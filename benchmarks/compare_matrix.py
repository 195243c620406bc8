"""lnc's default in the training matrix before and after a change to lnc, side by side.

Reads the matrix files as they are now and as they were at git revision ``--before`` (the
other methods do not depend on lnc's code, so only ``DynamicBootstrapMixUp()``'s runs are
compared), pairs the runs by cell, noise and seed, and writes per setting the mean last-epoch
test accuracy before and after, the mean paired difference, the smallest and largest one, the
fewest classes any run predicts, and the best other method's mean for reference.

Run: ``python benchmarks/compare_matrix.py --before 08d510d --out-name training_matrix_count_change``
"""

import argparse
import json
import subprocess
from pathlib import Path

import pandas as pd

from lnc_experiments.results import RESULTS, markdown_table, write_results

REPO = Path(__file__).resolve().parents[1]
FILES = {"clean test labels": "training_matrix.json", "noisy validation split": "training_matrix_noisy_validation.json"}


def runs_at(revision, name):
    """The runs of a matrix file at a git revision (None: as the file is now)."""
    if revision is None:
        return json.loads((RESULTS / name).read_text())["runs"]
    text = subprocess.run(["git", "show", f"{revision}:benchmarks/results/{name}"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout
    return json.loads(text)["runs"]


def compare(before, after):
    key = ["cell", "noise_type", "noise", "seed"]
    old = pd.DataFrame([r for r in before if r["method"] == "default"])[key + ["last_acc", "classes_predicted"]]
    new = pd.DataFrame([r for r in after if r["method"] == "default"])[key + ["last_acc", "classes_predicted"]]
    paired = old.merge(new, on=key, suffixes=(" before", " after"))
    others = pd.DataFrame([r for r in after if r["method"] not in ("default", "m-dyr-h")])
    rows = []
    for (cell, noise_type, noise), part in paired.groupby(["cell", "noise_type", "noise"], sort=False):
        diff = part["last_acc after"] - part["last_acc before"]
        best = others[(others.cell == cell) & (others.noise_type == noise_type) & (others.noise == noise)]
        best_mean = best.groupby("method").last_acc.mean().max() if len(best) else float("nan")
        rows.append({
            "cell": cell, "noise": f"{'sym' if noise_type == 'symmetric' else 'asym'} {noise:g}", "seeds": len(part),
            "before": part["last_acc before"].mean(), "after": part["last_acc after"].mean(),
            "mean difference": diff.mean(), "smallest": diff.min(), "largest": diff.max(),
            "identical runs": int((diff == 0).sum()),
            "fewest classes after": int(part["classes_predicted after"].min()),
            "best of CE and MixUp (after)": best_mean,
        })
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the git revision of the results before the change")
    parser.add_argument("--out-name", default="training_matrix_change")
    args = parser.parse_args()
    intro = (f"lnc's default (`DynamicBootstrapMixUp()`) in the training matrix at {args.before} ('before') and now "
             "('after'), paired by cell, noise and seed; last-epoch test accuracy. The settings and seeds are the "
             "matrix's (`benchmarks/training_matrix.py`); 'identical runs' counts seeds whose accuracy did not move.")
    lines = [intro, ""]
    for title, name in FILES.items():
        table = compare(runs_at(args.before, name), runs_at(None, name))
        lines += [f"## Validation on the {title} (`{name}`)", "", markdown_table(table), ""]
    path = write_results(f"{args.out_name}.md", "The training matrix before and after", lines)
    print("\n".join(lines))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
