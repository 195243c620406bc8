"""``lnc-report``: the installed command works on files the tests make, and bad input fails clearly."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lnc_sklearn import BetaMixtureNoiseDetector
from lnc_sklearn.cli import main
from lnc_sklearn.report import noise_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def table(digits_loss_trace):
    losses_by_epoch, changed = digits_loss_trace
    losses = losses_by_epoch[1]
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "loss": losses,
            "label": rng.integers(0, 10, losses.size),
            "prediction": rng.integers(0, 10, losses.size),
            "file": [f"img_{i:04d}.png" for i in range(losses.size)],
            "mislabelled": changed,
        }
    )


def _installed_command():
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = shutil.which("lnc-report", path=folder)
        if candidate:
            return candidate
    pytest.fail("lnc-report is not installed beside this Python: pip install -e . installs it")


def test_installed_command_writes_report_and_plots(table, tmp_path):
    table.to_csv(tmp_path / "losses.csv", index=False)
    result = subprocess.run(
        [
            _installed_command(), "losses.csv", "--label-column", "label", "--predicted-column", "prediction",
            "--item-column", "file", "--noise-mask-column", "mislabelled",
            "-o", "report.csv", "--plot", "mixture.png", "--posterior-plot", "posterior.png", "--top", "3",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "estimated noise fraction" in result.stdout and "top 3 suspects" in result.stdout
    report = pd.read_csv(tmp_path / "report.csv", index_col="row")
    # the command counts within each given label, as noise_report does when it fits
    expected = noise_report(
        table["loss"].to_numpy(), BetaMixtureNoiseDetector(),
        labels=table["label"], predicted_labels=table["prediction"], items=table["file"], noise_mask=table["mislabelled"],
    )
    assert list(report.columns) == list(expected.columns)
    np.testing.assert_allclose(report["p_noisy"], expected["p_noisy"], rtol=1e-12)
    np.testing.assert_array_equal(report["rank"], expected["rank"])
    np.testing.assert_array_equal(report["is_noisy"], expected["is_noisy"])
    np.testing.assert_array_equal(report["item"], table["file"])
    for name in ("mixture.png", "posterior.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["losses.csv", "mixture.png", "posterior.png", "report.csv"]


def test_parquet_and_npy_inputs_and_a_parquet_report(table, tmp_path, capsys):
    table.to_parquet(tmp_path / "losses.parquet")
    assert main([str(tmp_path / "losses.parquet"), "--label-column", "label", "--detector", "gaussian",
                 "--sort", "-o", str(tmp_path / "report.parquet"), "--top", "0"]) == 0
    report = pd.read_parquet(tmp_path / "report.parquet")
    assert report.index.name == "row" and sorted(report.index) == list(range(len(table)))
    assert report["rank"].is_monotonic_increasing
    np.save(tmp_path / "losses.npy", table["loss"].to_numpy())
    assert main([str(tmp_path / "losses.npy"), "-o", str(tmp_path / "from_npy.csv")]) == 0
    structured = np.zeros(len(table), dtype=[("loss", "f8"), ("label", "i8")])
    structured["loss"], structured["label"] = table["loss"], table["label"]
    np.save(tmp_path / "structured.npy", structured)
    assert main([str(tmp_path / "structured.npy"), "--label-column", "label"]) == 0
    np.testing.assert_allclose(pd.read_csv(tmp_path / "from_npy.csv")["loss"], table["loss"])


def test_confidences(table, tmp_path):
    pd.DataFrame({"confidence": np.exp(-table["loss"])}).to_csv(tmp_path / "conf.csv", index=False)
    assert main([str(tmp_path / "conf.csv"), "--input-type", "confidence", "-o", str(tmp_path / "r.csv")]) == 0
    report = pd.read_csv(tmp_path / "r.csv")
    np.testing.assert_allclose(report["loss"], table["loss"], rtol=1e-9)


def _bad_inputs(folder, table):
    good = folder / "good.csv"
    table.to_csv(good, index=False)
    non_numeric = table.astype({"loss": object})
    non_numeric.loc[3, "loss"] = "abc"
    non_numeric.to_csv(folder / "text.csv", index=False)
    with_nan = table.copy()
    with_nan.loc[[4, 9], "loss"] = np.nan
    with_nan.to_csv(folder / "nan.csv", index=False)
    with_inf = table.copy()
    with_inf.loc[7, "loss"] = np.inf
    with_inf.to_csv(folder / "inf.csv", index=False)
    np.save(folder / "objects.npy", np.array([0.1, "x", None], dtype=object), allow_pickle=True)
    (folder / "fake.npy").write_text("not numpy")
    (folder / "fake.parquet").write_text("not parquet")
    np.save(folder / "matrix.npy", np.ones((5, 3)))
    return {
        "missing column": ([str(good), "--column", "losses"], "has no column 'losses'; its columns are: 'loss', 'label'"),
        "missing label column": ([str(good), "--label-column", "y"], "has no column 'y'"),
        "non-numeric": ([str(folder / "text.csv")], "1 non-numeric value(s), first at row 3: 'abc'"),
        "NaN": ([str(folder / "nan.csv")], "2 missing or NaN value(s) (rows 4, 9)"),
        "inf": ([str(folder / "inf.csv")], "1 infinite value(s) (rows 7)"),
        "no such file": ([str(folder / "absent.csv")], "absent.csv: no such file"),
        "pickle": ([str(folder / "objects.npy")], "lnc never loads pickles"),
        "not npy": ([str(folder / "fake.npy")], "is not a .npy file"),
        "not parquet": ([str(folder / "fake.parquet")], "is not a readable Parquet file"),
        "2-D npy": ([str(folder / "matrix.npy")], "must be 1-D"),
        "bad output type": ([str(good), "-o", str(folder / "r.xlsx")], "give a name ending in .csv or .parquet"),
        "output folder missing": ([str(good), "-o", str(folder / "nope" / "r.csv")], "does not exist"),
        "labels not classes": ([str(good), "--label-column", "loss"], "class indices or names"),
    }


def test_bad_inputs_fail_clearly_and_write_nothing(table, tmp_path, capsys):
    cases = _bad_inputs(tmp_path, table)
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, (argv, message) in cases.items():
        assert main([*argv, "-o", str(tmp_path / "out.csv")] if "-o" not in argv else argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("lnc-report: error: ") and message in err, (name, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no report, no temporary file


def test_unknown_suffix_and_constant_values(tmp_path, capsys):
    (tmp_path / "losses.txt").write_text("1\n2\n")
    assert main([str(tmp_path / "losses.txt")]) == 2
    assert "unknown file type '.txt'" in capsys.readouterr().err
    pd.DataFrame({"loss": np.ones(10)}).to_csv(tmp_path / "flat.csv", index=False)
    assert main([str(tmp_path / "flat.csv")]) == 2
    err = capsys.readouterr().err
    assert "cannot fit the detector" in err and "all 10 values are equal" in err


def test_a_failing_write_keeps_the_old_report(table, tmp_path, monkeypatch):
    table.to_csv(tmp_path / "losses.csv", index=False)
    (tmp_path / "report.csv").write_text("the previous report\n")

    def write_half_then_fail(self, path, **kwargs):
        Path(path).write_text("row,loss\n0,")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        main([str(tmp_path / "losses.csv"), "-o", str(tmp_path / "report.csv"), "--top", "0"])
    assert (tmp_path / "report.csv").read_text() == "the previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["losses.csv", "report.csv"]
