"""benchmarks/detection_quality.py (lnc_experiments.detection) scores every method against the true mask correctly."""

import numpy as np
import pytest

pytest.importorskip("cleanlab")

from lnc_experiments.detection import LNC_BETA, RAW_GAUSSIAN, evaluate_epoch  # noqa: E402


def _epoch(seed=0, n=600, k=5):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    changed = rng.random(n) < 0.4
    given = np.where(changed, (truth + rng.integers(1, k, n)) % k, truth)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), truth] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    losses = -np.log(probs[np.arange(n), given])
    return losses, probs.astype(np.float16), given, changed


def test_rows_score_each_method_against_the_mask():
    losses, probs, given, changed = _epoch()
    rows = {row["method"]: row for row in evaluate_epoch(losses, probs, given, changed)}
    assert {LNC_BETA, RAW_GAUSSIAN, "raw loss", "cleanlab self_confidence", "cleanlab find_label_issues"} <= set(rows)
    from sklearn.metrics import roc_auc_score

    assert rows["raw loss"]["AUC"] == pytest.approx(roc_auc_score(changed, losses))
    # a monotone posterior ranks as the loss does; self-confidence is exp(-loss)
    assert rows[LNC_BETA]["AUC"] == pytest.approx(rows["raw loss"]["AUC"], abs=2e-3)
    assert rows["cleanlab self_confidence"]["AUC"] == pytest.approx(rows["raw loss"]["AUC"], abs=1e-3)
    for name in (LNC_BETA, "cleanlab find_label_issues"):
        row = rows[name]
        assert 0 < row["flagged"] < len(losses) and 0 <= row["precision"] <= 1 and 0 <= row["recall"] <= 1
    assert 0 <= rows[LNC_BETA]["brier"] <= 1 and "brier" not in rows["raw loss"]
    # a shuffled mask is near chance for every method
    shuffled = np.random.default_rng(1).permutation(changed)
    for row in evaluate_epoch(losses, probs, given, shuffled):
        assert abs(row["AUC"] - 0.5) < 0.1, row


def test_detector_quality_benchmark_runs_and_judges(tmp_path):
    """benchmarks/detector_quality.py on a tiny two-epoch trace: it scores the count from the
    losses, the labels and the probabilities beside lnc before and cleanlab, and prints the
    noise-count issue's targets."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    losses, probs, given, changed = _epoch(n=600)
    probs = probs.astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    losses = -np.log(probs[np.arange(len(given)), given])
    # true_labels is read on the clean samples only (their accuracy), where it is the given label
    np.savez(tmp_path / "toy_cnn_sym40_s0.npz", losses=np.stack([losses, losses * 0.9]).astype(np.float32),
             probs=np.stack([probs, probs]), noisy_labels=given, true_labels=given, noise_mask=changed)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "LNC_RESULTS_DIR": str(tmp_path / "results")}
    out = subprocess.run([sys.executable, str(repo / "benchmarks" / "detector_quality.py"), "--set", "dev",
                          "--traces-dir", str(tmp_path), "--traces", "toy_cnn_sym40_s0", "--before", "HEAD",
                          "--out-name", "toy"], capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    assert "The noise-count issue's targets" in out and "probabilities, rate" in out
    table = json.loads((tmp_path / "results" / "toy.json").read_text())["table"]
    columns, rows = table["columns"], table["data"]
    assert len(rows) == 4  # two epochs, each as losses and as confidences
    assert {"rate cleanlab", "rate labels", "rate probabilities", "covered probabilities", "verdict labels"} <= set(columns)
    row = dict(zip(columns, rows[0]))
    assert row["kind"] == "in-training" and row["true rate"] == pytest.approx(round(changed.mean(), 4), abs=1e-4)
    assert 0 <= row["rate probabilities"] <= 1 and row["low probabilities"] <= row["rate probabilities"] <= row["high probabilities"]
    assert row["err cleanlab"] == pytest.approx(abs(row["rate cleanlab"] - row["true rate"]), abs=1e-3)
