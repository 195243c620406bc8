"""CIFAR-10 under symmetric label noise: CE, fastai MixUp, M-DYR-H (M-DYR-S, MD-DYR-SH) in one table.

Every run is ``examples/cifar10.py`` with the same settings, data order and seed; only the method
and the noise rate change. Runs accumulate in ``results/cifar10_<tag>.json`` (each is saved as
it finishes, so an interrupted sweep keeps what it measured) and the Markdown table is rewritten
from it after every run.

Reduced CPU setting (``--tag cpu``): the first 10,000 training images, the first 2,000 test
images, PreAct ResNet-18 at width 16 (a sixteenth of the paper's multiply-adds), ``fit_one_cycle``
for 12 epochs::

    python benchmarks/cifar10.py --tag cpu --n-train 10000 --n-test 2000 --width 16 --epochs 12 \\
        --noise-rates 0.8 0.5 0 --methods ce mixup m-dyr-h

GPU (``--tag gpu``): full data, width 64, e.g. ``--epochs 30``, timings per epoch included.
``--jobs N`` trains N runs at once, each ``examples/cifar10.py`` in a process of its own (a
batch of 128 keeps an H100/H200 mostly idle, so several runs share it well; their seconds per
epoch are then shared-GPU times). ``--deadline`` (Unix time) stops the runs still going then; a
run stopped early keeps its curves so far, marked as cut short in the tables.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lnc_experiments.cifar10 import METHODS, complete, parser, train
from lnc_experiments.data import load_arrays
from lnc_experiments.results import RESULTS, command_line, markdown_table, method_by_noise, write_json, write_results

REPO = Path(__file__).resolve().parents[1]

LABELS = {"ce": "cross-entropy", "mixup": "fastai MixUp", "m-dyr-h": "M-DYR-H", "m-dyr-s": "M-DYR-S",
          "md-dyr-sh": "MD-DYR-SH", "default": "DynamicBootstrapMixUp()"}


def write_tables(runs, args, json_path):
    frame = pd.DataFrame(runs)
    def by_method(values):
        return method_by_noise(frame, values, LABELS)

    finished = frame.finished if "finished" in frame else pd.Series(True, index=frame.index)
    stopped = frame.stopped if "stopped" in frame else pd.Series("deadline", index=frame.index)
    frame["cell"] = [f"{a:.4f} / {b:.4f}" + ("" if done else f" (cut short after {len(c)} of {args.epochs} epochs: "
                                                              f"{why if isinstance(why, str) else 'deadline'})")
                     for a, b, done, c, why in zip(frame.last_acc, frame.best_acc, finished.fillna(True),
                                                   frame.acc_per_epoch, stopped)]
    if "classes_predicted" not in frame:
        frame["classes_predicted"] = np.nan
    frame["classes_predicted"] = frame.classes_predicted.map(lambda v: "-" if pd.isna(v) else int(v))
    frame["median_seconds"] = [f"{np.median(s):.1f}" for s in frame.seconds_per_epoch]
    lines = [
        f"Data: the first {args.n_train or 50000} "
        f"{'synthetic (colour-coded random, a smoke test)' if getattr(args, 'synthetic', False) else 'CIFAR-10'} "
        "training images with symmetric noise (rate r: that fraction "
        f"relabelled uniformly at random, true class included; seed {args.seed}), the first {args.n_test or 10000} test "
        f"images. Model: PreAct ResNet-18 at width {args.width} (the paper: 64). Schedule: {args.schedule}, "
        f"{args.epochs} epochs, SGD momentum 0.9, lr {args.lr}, weight decay {args.wd}, batch {args.bs}; random crop "
        f"(4-pixel padding) and flip. Mixup alpha {args.alpha}; M-DYR warm-up "
        f"{'105/300' if args.schedule == 'paper' else args.warmup} of the run. Device: {frame.device.iloc[0]}"
        f"{', mixed precision' if frame.fp16.iloc[0] else ''}{', channels-last' if frame.channels_last.iloc[0] else ''}."
        + (f" Runs trained {args.jobs} at a time on that device, each in its own process: their seconds per epoch are "
           "shared-device times, not one run's." if getattr(args, "jobs", 1) > 1 else ""),
        "",
        f"Raw numbers per run (accuracy, seconds and detector AUC per epoch): `benchmarks/results/{json_path.name}`.",
        "",
        "## Test accuracy, last epoch / best epoch",
        "",
        markdown_table(by_method("cell")),
        "",
        "## Classes predicted on the test set (of 10) at the last epoch",
        "",
        markdown_table(by_method("classes_predicted")),
        "",
        "## Median seconds per epoch (training, the callback's loss pass, validation)",
        "",
        markdown_table(by_method("median_seconds")),
    ]
    lines += ["", "Commands that produced the runs above (each run records its own):", ""]
    lines += [f"- `{command}`" for command in dict.fromkeys(frame.command)]
    lines += ["", "## Test accuracy per epoch", ""]
    for row in frame.itertuples():
        lines.append(f"- {LABELS[row.method]}, r = {row.noise:g}: " + ", ".join(f"{a:.3f}" for a in row.acc_per_epoch))
    if "auc_per_epoch" in frame:
        lines += ["", "## Detector ROC-AUC per epoch against the true noise mask", ""]
        for row in frame.dropna(subset=["auc_per_epoch"]).itertuples():
            lines.append(f"- {LABELS[row.method]}, r = {row.noise:g}: " + ", ".join(f"{a:.3f}" for a in row.auc_per_epoch))
    return write_results(f"cifar10_{args.tag}.md", f"CIFAR-10 under label noise ({args.tag})", lines)


def main():
    p = parser()
    p.description = __doc__.splitlines()[0]
    p.add_argument("--methods", nargs="+", default=["ce", "mixup", "m-dyr-h"], choices=METHODS)
    p.add_argument("--noise-rates", dest="noise_rates", type=float, nargs="+", default=[0.0, 0.5, 0.8])
    p.add_argument("--tag", default="cpu", help="results go to results/cifar10_<tag>.{md,json}")
    p.add_argument("--fresh", action="store_true", help="discard earlier runs in the JSON file")
    p.add_argument("--tables-only", action="store_true", help="rewrite results/cifar10_<tag>.md from its JSON file, run nothing")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in a process of its own")
    p.add_argument("--deadline", type=float, default=None, help="Unix time at which runs still going are stopped")
    p.set_defaults(schedule="one-cycle", quiet=True)
    args = p.parse_args()
    args.noise = args.noise_rates[0]
    args = complete(args)
    json_path = RESULTS / f"cifar10_{args.tag}.json"
    runs = []
    if json_path.exists() and not args.fresh:
        earlier = json.loads(json_path.read_text())
        # Runs saved before runs recorded their command came from the command the file records.
        recorded = next(line for line in earlier["environment"] if line.startswith("- command:"))
        runs = [{"command": recorded.split("`")[1], **run} for run in earlier["runs"]]
    if args.tables_only:  # described with the settings the runs were made with
        if not runs:
            raise SystemExit(f"--tables-only: no runs in {json_path} to write a table from")
        settings = argparse.Namespace(**{**earlier["settings"], "tag": args.tag})
        print(f"written {write_tables(runs, settings, json_path)}")
        return
    command = command_line()
    settings = {k: v for k, v in vars(args).items() if k not in ("arrays", "tables_only")}
    grid = [(noise, method) for noise in args.noise_rates for method in args.methods]

    def record(result):
        nonlocal runs
        result["command"] = command
        runs = [r for r in runs if (r["method"], r["noise"]) != (result["method"], result["noise"])] + [result]
        state = "" if result.get("finished", True) else f", cut short after {len(result['acc_per_epoch'])} epochs"
        print(f"{result['method']:>9} r={result['noise']:g}: last {result['last_acc']:.4f} best {result['best_acc']:.4f} "
              f"({sum(result['seconds_per_epoch']):.0f} s{state})", flush=True)
        write_json(json_path.name, {"settings": settings, "runs": runs})
        write_tables(runs, args, json_path)

    if args.jobs > 1:
        if args.trace:
            raise SystemExit("--trace names one file: it cannot be given with --jobs > 1 (every run would write it)")
        for result in run_in_processes(grid, args):
            record(result)
        return
    args.arrays = load_arrays("synthetic" if args.synthetic else "cifar10", args.data_dir)  # decoded once for every run
    for noise, method in grid:
        args.noise, args.method = noise, method
        record(train(args)[0])


def child_command(args, noise, method, out):
    """``examples/cifar10.py`` with this sweep's settings for one run."""
    command = [sys.executable, str(REPO / "examples" / "cifar10.py"), "--method", method, "--noise", f"{noise:g}",
               "--out", str(out), "--quiet"]
    for name in ("noise_type", "labels", "schedule", "epochs", "lr", "wd", "bs", "alpha", "warmup", "width", "n_train",
                 "n_test", "seed", "data_dir", "device"):
        value = getattr(args, name)
        if value is not None:
            command += [f"--{name.replace('_', '-')}", str(value)]
    for flag in ("fp16", "channels_last"):
        if getattr(args, flag) is not None:
            command.append(f"--{'' if getattr(args, flag) else 'no-'}{flag.replace('_', '-')}")
    return command + (["--synthetic"] if args.synthetic else [])


def _stop(processes, grace=15):
    """Ask every process to stop, then kill those still running after ``grace`` seconds."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    end = time.time() + grace
    for process in processes:
        try:
            process.wait(max(0.1, end - time.time()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_in_processes(grid, args):
    """Yield each run's numbers as it finishes, ``args.jobs`` runs at a time; at the deadline,
    stop the rest and yield what each wrote so far (``finished`` false, ``stopped`` saying
    why). A run that fails prints the end of its log."""
    folder = Path(tempfile.mkdtemp(prefix="lnc_cifar10_"))
    pending, running = list(grid), {}
    try:
        while pending or running:
            while pending and len(running) < args.jobs:
                noise, method = pending.pop(0)
                out, log = folder / f"{method}_{noise:g}.json", folder / f"{method}_{noise:g}.log"
                with open(log, "w") as stream:
                    process = subprocess.Popen(child_command(args, noise, method, out), stdout=stream,
                                               stderr=subprocess.STDOUT)
                running[process] = (noise, method, out, log)
            time.sleep(1)
            late = args.deadline is not None and time.time() > args.deadline
            if late:
                _stop(list(running))
            for process in [p for p in running if p.poll() is not None]:
                noise, method, out, log = running.pop(process)
                failed = process.returncode != 0 and not late
                if failed or not out.exists():
                    tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-12:])
                    print(f"{method} r={noise:g}: {'failed' if failed else 'stopped at the deadline'} "
                          f"(exit {process.returncode}); its log ends:\n{tail}", flush=True)
                if out.exists():
                    result = json.loads(out.read_text())
                    if process.returncode != 0:
                        result.update(finished=False, stopped="deadline" if late else f"failed (exit {process.returncode})")
                    yield result
            if late:
                for noise, method in pending:
                    print(f"{method} r={noise:g}: not started, the deadline had passed", flush=True)
                pending = []
    finally:
        _stop(list(running))


if __name__ == "__main__":
    main()
