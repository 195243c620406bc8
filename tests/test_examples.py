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
    assert "Beta mixture (lnc default)" in out and "Top 5 suspects" in out


@pytest.mark.filterwarnings("ignore")
def test_sklearn_pipeline_and_grid_search():
    out = _run("sklearn_pipeline.py")
    assert "Pipeline(log1p, Beta mixture)" in out and "GridSearchCV best" in out
