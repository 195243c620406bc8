"""The install gives a working fastai with vision (torch and torchvision a matching pair)."""

import importlib


def test_fastai_vision_imports():
    # With a CPU-only torch wheel beside PyPI's torchvision this import fails with
    # "operator torchvision::nms does not exist": the install must pair them.
    module = importlib.import_module("fastai.vision.all")
    assert hasattr(module, "vision_learner")


def test_lnc_sklearn_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, lnc_sklearn; print('torch' in sys.modules, 'fastai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_ci_runs_the_readmes_test_command():
    """.ci/run and README.md's promised test command are the same command."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    ci = [line for line in (repo / ".ci" / "run").read_text().splitlines() if line.startswith("python -m pip")]
    assert len(ci) == 1 and f"\n{ci[0]}\n" in (repo / "README.md").read_text()
