"""Importing lnc changes nobody else's code: checked in fresh interpreters."""

import subprocess
import sys


def run(code):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_pytorch_losses_import_no_fastai():
    run("import sys, lnc_fastai.losses; assert 'fastai' not in sys.modules, sorted(m for m in sys.modules if 'fastai' in m)")
    run("import sys, lnc_fastai; assert 'fastai' not in sys.modules")
    # the plain PyTorch parts of the callback: a batch's mixing, the pass's kept batches and its outputs
    run("import sys, lnc_fastai.batches, lnc_fastai.pass_inputs, lnc_fastai.batch_outputs; assert 'fastai' not in sys.modules")
    # the plain PyTorch core: the correction and the loss pass
    run("import sys; from lnc_fastai import NoiseCorrection, TrainingPolicy, loss_pass; assert 'fastai' not in sys.modules")


def test_the_policy_and_what_it_reads_import_neither_torch_nor_fastai():
    """The policy is plain Python: its module, and the modules of the package it imports, name
    neither torch nor fastai (the package's ``__init__`` imports torch for the losses)."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "lnc_fastai"
    for name in ("policy", "adaptive", "schedule", "options"):
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
        imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0]
        relative = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1]
        assert not any(m.split(".")[0] in ("torch", "fastai") for m in imported), (name, imported)
        if name == "policy":
            assert set(relative) <= {"adaptive", "schedule"}, relative


def test_fastai_is_left_as_it_is():
    run(
        "import fastai.learner, fastai.distributed\n"
        "save, load, broadcast = fastai.learner.Learner.save, fastai.learner.Learner.load, fastai.distributed.DistributedDL._broadcast\n"
        "import lnc_fastai\n"
        "from lnc_fastai import DynamicBootstrapMixUp, GlooBroadcast, SaveModelWithState, plot_top_suspects, save_checkpoint\n"
        "import lnc_fastai.callback, lnc_fastai.state, lnc_fastai.gloo, lnc_fastai.plots, lnc_fastai.tracking\n"
        "assert fastai.learner.Learner.save is save and fastai.learner.Learner.load is load\n"
        "assert fastai.distributed.DistributedDL._broadcast is broadcast\n"
    )


def test_no_import_cycle_between_the_modules():
    """Each module imports on its own, first, in a fresh interpreter."""
    for module in ("callback", "state", "tracking", "results", "plots", "correction", "policy", "options", "paper"):  # the ones that import each other
        run(f"import lnc_fastai.{module}")


def test_layout_library_imports_no_experiments_and_nobody_edits_sys_path():
    """The library never imports examples, benchmarks, tests or lnc_experiments; examples,
    benchmarks and tests share code through lnc_experiments, not by editing sys.path."""
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    forbidden = {"examples", "benchmarks", "tests", "lnc_experiments", "conftest"}
    for package in ("lnc_sklearn", "lnc_fastai"):
        for path in (repo / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                assert not any(name.split(".")[0] in forbidden for name in names), (path, names)
    for folder in ("lnc_sklearn", "lnc_fastai", "lnc_experiments", "examples", "benchmarks", "tests"):
        for path in (repo / folder).glob("*.py"):
            if path != Path(__file__).resolve():  # this file names what it looks for
                assert "sys.path" not in path.read_text(), path
