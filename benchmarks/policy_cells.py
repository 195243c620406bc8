"""The training policy's validation and test cells (``benchmarks/results/evaluation_split.md``,
section "The training policy").

Each cell is its own data, network and schedule, the same for every method and seed; the learner
validates on a held-out split whose labels are noised as the training labels are (as a user's
would be), and the clean test images are scored after every epoch apart from it.

Methods: ``ce`` (cross-entropy), ``ls`` (label smoothing 0.1), ``mixup-0.4`` (fastai ``MixUp()``),
``mixup-32`` (``MixUp(32)``), ``m-dyr-h`` (``DynamicBootstrapMixUp.preset("m-dyr-h")``),
``default`` (``DynamicBootstrapMixUp()``) and ``default-novalid`` (the same, blind to the
validation set: it reads no validation accuracy, as when a user has none). The ablation's
variants (``--methods off-<mechanism>``, ``count-probs``) switch one mechanism of the default
before the policy issue off (see ``ABLATIONS``); they run against that code (commit 5b8f5fd,
whose runs are tagged ``before``), where those mechanisms and arguments exist.

Every run is appended to ``results/policy_runs.jsonl`` as it ends (``--tag`` names the code it
ran, e.g. ``before`` or ``after``; runs already there with the same key are skipped), and
``--tables`` writes ``results/policy_<split>_<tag>.md`` from it. ``--shard i/n`` runs every n-th
run, so two processes (one thread each) share a 2-core machine.

Run: ``python benchmarks/policy_cells.py --split validation --methods default ce mixup-0.4
off-call --seeds 0 1 2 --tag before --shard 0/2`` (and ``--shard 1/2`` beside it).
"""

import argparse
import json
import time
import warnings

import numpy as np
import torch
from fastai.basics import (
    CrossEntropyLossFlat,
    LabelSmoothingCrossEntropyFlat,
    Learner,
    accuracy,
)
from fastai.callback.mixup import MixUp
from fastai.callback.schedule import fit_one_cycle  # noqa: F401
from fastai.torch_core import set_seed
from torch import nn

from lnc_experiments.data import as_float_images, image_dataloaders, load_arrays
from lnc_experiments.models import small_cnn
from lnc_experiments.noise_cases import inject_noise
from lnc_experiments.results import RESULTS, callback_history, write_results
from lnc_experiments.results import markdown_table as _markdown
from lnc_experiments.validation import ScoreTestSet, validation_seed
from lnc_fastai import DynamicBootstrapMixUp
from lnc_sklearn import count_label_noise

# train/valid: ranges of the training images; test: a range of the test images.
CELLS = {
    "fmnist-cnn": {"split": "validation", "dataset": "fashion_mnist", "model": "cnn", "train": (0, 1500), "valid": (1500, 2000),
                       "test": (0, 2000), "epochs": 12, "lr": 1e-2, "bs": 64, "noise": ["sym:0", "sym:0.1", "sym:0.4", "pair:0.3"]},
    "cifar-cnn": {"split": "test", "dataset": "cifar10", "model": "cnn", "train": (40000, 42500), "valid": (42500, 43500),
                      "test": (2000, 4000), "epochs": 12, "lr": 1e-2, "bs": 64, "noise": ["sym:0", "pair:0.3"]},
    "mnist-mlp": {"split": "test", "dataset": "mnist", "model": "mlp", "train": (50000, 52000), "valid": (52000, 52500),
                      "test": (4000, 6000), "epochs": 12, "lr": 1e-2, "bs": 64, "noise": ["sym:0.1", "pair:0.4", "sym:0.6"]},
}
BASELINES = ("ce", "ls", "mixup-0.4", "mixup-32", "m-dyr-h", "default", "default-novalid")
# One mechanism of the default switched off (the rules as they were before the policy issue).
ABLATIONS = {
    "off-call": "heavy noise: bootstrapping (and strong mixup) from the warm-up floor, no wait for a memorisation call",
    "off-wait": "heavy noise: light mixup, not unmixed, while waiting for the call",
    "off-rewind": "heavy noise: no rewind to the best validated weights at the call",
    "off-light": "light noise: never bootstraps (no light-noise gate: plain light mixup)",
    "off-strong": "no switch to strong mixup (at the call or once the network fits its labels)",
    "off-floor": "no prediction floor on the weights after the call",
    "off-settle": "no settling (unmixed last epochs)",
    "count-probs": "the light-noise gate reads confident learning's count from the pass's probabilities",
}
METHODS = BASELINES + tuple(ABLATIONS)
RUNS = RESULTS / "policy_runs.jsonl"


def markdown_table(frame):
    """The table's lines."""
    return _markdown(frame, "{:.3f}").split("\n")


class Ablated(DynamicBootstrapMixUp):
    """The default with one mechanism switched off where no constructor argument does it."""

    def __init__(self, off, **kwargs):
        super().__init__(**kwargs)
        self.off, self._probabilities = off, None

    def _update_regime(self, record, count):
        super()._update_regime(record, count)
        heavy_waiting = self.noise_regime_ == "heavy" and self.memorising_since_ is None
        if self.off == "off-call" and heavy_waiting and self.epoch + 1 >= self.warmup_epochs:
            self.memorising_since_ = self.epoch + 1
        if self.off == "off-light" and self.noise_regime_ == "light":
            self.light_rate_, self.light_memorising_ = 0.0, False
        if self.off == "count-probs" and self.noise_regime_ == "light" and self._probabilities is not None:
            self.light_rate_ = float(count_label_noise(self.labels_, self._probabilities).rate)

    def _update_targets(self, probabilities, predictions, labels):
        super()._update_targets(probabilities, predictions, labels)
        self._probabilities = probabilities


class Blind(DynamicBootstrapMixUp):
    """The default without a validation set to read (its validation counting switched off)."""

    def before_validate(self):
        self._valid_hits = None


def lnc_callback(method, mask):
    if method == "default":
        return DynamicBootstrapMixUp(noise_mask=mask)
    if method == "default-novalid":
        return Blind(noise_mask=mask)
    if method == "m-dyr-h":
        return DynamicBootstrapMixUp.preset("m-dyr-h", noise_mask=mask)
    if not hasattr(DynamicBootstrapMixUp, "_update_regime"):
        raise SystemExit(f"{method} switches off a rule of the default before the training-policy issue; "
                         "run it from a checkout of commit 5b8f5fd (this code has no such rule)")
    arguments = {"off-wait": {"unmixed_until_memorising": False}, "off-rewind": {"rewind": False},
                 "off-strong": {"strong_alpha": 0.4, "fitted_share": None}, "off-floor": {"prediction_floor": False},
                 "off-settle": {"settle": 0}}.get(method, {})
    return Ablated(method, noise_mask=mask, **arguments)


def mlp(n_pixels, n_classes=10, width=256):
    """Two hidden layers of ``width``: the test cells' other network."""
    return nn.Sequential(nn.Flatten(), nn.Linear(n_pixels, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, n_classes))


def cell_data(name, data_dir):
    cell = CELLS[name]
    x_train, y_train, x_test, y_test = load_arrays(cell["dataset"], data_dir)
    (a, b), (c, d), (e, f) = cell["train"], cell["valid"], cell["test"]
    return (as_float_images(x_train[a:b]), y_train[a:b], as_float_images(x_train[c:d]), y_train[c:d],
            as_float_images(x_test[e:f]), y_test[e:f])


def run(name, method, noise, seed, data):
    cell = CELLS[name]
    x_train, y_train, x_valid, y_valid, x_test, y_test = data
    kind, rate = noise.split(":")
    noisy, mask = inject_noise(y_train, kind, float(rate), seed, cell["dataset"])
    noisy_valid, _ = inject_noise(y_valid, kind, float(rate), validation_seed(seed), cell["dataset"])
    set_seed(seed)
    dls = image_dataloaders(x_train, noisy, x_valid, noisy_valid, bs=cell["bs"], augment=False)
    model = small_cnn(x_train.shape[1]) if cell["model"] == "cnn" else mlp(int(np.prod(x_train.shape[1:])))
    scorer = ScoreTestSet(x_test, y_test)
    cbs = [scorer]
    if method == "mixup-0.4":
        cbs.append(MixUp())
    elif method == "mixup-32":
        cbs.append(MixUp(32.0))
    elif method not in ("ce", "ls"):
        cbs.append(lnc_callback(method, mask))
    loss = LabelSmoothingCrossEntropyFlat(eps=0.1) if method == "ls" else CrossEntropyLossFlat()
    learn = Learner(dls, model, loss_func=loss, metrics=accuracy, cbs=cbs)
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.fit_one_cycle(cell["epochs"], cell["lr"])
    seconds = time.perf_counter() - start
    valid = [float(row[2]) for row in learn.recorder.values]
    result = {"cell": name, "split": cell["split"], "method": method, "noise": noise, "seed": seed,
              "wrong_label_rate": float(mask.mean()), "valid_wrong_label_rate": float((noisy_valid != y_valid).mean()),
              "last_acc": scorer.accuracies[-1], "best_acc": max(scorer.accuracies),
              "acc_at_best_valid": scorer.accuracies[int(np.argmax(valid))],
              "acc_per_epoch": [round(a, 4) for a in scorer.accuracies], "valid_acc_per_epoch": [round(v, 4) for v in valid],
              "classes_predicted": int(torch.unique(scorer.predicted).numel()), "seconds": seconds}
    cb = getattr(learn, "dynamic_bootstrap_mix_up", None) or next(
        (c for c in learn.cbs if isinstance(c, DynamicBootstrapMixUp)), None)
    result.update(callback_history(cb))
    if cb is not None and cb.epoch_records and "reason" in cb.history:
        result["reasons"] = cb.history["reason"].tolist()
    return result


def load_runs():
    if not RUNS.is_file():
        return []
    return [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]


def run_key(run):
    return (run["cell"], run["method"], run["noise"], int(run["seed"]), run.get("tag", ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=["validation", "test"], required=True)
    parser.add_argument("--cells", nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=list(BASELINES), choices=METHODS)
    parser.add_argument("--noise", nargs="+", default=None, help="only these settings, e.g. sym:0.4 pair:0.3")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tag", required=True, help="the code the runs measure, e.g. 'before' or 'after'")
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th run, starting at the i-th")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tables", action="store_true", help="only write the tables from the saved runs")
    args = parser.parse_args()
    cells = args.cells or [name for name, cell in CELLS.items() if cell["split"] == args.split]
    if args.tables:
        return write_tables(args, cells)
    torch.set_num_threads(args.threads)
    index, count = (int(v) for v in args.shard.split("/"))
    done = {run_key(r) for r in load_runs()}
    todo = [(c, m, n, s) for c in cells for n in (args.noise or CELLS[c]["noise"]) for s in args.seeds for m in args.methods]
    todo = [t for i, t in enumerate(todo) if i % count == index and (*t, args.tag) not in done]
    data = {}
    for name, method, noise, seed in todo:
        if name not in data:
            data = {name: cell_data(name, args.data_dir)}
        result = run(name, method, noise, seed, data[name])
        result["tag"] = args.tag
        with RUNS.open("a") as out:
            out.write(json.dumps(result) + "\n")
        print(f"{name} {noise} {method} seed {seed}: last {result['last_acc']:.3f} best {result['best_acc']:.3f} "
              f"({result['seconds']:.0f} s)", flush=True)


def ablation_lines(by_seed):
    """Each switched-off mechanism against the default, paired by seed, and the decision of the
    rule declared in evaluation_split.md: keep a mechanism whose removal costs at least 0.5 points
    over all runs, or at least 2 in one setting without gaining 2 in another."""
    import pandas as pd

    rows = []
    for method in [m for m in ABLATIONS if m in by_seed.columns]:
        diff = (by_seed[method] - by_seed["default"]).dropna() * 100
        per_setting = diff.groupby(level=[0, 1]).mean()
        costs = diff.mean() <= -0.5 or (per_setting.min() <= -2 and per_setting.max() < 2)
        if method == "count-probs":  # a replacement, not a removal: it must gain by the same margins
            decision = "adopt" if diff.mean() >= 0.5 or (per_setting.max() >= 2 and per_setting.min() > -2) else "keep the count"
        else:
            decision = "keep" if costs else "drop"
        rows.append({"variant": method, "what": ABLATIONS[method], "runs": len(diff), "mean diff": f"{diff.mean():+.2f}",
                     **{f"{c} {n}": f"{v:+.1f}" for (c, n), v in per_setting.items()},
                     "worst run": f"{diff.min():+.1f}", "decision": decision})
    return ["Ablation: last-epoch test accuracy minus the default's, paired by seed (points; mean per setting):", "",
            *markdown_table(pd.DataFrame(rows)), ""]


def target_lines(runs, by_seed):
    """The policy issue's targets, per setting: where cross-entropy memorises (its last epoch 5
    points or more below its best, mean over seeds), the defaults against M-DYR-H and against
    cross-entropy stopped at its best noisy-validation epoch; and the defaults' seconds per run
    against ``MixUp()``'s, paired by seed (whole runs, the same process and machine)."""
    import pandas as pd

    lines = []
    ce = runs[runs.method == "ce"].set_index(["cell", "noise", "seed"])
    stopped = ce.acc_at_best_valid
    drops = (ce.best_acc - ce.last_acc).groupby(level=[0, 1]).mean()
    rows = []
    for (cell, noise), drop in drops.items():
        if drop < 0.05:
            continue
        group = by_seed.loc[(cell, noise)]
        row = {"cell": cell, "noise": noise, "CE drop": f"{100 * drop:.1f}",
               "CE stopped": f"{stopped.loc[(cell, noise)].mean():.3f}"}
        for method in ("m-dyr-h", "default", "default-novalid"):
            if method in group:
                row[method] = f"{group[method].mean():.3f}"
        rows.append(row)
    if rows:
        lines += ["Where cross-entropy memorises (last epoch 5+ points below its best):", "",
                  *markdown_table(pd.DataFrame(rows)), ""]
    seconds = runs.pivot_table(index=["cell", "noise", "seed"], columns="method", values="seconds")
    if "mixup-0.4" in seconds:
        ratios = {m: (seconds[m] / seconds["mixup-0.4"]).groupby(level=0).mean()
                  for m in ("default", "default-novalid", "m-dyr-h") if m in seconds}
        lines += ["Seconds per run against `MixUp()`'s (paired by seed, mean per cell; whole runs, two runs side by "
                  "side on the 2-core machine): " + "; ".join(f"{m}: " + ", ".join(f"{c} {v:.2f}x" for c, v in r.items())
                                                               for m, r in ratios.items()), ""]
    return lines


def write_tables(args, cells):
    """Mean last-epoch test accuracy per cell, noise and method, with each method's paired
    difference from the best baseline, and what each run predicts."""
    import pandas as pd

    every = [r for r in load_runs() if r["cell"] in cells]
    own = [r for r in every if r.get("tag") == args.tag]
    if not own:
        raise SystemExit(f"no runs tagged {args.tag!r} for {cells}")
    # baselines run no lnc code: borrowed from another tag where this one lacks them; the
    # default of other tags is shown beside this one's as "default (<tag>)"
    have = {run_key(r)[:4] for r in own}
    borrowed = [r for r in every if r.get("tag") != args.tag and r["method"] in ("ce", "ls", "mixup-0.4", "mixup-32")
                and run_key(r)[:4] not in have]
    others = [{**r, "method": f"default ({r['tag']})"} for r in every if r.get("tag") != args.tag and r["method"] == "default"]
    runs = pd.DataFrame(own + borrowed + others)
    lines = [(f"Tag `{args.tag}`: {len(own)} runs; {len(borrowed)} baseline runs borrowed from other tags (they run no "
              f"lnc code); {len(others)} runs of other tags' default as `default (<tag>)`. The learner validates on a "
              "held-out split with noisy labels; accuracy on the clean test images at the last epoch, mean over seeds."), ""]
    table = runs.pivot_table(index=["cell", "noise"], columns="method", values="last_acc", aggfunc="mean").round(3)
    seeds = runs.groupby(["cell", "noise", "method"]).seed.nunique().unstack()
    lines += markdown_table(table.reset_index()) + [""]
    lines += ["Seeds per cell and method: " + ", ".join(sorted({str(int(v)) for v in seeds.values.ravel() if not np.isnan(v)})), ""]
    refs = [m for m in ("ce", "ls", "mixup-0.4", "mixup-32") if m in table.columns]
    by_seed = runs.pivot_table(index=["cell", "noise", "seed"], columns="method", values="last_acc")
    if refs:
        rows = []
        for (cell, noise), group in by_seed.groupby(level=[0, 1]):
            ref = group[refs].mean().idxmax()
            row = {"cell": cell, "noise": noise, "best baseline": ref}
            for method in group.columns:
                if method in refs:
                    continue
                diff = (group[method] - group[ref]).dropna() * 100
                row[method] = f"{diff.mean():+.1f} (min {diff.min():+.1f})" if len(diff) else ""
            rows.append(row)
        lines += ["Paired difference from the best of " + ", ".join(refs) + " (points; mean over seeds, worst seed):", ""]
        lines += markdown_table(pd.DataFrame(rows)) + [""]
    if any(m in ABLATIONS for m in table.columns) and "default" in table.columns:
        lines += ablation_lines(by_seed)
    memorised = runs[runs.method == "ce"].assign(drop=lambda f: f.best_acc - f.last_acc)
    lines += ["Classes predicted at the last epoch (fewest over seeds):", ""]
    lines += markdown_table(runs.pivot_table(index=["cell", "noise"], columns="method", values="classes_predicted",
                                             aggfunc="min").reset_index()) + [""]
    if not memorised.empty:
        lines += ["Cross-entropy's drop from its best epoch (points, mean): " + ", ".join(
            f"{c} {n}: {100 * d:.1f}" for (c, n), d in memorised.groupby(["cell", "noise"])["drop"].mean().items()), ""]
        stopped = runs[runs.method == "ce"].groupby(["cell", "noise"]).acc_at_best_valid.mean().round(3)
        lines += ["Cross-entropy stopped at its best noisy-validation epoch: " + ", ".join(
            f"{c} {n}: {v:.3f}" for (c, n), v in stopped.items()), ""]
    lines += target_lines(runs, by_seed)
    lines += ["Median seconds per run: " + ", ".join(f"{m} {s:.0f}" for m, s in runs.groupby("method").seconds.median().items())]
    write_results(f"policy_{args.split}_{args.tag}.md", f"Training policy, {args.split} cells ({args.tag})", lines)


if __name__ == "__main__":
    main()
