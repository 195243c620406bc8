"""What every benchmark writes beside its table: the command, machine, date and versions."""

import datetime
import json
import importlib
import os
import platform
import sys
from pathlib import Path

from lnc_sklearn._atomic import atomic_path

# Where the tables go: $LNC_RESULTS_DIR (benchmarks/gpu_check.sh points it at its output folder,
# so that a GPU machine's results come back whole), else the repository's benchmarks/results/.
_CHECKOUT = Path(__file__).resolve().parents[1] / "benchmarks"  # present in a source checkout
RESULTS = Path(os.environ.get("LNC_RESULTS_DIR") or (_CHECKOUT if _CHECKOUT.is_dir() else Path.cwd() / "benchmarks") / "results")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_line():
    """How this benchmark was started, as a shell command relative to the current folder."""
    return " ".join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]])


def environment(packages=("numpy", "scipy", "sklearn", "pandas", "torch", "fastai")):
    """Markdown lines describing how and where the benchmark ran."""
    versions = []
    for name in ("lnc_sklearn", *packages):
        if name in ("torch", "fastai") and name not in sys.modules:
            continue  # only where the benchmark used them
        try:
            versions.append(f"{name} {importlib.import_module(name).__version__}")
        except ImportError:
            pass
    gpu = "none"
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        gpu = sys.modules["torch"].cuda.get_device_name(0)
    command = command_line()
    return [
        f"- command: `{command}`",
        f"- machine: {_cpu_model()}, {os.cpu_count()} logical CPUs; GPU: {gpu}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- python {platform.python_version()}; " + ", ".join(versions),
    ]


def write_results(filename, title, body_lines):
    """Write ``results/filename`` whole (temporary file, then rename) and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / filename
    text = "\n".join([f"# {title}", "", *environment(), "", *body_lines, ""])
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def write_json(filename, payload, indent=1):
    """Write ``payload`` with the environment to ``results/filename`` as JSON, whole or not at all
    (``indent=None``: on one line, for tables of many rows)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / filename
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"environment": environment(), **payload}, indent=indent))
    return path


def markdown_table(frame, floatfmt="{:.4f}"):
    """A pandas DataFrame as a Markdown table (without needing tabulate)."""
    def cell(v):
        return floatfmt.format(v) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + " --- |" * frame.shape[1]]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def method_by_noise(frame, values, labels):
    """``frame[values]`` as a table with one row per method (named and ordered as in ``labels``,
    a dict from method key to name) and one column per noise rate; "-" where a method did not
    run at a rate."""
    order = [m for m in labels if m in set(frame.method)]
    table = frame.pivot(index="method", columns="noise", values=values).reindex(order)
    table = table.astype(object).where(table.notna(), "-")
    if frame[values].dtype.kind in "iu":  # counts stay integers where the pivot's NaN made them floats
        table = table.map(lambda v: v if v == "-" else int(v))
    table.columns = [f"r = {c:g}" for c in table.columns]
    table.index = [labels[m] for m in table.index]
    return table.reset_index().rename(columns={"index": "method"})


def callback_history(cb):
    """The per-epoch numbers of a ``DynamicBootstrapMixUp``'s history that the benchmarks keep,
    as lists keyed as their results files have them: nothing without a callback or a pass."""
    if cb is None or not cb.epoch_records:
        return {}
    history = cb.history
    numbers = {
        "noise_fraction_per_epoch": history["noise_fraction"].round(4).tolist(),
        "noise_rate_per_epoch": history["noise_rate"].round(4).tolist(),
        "tracked_epochs": history["epoch"].astype(int).tolist(),
    }
    if "bootstrap_scale" in history:
        numbers["bootstrap_scale_per_epoch"] = history["bootstrap_scale"].round(3).tolist()
    if "alpha" in history:  # lnc mode: each tracked epoch's mixup alpha (0 where an earlier version trained unmixed)
        unmixed = history["unmixed"] if "unmixed" in history else [False] * len(history)
        numbers["mixup_alpha_per_epoch"] = [0.0 if u else float(a) for a, u in zip(history["alpha"], unmixed)]
        numbers["label_fit_per_epoch"] = history["label_fit"].round(4).tolist()
        # heavy noise: the memorisation signal beyond chance that times the call (NaN before it can be read)
        numbers["memorisation_per_epoch"] = history["memorisation"].round(4).tolist()
    if "phase" in history:  # lnc mode: each tracked epoch's phase
        numbers["phase_per_epoch"] = history["phase"].tolist()
    if "rewound_to" in history:  # lnc mode, heavy noise: the epoch the call went back to
        numbers["rewound_to"] = next((int(e) for e in history["rewound_to"] if e == e), None)
    if "auc" in history:
        numbers["auc_per_epoch"] = history["auc"].round(4).tolist()
    return numbers
