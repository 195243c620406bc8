"""benchmarks/gpu_check.sh --smoke: the GPU check's every step at toy size, on this machine,
so that the command is known to work before a GPU is ever lent to run it (about 40 s)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def run(*args, cwd=REPO):
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("LNC_RESULTS_DIR", None)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=480)


def test_smoke_run_writes_every_result(tmp_path):
    out = tmp_path / "check"
    result = run("--smoke", "--out", str(out), cwd=tmp_path)  # from another folder: the script finds the repository
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (out / "gpu_check.md").read_text()
    assert log.count("- exit 0,") == 3, log
    assert "passed" in (out / "gpu_tests.txt").read_text()
    overhead = (out / "callback_overhead_cifar10_gpu.md").read_text()
    assert all(f"| {name} |" in overhead for name in ("fastai MixUp", "M-DYR-H (paper preset)", "DynamicBootstrapMixUp()", "reference-style"))
    table = (out / "cifar10_gpu.md").read_text()
    for name in ("cross-entropy", "fastai MixUp", "M-DYR-H", "DynamicBootstrapMixUp()"):
        assert f"| {name} | 0." in table, table  # an accuracy for every method
    assert "cut short" not in table
    assert not (REPO / "benchmarks" / "results" / "gpu_check.md").read_text().startswith("# GPU check (smoke")


def test_bad_arguments_say_what_is_accepted(tmp_path):
    missing = run("--smoke")
    assert missing.returncode == 2 and "--out DIR is required" in missing.stderr
    unknown = run("--fast", "--out", str(tmp_path))
    assert unknown.returncode == 2 and "unknown argument '--fast'" in unknown.stderr
