"""Importing lnc changes nobody else's code: checked in fresh interpreters."""

import subprocess
import sys


def run(code):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_pytorch_losses_import_no_fastai():
    run("import sys, lnc_fastai.losses; assert 'fastai' not in sys.modules, sorted(m for m in sys.modules if 'fastai' in m)")
    run("import sys, lnc_fastai; assert 'fastai' not in sys.modules")


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
    for module in ("callback", "state", "tracking", "results", "plots", "gloo", "batches", "schedule", "distributed"):
        run(f"import lnc_fastai.{module}")
