"""lnc's default in the training matrix before and after a change to lnc, side by side.

Reads the matrix files as they are now and as they were at git revision ``--before`` (the
other methods do not depend on lnc's code, so only ``DynamicBootstrapMixUp()``'s runs are
compared), pairs the runs by cell, noise and seed, and writes per setting the mean last-epoch
test accuracy before and after, the mean paired difference, the smallest and largest one, the
fewest classes any run predicts, and the best other method's mean for reference.

Run: ``python benchmarks/compare_matrix.py --before 08d510d --out-name training_matrix_count_change``;
with ``--before-dir`` (and ``--after-dir``) the runs come from results folders where they were
made again, so that both sides ran on one machine with one thread count.
"""

import argparse
import json
import subprocess
from pathlib import Path

import pandas as pd

from lnc_experiments.results import RESULTS, markdown_table, write_json, write_results

REPO = Path(__file__).resolve().parents[1]
FILES = {"clean test labels": "training_matrix.json", "noisy validation split": "training_matrix_noisy_validation.json"}


def runs_at(revision, name, folder=None):
    """The runs of a matrix file at a git revision, or in ``folder`` (the results folder of a
    checkout of that revision whose runs were made again beside today's, on the same machine
    and thread count), or as the file is now (both None)."""
    if folder is not None:
        return json.loads((Path(folder) / name).read_text())["runs"]
    if revision is None:
        return json.loads((RESULTS / name).read_text())["runs"]
    text = subprocess.run(["git", "show", f"{revision}:benchmarks/results/{name}"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout
    return json.loads(text)["runs"]


def compare(before, after, original, before_rerun=False):
    key = ["cell", "noise_type", "noise", "seed"]
    kept = key + ["last_acc", "classes_predicted", "seconds"]
    old = pd.DataFrame([r for r in before if r["method"] == "default"])[kept]
    new = pd.DataFrame([r for r in after if r["method"] == "default"])[kept]
    paired = old.merge(new, on=key, suffixes=(" before", " after"))
    # only the runs made again since (on both sides where the runs before were made again too):
    # a run that was not re-run is the same record as in the original file
    first = pd.DataFrame([r for r in original if r["method"] == "default"])[key + ["seconds"]]
    paired = paired.merge(first, on=key)
    made_again = paired["seconds after"] != paired["seconds"]
    if before_rerun:
        made_again &= paired["seconds before"] != paired["seconds"]
    paired = paired[made_again]
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
    return pd.DataFrame(rows), paired


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the git revision of the results before the change")
    parser.add_argument("--before-dir", default=None,
                        help="read the runs before from this results folder (a checkout of --before whose "
                             "runs were made again) instead of from git")
    parser.add_argument("--after-dir", default=None,
                        help="read the runs after from this results folder instead of benchmarks/results")
    parser.add_argument("--out-name", default="training_matrix_change")
    args = parser.parse_args()
    intro = (f"lnc's default (`DynamicBootstrapMixUp()`) in the training matrix at {args.before} ('before') and now "
             "('after'), paired by cell, noise and seed; last-epoch test accuracy. The settings and seeds are the "
             "matrix's (`benchmarks/training_matrix.py`); only the runs made again after the change are listed (a "
             "setting or seed that is missing was not re-run); 'identical runs' counts seeds whose accuracy did not "
             "move.")
    if args.before_dir:
        intro += (f" Both sides were made again, one after the other or side by side, on the same machine with the same "
                  f"thread count (the code at {args.before} from a checkout of it, the code now from this one), so "
                  "a difference comes from the change, not from the arithmetic of another thread count.")
    lines, runs = [intro, ""], {}
    for title, name in FILES.items():
        original = runs_at(args.before, name)
        table, paired = compare(runs_at(args.before, name, args.before_dir), runs_at(None, name, args.after_dir),
                                original, before_rerun=args.before_dir is not None)
        lines += [f"## Validation on the {title} (`{name}`)", "", markdown_table(table), ""]
        runs[name] = paired.drop(columns="seconds").to_dict(orient="records")
    path = write_results(f"{args.out_name}.md", "The training matrix before and after", lines)
    write_json(f"{args.out_name}.json", {"before": args.before, "paired_runs": runs})
    print("\n".join(lines))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
