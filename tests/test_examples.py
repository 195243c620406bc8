"""The examples run as written and print what they promise."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script, *args):
    result = subprocess.run(
        [sys.executable, script, *args], cwd=EXAMPLES, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_detect_digits_main_job():
    out = _run("detect_digits.py", "--top", "5")
    for row in ("lnc default (losses)", "lnc default (labels)", "lnc default (labels, probabilities)"):
        assert row in out
    assert "90% interval" in out and "estimated noise matrix" in out and "Top 5 suspects" in out


@pytest.mark.filterwarnings("ignore")
def test_sklearn_pipeline_and_grid_search():
    out = _run("sklearn_pipeline.py")
    assert "Pipeline(-log, Beta mixture)" in out and "estimated noise" in out and "GridSearchCV best" in out


def test_noise_report_writes_reports_and_figures(tmp_path):
    out = _run("noise_report.py", "--out", str(tmp_path), "--epochs", "10", "--fastai-epochs", "3", "--top", "3")
    assert "most confused pairs among the flagged" in out and "top 3 suspects" in out
    assert "from fastai (DynamicBootstrapMixUp, 3 epochs" in out
    for name in ("digits_report.csv", "digits_losses.csv", "fastai_report.csv"):
        assert (tmp_path / name).stat().st_size > 0
    for name in ("mixture.png", "posterior.png", "history.png", "suspects.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_fastai_quickstart():
    out = _run("fastai_quickstart.py", "--epochs", "4", "--top", "3")
    for method in ("cross-entropy", "fastai MixUp", "DynamicBootstrapMixUp"):
        assert method in out
    assert "the 3 most suspect training samples" in out and "ROC-AUC" in out


def test_fastai_images_on_real_data(tmp_path):
    from lnc_experiments.data import FILES, data_dir

    directory = data_dir()
    if directory is None or not (directory / FILES["mnist"]).is_file():
        pytest.skip("real image data not found: set LNC_DATA_DIR to a folder with mnist.npz")
    trace = tmp_path / "trace.npz"
    out = _run("fastai_images.py", "--dataset", "mnist", "--n-train", "600", "--epochs", "2",
               "--top", "3", "--trace", str(trace))
    assert "the 3 most suspect training images" in out and trace.is_file()
