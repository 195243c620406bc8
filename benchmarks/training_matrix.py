"""The training matrix: is ``DynamicBootstrapMixUp()`` safe where users are and strong where noise is heavy?

Cells (each its own data, model and schedule, the same for every method and seed):

- ``digits``: scikit-learn's digits (1,257 training images), small CNN, ``fit_one_cycle(40, 1e-2)``,
  batch 64, no augmentation: symmetric 0, 5, 20, 50, 80, 90% and asymmetric 20, 40%.
- ``mnist2000``: the first 2,000 MNIST training images, 2,000 test images, the same schedule:
  symmetric 0, 5, 20, 80, 90% and asymmetric 40%. (5%: the few wrong labels most real data
  have, added to the issue's cells.)
- ``mnist5000``: the first 5,000 MNIST images, all test images, ``fit_one_cycle(16, 1e-3)``, batch
  128, random crop and flip (the short augmented schedule): symmetric 0 and 80%.
- ``cifar10``: the first 10,000 CIFAR-10 training images, 2,000 test images, PreAct ResNet-18 at
  width 16, one-cycle (12 epochs, SGD, lr 0.2), crop and flip: symmetric 0, 20, 50, 80% and
  asymmetric 20%.

Methods: cross-entropy, fastai ``MixUp()`` (alpha 0.4) and ``MixUp(32)``, M-DYR-H (the paper
preset) and ``DynamicBootstrapMixUp()`` (lnc's default). Symmetric noise follows the paper (a
fraction r relabelled uniformly, true class included); asymmetric noise flips that fraction of
2, 3, 5, 6, 7 to 7, 8, 6, 5, 1 (digits, MNIST) or CIFAR-10's truck -> automobile, bird -> airplane,
deer -> horse, cat <-> dog.

Every run is saved in ``results/training_matrix.json`` as it ends and the table is rewritten;
runs already there with the same settings are not run again (``--rerun default`` re-runs lnc's
default after a change to lnc; the other methods do not depend on lnc's code). ``--seeds 0 1
--second-seed close`` runs seed 1 only where two methods' seed-0 last-epoch accuracies are
within 3 points.

The learner validates on the test set (clean labels), which lnc's default reads under heavy
noise (to time its memorisation call and to choose the weights its rewind goes back to).
``--validation noisy`` gives it instead a held-out split whose labels are noised as the training
labels are, as a user's would be, and scores the test set apart; those runs go to
``results/training_matrix_noisy_validation.json`` (split sizes: ``N_VALID``). There, a cell whose
test set is the same in both files (all but the digits) and has no CE or MixUp run of its own
borrows them from ``training_matrix.json``: they read no validation set.

Run: ``python benchmarks/training_matrix.py --cells digits --seeds 0 1`` (about 25 minutes on 2
CPU cores); ``--cells cifar10`` costs 2.5-3.5 minutes a run on 2 idle CPU cores.
"""

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd

import noise_accuracy  # the sibling benchmark (this script's folder is on the path when run as a script)

from lnc_experiments.results import RESULTS, _cpu_model, markdown_table, write_json, write_results  # noqa: E402
from lnc_experiments.validation import split_in_two  # noqa: E402

METHODS = ("ce", "mixup-0.4", "mixup", "m-dyr-h", "default")
LABELS = {"ce": "CE", "mixup-0.4": "MixUp 0.4", "mixup": "MixUp 32", "m-dyr-h": "M-DYR-H", "default": "default"}
SMALL_CNN = {
    "digits": dict(dataset="digits", n_train=1257, n_test=0, epochs=40, lr=1e-2, bs=64, no_augment=True),
    "mnist2000": dict(dataset="mnist", n_train=2000, n_test=2000, epochs=40, lr=1e-2, bs=64, no_augment=True),
    "mnist5000": dict(dataset="mnist", n_train=5000, n_test=0, epochs=16, lr=1e-3, bs=128, no_augment=False),
}
CIFAR = dict(schedule="one-cycle", epochs=12, n_train=10000, n_test=2000, width=16)
NOISE = {
    "digits": [("symmetric", r) for r in (0.0, 0.05, 0.2, 0.5, 0.8, 0.9)] + [("asymmetric", 0.2), ("asymmetric", 0.4)],
    "mnist2000": [("symmetric", r) for r in (0.0, 0.05, 0.2, 0.8, 0.9)] + [("asymmetric", 0.4)],
    "mnist5000": [("symmetric", 0.0), ("symmetric", 0.8)],
    "cifar10": [("symmetric", r) for r in (0.0, 0.2, 0.5, 0.8)] + [("asymmetric", 0.2)],
}
JSON = "training_matrix.json"
# --validation noisy: the learner (and so lnc's default, which reads its validation accuracy to
# time the memorisation call and to choose the rewind's weights) validates on a held-out split
# whose labels are noised as the training labels are; the test set is only scored. The digits
# have no images to spare: their 540 test images are split in two halves (a fixed permutation),
# one the validation split, the other the test set, for every method. MNIST's validation split
# (and CIFAR-10's) comes from the training images after the cell's first ``n_train``; the test set
# is as above.
N_VALID = {"digits": 270, "mnist2000": 500, "mnist5000": 1000, "cifar10": 2000}
FILES = {"test": ("training_matrix.json", "training_matrix.md"),
         "noisy": ("training_matrix_noisy_validation.json", "training_matrix_noisy_validation.md")}
# Earlier runs of the same settings and seed whose methods do not depend on lnc's code (CE and
# MixUp): reused rather than run again. cifar10_cpu_one_cycle.json: 12 one-cycle epochs, 10,000
# images, 2,000 test images, width 16, seed 0, as CIFAR above.
REUSE = {"cifar10": ("cifar10_cpu_one_cycle.json", ("ce", "mixup"))}


def settings(cell, validation="test"):
    """What a cell's runs depend on besides method, noise and seed."""
    given = dict(SMALL_CNN[cell]) if cell in SMALL_CNN else dict(CIFAR)
    if validation == "noisy":
        given.update(validation="noisy held-out split", n_valid=N_VALID[cell])
    return given


def run_small_cnn(cell, method, noise_type, noise, seed, data):
    args = argparse.Namespace(**SMALL_CNN[cell], alpha=32.0, warmup=0.35, seed=seed, noise_type=noise_type,
                              detector_init="anchored", data_dir=None)
    return noise_accuracy.run(method, noise, data, args)


def run_cifar(method, noise_type, noise, seed, arrays, data_dir, n_valid=0):
    """One CIFAR-10 run; ``n_valid`` > 0: the learner validates on that many held-out training
    images with noisy labels (``--n-valid``), the test set is scored apart."""
    from lnc_experiments import cifar10

    argv = ["--method", "mixup" if method == "mixup-0.4" else method, "--noise", str(noise), "--noise-type", noise_type,
            "--schedule", CIFAR["schedule"], "--epochs", str(CIFAR["epochs"]), "--n-train", str(CIFAR["n_train"]),
            "--n-test", str(CIFAR["n_test"]), "--width", str(CIFAR["width"]), "--seed", str(seed), "--quiet",
            "--n-valid", str(n_valid)]
    if method == "mixup-0.4":
        argv += ["--alpha", "0.4"]
    args = cifar10.complete(cifar10.parser().parse_args(argv))
    args.arrays, args.data_dir = arrays, data_dir
    result, _ = cifar10.train(args)
    result["seconds"] = float(sum(result["seconds_per_epoch"]))
    return result


def load_data(cell, data_dir, validation="test"):
    """The cell's arrays: ``(x_train, y_train, x_test, y_test)``, and with ``validation="noisy"``
    the held-out validation images and their true labels after them (``N_VALID``)."""
    from lnc_experiments.data import as_float_images, load_arrays

    if cell == "cifar10":  # with a held-out split, lnc_experiments.cifar10 cuts it from the training images
        return load_arrays("cifar10", data_dir)
    args = argparse.Namespace(**SMALL_CNN[cell], data_dir=data_dir)
    x_train, y_train, x_test, y_test = noise_accuracy.paired_data(args)
    if validation != "noisy":
        return x_train, y_train, x_test, y_test
    n_valid = N_VALID[cell]
    if cell == "digits":  # no images to spare: half the test images validate, the other half test
        valid, test = split_in_two(len(y_test), n_valid)
        return x_train, y_train, x_test[test], y_test[test], x_test[valid], y_test[valid]
    pool_x, pool_y = load_arrays(args.dataset, data_dir)[:2]
    start = args.n_train
    return x_train, y_train, x_test, y_test, as_float_images(pool_x[start : start + n_valid]), pool_y[start : start + n_valid]


def reused_runs(cell):
    """Runs of ``cell`` from an earlier results file (``REUSE``) whose settings match this cell's."""
    if cell not in REUSE:
        return []
    name, methods = REUSE[cell]
    path = RESULTS / name
    if not path.exists():
        return []
    payload = json.loads(path.read_text())
    given = payload["settings"]
    wanted = {"schedule": CIFAR["schedule"], "epochs": CIFAR["epochs"], "n_train": CIFAR["n_train"],
              "n_test": CIFAR["n_test"], "width": CIFAR["width"], "seed": 0, "lr": 0.2, "wd": 0.0005, "bs": 128}
    if any(given.get(k) != v for k, v in wanted.items()):
        return []
    runs = []
    for run in payload["runs"]:
        if run["method"] in methods and run.get("finished", True):
            run = dict(run, cell=cell, seed=0, settings=settings(cell), reused_from=name)
            run["seconds"] = float(sum(run.get("seconds_per_epoch", [])))
            runs.append(run)
    return runs


def save(run_list, name=JSON):
    """Write the runs, merged with what another invocation may have written meanwhile."""
    path = RESULTS / name
    on_disk = json.loads(path.read_text())["runs"] if path.exists() else []
    mine = {key(r) for r in run_list}
    merged = [r for r in on_disk if key(r) not in mine] + run_list
    write_json(name, {"runs": merged})
    return merged


def key(run):
    return (run["cell"], run["method"], run["noise_type"], float(run["noise"]), int(run["seed"]))


def close_rows(runs, cell, seed=0, points=0.03):
    """The noise settings of ``cell`` where two methods' last-epoch accuracies at ``seed`` are
    within ``points`` of each other."""
    frame = pd.DataFrame([r for r in runs if r["cell"] == cell and r["seed"] == seed])
    rows = set()
    if frame.empty:
        return rows
    for (noise_type, noise), group in frame.groupby(["noise_type", "noise"]):
        acc = np.sort(group.last_acc.to_numpy())
        if acc.size > 1 and np.min(np.diff(acc)) < points:
            rows.add((noise_type, float(noise)))
    return rows


def summarise(runs):
    """One row per cell and noise setting: each method's mean last (best) accuracy over seeds, the
    judgement of the issue's criteria for the default."""
    frame = pd.DataFrame(runs)
    rows, detail = [], []
    for (cell, noise_type, noise), group in frame.groupby(["cell", "noise_type", "noise"], sort=False):
        row = {"cell": cell, "noise": f"{'sym' if noise_type == 'symmetric' else 'asym'} {noise:g}"}
        means, seeds = {}, {}
        for method in METHODS:
            runs_m = group[group.method == method]
            if runs_m.empty:
                row[LABELS[method]] = "-"
                continue
            means[method] = runs_m.last_acc.mean()
            seeds[method] = sorted(runs_m.seed)
            spread = f" ±{runs_m.last_acc.std(ddof=0):.3f}" if len(runs_m) > 1 else ""
            borrowed = "*" if "borrowed" in runs_m and (runs_m.borrowed == True).any() else ""  # noqa: E712
            row[LABELS[method]] = f"{means[method]:.3f}{spread} ({runs_m.best_acc.mean():.3f}){borrowed}"
        own = group[group.borrowed != True] if "borrowed" in group else group  # noqa: E712
        row["seeds"] = ",".join(str(s) for s in sorted(set(own.seed)))  # of this file's runs
        if "default" in means and all(m in means for m in ("ce", "mixup-0.4", "mixup")):
            shared = sorted(set.intersection(*(set(seeds[m]) for m in ("ce", "mixup-0.4", "mixup", "default"))))
            mean_on = {m: group[(group.method == m) & group.seed.isin(shared)].last_acc.mean() for m in means}
            best = max(mean_on[m] for m in ("ce", "mixup-0.4", "mixup"))
            row["safe"] = "yes" if mean_on["default"] >= best - 0.01 else f"NO ({mean_on['default'] - best:+.3f})"
        else:
            row["safe"] = "-"
        ce = group[group.method == "ce"]
        memorises = not ce.empty and (ce.best_acc - ce.last_acc).mean() >= 0.10
        if noise >= 0.8 and memorises and "default" in means and "m-dyr-h" in means:
            row["strong"] = "yes" if means["default"] >= means["m-dyr-h"] else f"NO ({means['default'] - means['m-dyr-h']:+.3f})"
        else:
            row["strong"] = "-"
        default = group[group.method == "default"]
        row["classes (default)"] = ",".join(str(int(c)) for c in default.classes_predicted) if not default.empty else "-"
        rows.append(row)
        for run in default.itertuples():
            epochs = getattr(run, "tracked_epochs", None)
            where = f" (epochs {', '.join(str(e + 1) for e in epochs)})" if isinstance(epochs, list) else ""
            auc = run.auc_per_epoch if isinstance(run.auc_per_epoch, list) and noise > 0 else None
            scale = getattr(run, "bootstrap_scale_per_epoch", None)
            fit, alpha = getattr(run, "label_fit_per_epoch", None), getattr(run, "mixup_alpha_per_epoch", None)
            rewound = getattr(run, "rewound_to", None)
            rewound = None if rewound is None or rewound != rewound else rewound  # absent, or NaN in the frame
            signal = getattr(run, "memorisation_per_epoch", None)  # recorded from 2026-12-01 on
            signal = signal if isinstance(signal, list) and any(v == v for v in signal) else None
            detail.append(
                f"- {cell}, {row['noise']}, seed {run.seed}, per tracked epoch{where}: detector AUC "
                + (", ".join(f"{a:.2f}" for a in auc) if auc else "undefined (no noise)")
                + "; estimated noise rate " + ", ".join(f"{a:.2f}" for a in run.noise_rate_per_epoch)
                + ("; bootstrapping scale " + ", ".join(f"{a:.2f}" for a in scale) if isinstance(scale, list) else "")
                + ("; share of the training labels fitted " + ", ".join(f"{a:.3f}" for a in fit) if isinstance(fit, list) else "")
                + ("; mixup alpha (0: unmixed) " + ", ".join(f"{a:g}" for a in alpha) if isinstance(alpha, list) else "")
                + ("; memorisation beyond chance (- where unread) " + ", ".join("-" if v != v else f"{v:.3f}" for v in signal)
                   if signal is not None else "")
                + (f"; at the call, rewound to the weights of epoch {int(rewound) + 1}" if rewound is not None else ""))
    return pd.DataFrame(rows), detail


NOISY_VALIDATION_INTRO = [
    "The same cells, methods and criteria as `training_matrix.md`, with one change: the learner validates on a "
    "held-out split whose labels are noised as the training labels are (same rate and type, drawn from their "
    "own random stream), as a user's validation split of noisy data would be, and the test set is only scored "
    "(a forward in eval mode after every epoch). In `training_matrix.md` the validation set is the test set, "
    "with clean labels: lnc's default reads its validation accuracy (to tell learning from memorising before "
    "the memorisation call, and to choose the weights the rewind goes back to), so there it saw the labels it "
    "was then scored on. CE, MixUp and M-DYR-H read no validation set: they train as in the other file, and "
    "their scores differ from it where the test set does (the digits) and by the draw of the run.",
    "",
    "Validation splits: `digits`, its 540 test images in two halves by a fixed permutation, 270 validate "
    "(noisy labels) and 270 test, for every method; `mnist2000` and `mnist5000`, the 500 (1,000) MNIST "
    "training images after the cell's first 2,000 (5,000), and `cifar10` the 2,000 after its first 10,000, each "
    "with the same test images as the other file.",
    "",
    "Each cell: mean last-epoch test accuracy over the seeds run, ± their spread (population SD) where "
    "there are two, and in brackets the mean best epoch; `safe` and `strong` as in `training_matrix.md`. "
    "All runs seeded, on one machine (`machine`, `finished` in the JSON), so runs of the same seed are paired "
    "(same noise draw, initial weights and batch order).",
    "",
    "`*`: CE and MixUp runs borrowed from `training_matrix.json`, where a cell with the same test set (all but the "
    "digits) has none of its own here: these methods read no validation set, so only their draws differ, not what "
    "they are. They are not paired with the default's runs by seed.",
]


BASELINES = ("ce", "mixup-0.4", "mixup")


def borrowed_baselines(runs):
    """For the noisy-validation file: the CE and MixUp runs of ``training_matrix.json`` for each
    cell and noise setting that has runs here but none of that method, in the cells whose test set
    is the same in both files (all but the digits). These methods read no validation set."""
    path = RESULTS / JSON
    if not path.exists():
        return []
    here = {(r["cell"], r["noise_type"], float(r["noise"])) for r in runs}
    have = {(r["cell"], r["noise_type"], float(r["noise"]), r["method"]) for r in runs}
    return [dict(r, borrowed=True) for r in json.loads(path.read_text())["runs"]
            if r["cell"] != "digits" and r["method"] in BASELINES and (r["cell"], r["noise_type"], float(r["noise"])) in here
            and (r["cell"], r["noise_type"], float(r["noise"]), r["method"]) not in have]


def write_tables(runs, args):
    validation = getattr(args, "validation", "test")
    json_name, md_name = FILES[validation]
    table, detail = summarise(runs + (borrowed_baselines(runs) if validation == "noisy" else []))
    frame = pd.DataFrame(runs)
    seconds = frame.groupby(["cell", "method"]).seconds.median().unstack().reindex(columns=list(METHODS))
    seconds.columns = [LABELS[m] for m in seconds.columns]
    intro = NOISY_VALIDATION_INTRO if validation == "noisy" else [
        "Each cell: mean last-epoch test accuracy over the seeds run, ± their spread (population SD) where "
        "there are two, and in brackets the mean best epoch. `safe`: the default's last-epoch accuracy is at "
        "least the best of CE, MixUp 0.4 and MixUp 32 minus 1 point (means over the seeds all four ran). "
        "`strong`: at 80-90% noise where CE's last epoch is 10 points or more below its best, the default is "
        "at least M-DYR-H. `classes`: classes the default predicts on the test set at the last epoch, per seed.",
        "",
        "A seed fixes the noise draw, the initial weights and, for runs from 2026-11-30 22:00 UTC on, the batch "
        "order. Before then fastai's DataLoader drew its shuffling from Python's unseeded `random` module, so "
        "each run had its own batch order; the CE, MixUp and M-DYR-H runs (reused across re-runs of the default) "
        "are such runs. Methods are compared as independent draws over the same seeds, not as paired runs.",
        "",
        "Machines: a seeded run is repeatable on one machine, not across processors (floating-point kernels "
        "differ). Runs from 2026-12-01 on record theirs (`machine`, `finished` in the JSON); the earlier ones ran "
        "on an AMD EPYC. In the cells where lnc's default makes its memorisation call (digits at 50, 80 and 90%, "
        "MNIST-2000 at 80 and 90%) the default was re-run on 2026-12-01 with the rewind at the call, on an Intel "
        "Xeon, and again late that day with the prediction floor after the call (`prediction_floor`); M-DYR-H was "
        "re-run there, seeded, on the digits at 80 and 90% (paired with the default there), not "
        "on MNIST-2000 (its runs there are the older, unseeded AMD ones). Run times of 2026-12-01 are not "
        "comparable with the earlier ones (another machine, at times shared with other jobs).",
    ]
    cells = sorted({r["cell"] for r in runs}, key=list(NOISE).index)
    lines = [
        *intro,
        "",
        "Settings per cell: " + "; ".join(f"`{cell}` {settings(cell, validation)}" for cell in cells) + ". M-DYR-H: "
        "`DynamicBootstrapMixUp.preset('m-dyr-h')` (alpha 32, warm-up 0.35 of the run); default: `DynamicBootstrapMixUp()`.",
        "",
        f"Raw numbers (accuracy, AUC, noise rate per epoch): `benchmarks/results/{json_name}`. {__doc__.splitlines()[0]}",
        "",
        markdown_table(table),
        "",
        "## Median seconds per run",
        "",
        markdown_table(seconds.reset_index(), "{:.0f}"),
        "",
        "## The default's detector per epoch",
        "",
        *detail,
    ]
    title = "Training matrix: lnc's default against CE, MixUp and M-DYR-H"
    return write_results(md_name, title + (", validated on a noisy held-out split" if validation == "noisy" else ""), lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=list(NOISE), choices=list(NOISE))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--second-seed", default="all", choices=["all", "close"],
                        help="seeds after the first: for every noise setting, or only where two methods' first-seed "
                             "last-epoch accuracies are within 3 points")
    parser.add_argument("--noise", nargs="+", default=None, help="only these settings, e.g. sym:0.8 asym:0.4")
    parser.add_argument("--rerun", nargs="*", default=[], choices=METHODS, help="run these methods again even if saved")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--validation", default="test", choices=list(FILES),
                        help="what the learner validates on: the test set with its clean labels (training_matrix.json), "
                             "or a held-out split with noisy labels, the test set only scored (training_matrix_noisy_validation.json)")
    parser.add_argument("--tables-only", action="store_true")
    args = parser.parse_args()
    json_name = FILES[args.validation][0]
    path = RESULTS / json_name
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    if not args.tables_only:
        wanted = None
        if args.noise:
            wanted = {("symmetric" if t == "sym" else "asymmetric", float(r)) for t, r in (n.split(":") for n in args.noise)}
        for cell in args.cells:
            known = {key(r) for r in runs}
            if args.validation == "test":
                runs += [r for r in reused_runs(cell) if key(r) not in known]
            data = load_data(cell, args.data_dir, args.validation)
            for i, seed in enumerate(args.seeds):
                close = close_rows(runs, cell, args.seeds[0]) if i and args.second_seed == "close" else None
                for noise_type, noise in NOISE[cell]:
                    if (wanted is not None and (noise_type, noise) not in wanted) or (close is not None and (noise_type, noise) not in close):
                        continue
                    for method in args.methods:
                        k = (cell, method, noise_type, noise, seed)
                        old = [r for r in runs if key(r) == k and r.get("settings") == settings(cell, args.validation)]
                        if old and method not in args.rerun:
                            continue
                        start = time.perf_counter()
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            if cell == "cifar10":
                                n_valid = N_VALID[cell] if args.validation == "noisy" else 0
                                result = run_cifar(method, noise_type, noise, seed, data, args.data_dir, n_valid)
                            else:
                                result = run_small_cnn(cell, method, noise_type, noise, seed, data)
                        result.update(cell=cell, method=method, noise_type=noise_type, noise=noise, seed=seed,
                                      settings=settings(cell, args.validation), seconds=result.get("seconds", time.perf_counter() - start))
                        result.update(machine=_cpu_model(), finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
                        result.pop("trace", None)
                        runs = save([r for r in runs if key(r) != k] + [result], json_name)
                        print(f"{cell} {noise_type} {noise:g} seed {seed} {method}: last {result['last_acc']:.4f} "
                              f"best {result['best_acc']:.4f} classes {result['classes_predicted']} ({result['seconds']:.0f} s)", flush=True)
                        write_tables(runs, args)
    print(write_tables(runs, args))


if __name__ == "__main__":
    main()
