"""Everything GPU-specific that lnc measures, in one time-boxed run (``benchmarks/gpu_check.sh``).

Steps, each in a process of its own so that one failing or running long cannot take the others
down, each writing into ``--out`` as soon as it ends (a run cut short keeps what it finished):

1. ``gpu_tests.txt``: the CUDA-relevant tests (``tests/test_gpu.py``: the callback under fp16 and
   bf16 autocast with channels-last, the loss pass and the un-mixed forward under autocast, the
   posterior table on the device, host synchronisations per batch, written to ``gpu_syncs.md``;
   and the callback, loss, reliability and CIFAR-10 example tests, which run on the GPU there).
2. ``callback_overhead_cifar10_gpu.md`` / ``.json``: seconds per epoch of fastai ``MixUp``,
   ``DynamicBootstrapMixUp`` and the reference-style variant, full CIFAR-10, PreAct ResNet-18 at
   width 64, mixed precision, channels-last, in one process.
3. ``cifar10_gpu.md`` / ``.json``: CIFAR-10 at 80% symmetric noise, cross-entropy, fastai MixUp,
   M-DYR-H and ``DynamicBootstrapMixUp()`` as constructed with no arguments, trained at once (one
   process each) for as many one-cycle epochs as the time left allows (planned from step 2's
   epoch times), with per-epoch test accuracy and detector AUC.

``gpu_check.md`` is the log: the machine, each step's command, seconds, exit status and the end of
its output (``steps.log`` holds steps 2 and 3's whole output).
``--smoke`` runs the same steps at toy size (synthetic images, width 4) to check the plumbing on
any machine, a CPU included.
"""

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_gpu.py", "tests/test_callback.py", "tests/test_losses.py", "tests/test_reliability.py",
         "tests/test_cifar10_example.py"]
SMOKE_TESTS = ["tests/test_gpu.py", "tests/test_losses.py"]
METHODS = ["ce", "mixup", "m-dyr-h", "default"]
RESULTS = ["gpu_check.md", "gpu_tests.txt", "gpu_syncs.md", "callback_overhead_cifar10_gpu.md",
           "callback_overhead_cifar10_gpu.json", "cifar10_gpu.md", "cifar10_gpu.json", "steps.log"]
# Epoch times to plan with when the overhead step left none (seconds, one run alone on an H200 class GPU).
FALLBACK_EPOCH = {"mixup": 15.0, "bootstrap": 25.0}
# How much slower each of the concurrent runs is assumed to go than one run alone on the GPU: four
# runs at width 64 took 7.1-9.9 s per epoch on an H200 where one alone took 6.0 (MixUp) and 7.5
# (DynamicBootstrapMixUp) s, start-up included (benchmarks/results/gpu_check.md); 1.6 leaves a margin.
SHARING_SLOWDOWN = 1.6
# Seconds for a training process to start: imports, decoding CIFAR-10, cuDNN's kernel search.
PROCESS_START = 30.0


class Log:
    """``gpu_check.md``: appended step by step, so that a run cut short still says what it did."""

    def __init__(self, path):
        self.path = path
        path.write_text("")  # a fresh log, also where --out held an earlier run's

    def write(self, *lines):
        with open(self.path, "a") as f:
            f.write("\n".join(lines) + "\n")
        print(*lines, sep="\n", flush=True)


def machine_lines():
    lines = [f"- python {platform.python_version()} ({sys.executable})"]
    try:
        import torch

        lines.append(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            lines.append(f"- GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs, "
                         f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
        else:
            lines.append("- GPU: none visible to torch")
    except Exception as error:  # the log must say what is there, whatever is missing
        lines.append(f"- torch: not importable ({error})")
    try:
        import fastai

        lines.append(f"- fastai {fastai.__version__} from {Path(fastai.__file__).parent}")
    except Exception as error:
        lines.append(f"- fastai: not importable ({error})")
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        if smi.returncode == 0:
            lines.append(f"- nvidia-smi: {smi.stdout.strip()}")
    except (OSError, subprocess.TimeoutExpired):
        pass
    lines.append(f"- CPUs: {os.cpu_count()}")
    return lines


def run_step(log, name, command, timeout, output, env=None):
    """Run one step in a process group of its own, its output appended to ``output``; at ``timeout``
    stop the whole group (training processes it started included). Log the command, seconds,
    exit status and the end of the output; never raise."""
    log.write("", f"## {name}", "", f"- command: `{shlex.join(command)}`", f"- time allowed: {timeout:.0f} s")
    if timeout < 5:
        log.write("- skipped: no time left")
        return None
    start = time.time()
    with open(output, "a") as stream:  # steps may share one output file
        offset = stream.tell()
        process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **(env or {})}, stdout=stream,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = f"exit {process.wait(timeout)}"
        except subprocess.TimeoutExpired:
            status = f"stopped after {timeout:.0f} s"
            for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                try:
                    os.killpg(process.pid, sig)
                    process.wait(grace)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
    with open(output, errors="replace") as stream:
        stream.seek(offset)
        tail = "\n".join(stream.read().strip().splitlines()[-40:])
    log.write(f"- {status}, {time.time() - start:.0f} s", "", "```", tail, "```")
    return status


def plan_epochs(overhead_json, seconds_left, jobs, smoke):
    """One-cycle epochs that the concurrent comparison can finish in ``seconds_left``."""
    epoch = dict(FALLBACK_EPOCH)
    source = "fallback guesses (no overhead figures)"
    if overhead_json.exists():
        rows = {row["variant"]: row["median s/epoch"] for row in json.loads(overhead_json.read_text())["rows"]}
        epoch = {"mixup": rows["fastai MixUp"], "bootstrap": max(rows["M-DYR-H (paper preset)"], rows["DynamicBootstrapMixUp()"])}
        source = f"step 2's medians (MixUp {epoch['mixup']:.1f} s, the slower bootstrapping callback {epoch['bootstrap']:.1f} s per epoch)"
    # The slowest run: 35% warm-up at MixUp's pace, then bootstrapping; plus validation.
    slowest = (0.35 * epoch["mixup"] + 0.65 * epoch["bootstrap"]) * 1.1
    slowdown = SHARING_SLOWDOWN if jobs > 1 and not smoke else 1.0
    start = 5.0 if smoke else PROCESS_START
    epochs = int((seconds_left - start) // (slowest * slowdown))
    return (3 if smoke else max(3, min(epochs, 40))), (
        f"planned from {source}: slowest run about {slowest:.1f} s per epoch alone, assumed {slowdown:g}x slower with "
        f"{jobs} runs sharing the device, {start:.0f} s to start")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the results (created)")
    parser.add_argument("--data-dir", default=None, help="folder holding cifar10_jpeg.npz (else $LNC_DATA_DIR)")
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole check, from --start")
    parser.add_argument("--start", type=float, default=None, help="Unix time the check started (default: now)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, synthetic data: checks the plumbing anywhere")
    parser.add_argument("--jobs", type=int, default=4, help="comparison runs trained at once")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name in RESULTS:  # an earlier run's results in the same folder must not pass for this run's
        (out / name).unlink(missing_ok=True)
    start = args.start or time.time()
    deadline = start + args.budget - (5 if args.smoke else 15)  # the last seconds write the tables

    def left():
        return deadline - time.time()

    log = Log(out / "gpu_check.md")
    log.write("# GPU check" + (" (smoke: toy sizes, synthetic data)" if args.smoke else ""), "",
              f"- started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(start))}, budget {args.budget:.0f} s",
              f"- command: `{shlex.join(sys.argv)}`", *machine_lines())
    env = {"LNC_RESULTS_DIR": str(out), "LNC_GPU_REPORT_DIR": str(out), "PYTHONUNBUFFERED": "1"}
    data = []
    if args.data_dir:
        env["LNC_DATA_DIR"] = str(Path(args.data_dir).resolve())
        data = ["--data-dir", env["LNC_DATA_DIR"]]
    python = sys.executable

    # 1. Tests.
    tests = SMOKE_TESTS if args.smoke else TESTS
    run_step(log, "1. CUDA-relevant tests", [python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *tests],
             min(60 if args.smoke else 130, left() - 60), out / "gpu_tests.txt", env)

    # 2. Overhead per epoch, one process.
    if args.smoke:
        size = ["--dataset", "synthetic", "--width", "4", "--n-train", "512", "--n-test", "256", "--rounds", "1",
                "--round-epochs", "1", "--no-as-before"]  # as on a GPU: the CPU-only comparisons left out
    else:
        size = ["--dataset", "cifar10", "--width", "64", "--n-train", "50000", "--n-test", "1000", "--rounds", "2", *data]
    # smoke: a ceiling, not a target (about 15 s on an idle 2-core CPU); a CPU shared with a
    # training run has needed over 100 s
    allowed = min(180, left() * 0.6) if args.smoke else min(200, left() * 0.45)
    run_step(log, "2. Overhead per epoch", [python, "benchmarks/callback_overhead.py", "--model", "preact-resnet18",
                                            "--loader", "tensor", "--max-seconds", f"{allowed - 25:.0f}",
                                            "--out-name", "callback_overhead_cifar10_gpu.md", *size], allowed,
             out / "steps.log", env)

    # 3. The largest 80%-noise comparison that fits.
    epochs, reasoning = plan_epochs(out / "callback_overhead_cifar10_gpu.json", left(), args.jobs, args.smoke)
    log.write("", f"Comparison: {epochs} epochs, {reasoning}.")
    if args.smoke:
        size = ["--synthetic", "--width", "4", "--n-train", "512", "--n-test", "256"]
    else:
        size = ["--n-train", "0", "--n-test", "0", "--width", "64", *data]
    run_step(log, "3. CIFAR-10, 80% symmetric noise", [
        python, "benchmarks/cifar10.py", "--tag", "gpu", "--fresh", "--schedule", "one-cycle", "--epochs", str(epochs),
        "--noise-rates", "0.8", "--methods", *METHODS, "--jobs", str(args.jobs), "--deadline", f"{deadline:.0f}", *size,
    ], left() + 10, out / "steps.log", {**env, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 4) // args.jobs))})
    log.write("", f"Finished after {time.time() - start:.0f} s of a {args.budget:.0f} s budget.")
    expected = ["gpu_tests.txt", "callback_overhead_cifar10_gpu.md", "cifar10_gpu.md"]
    missing = [name for name in expected if not (out / name).exists()]
    if missing:
        log.write(f"Missing results: {', '.join(missing)}")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
