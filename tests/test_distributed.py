"""The callback under fastai's distributed training: two processes with gloo on loopback give the
same per-sample losses, detector and report as one process."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lnc_fastai.distributed import rank_share

pytest.importorskip("accelerate", reason="fastai's distrib_ctx needs accelerate (in the test extras)")

WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
TIMEOUT = 150


def _run(command, out, env):
    """Run ``command`` in its own process group; on timeout or failure, kill the whole group."""
    process = subprocess.Popen(
        command, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{command[2:4]} did not finish in {TIMEOUT} s:\n{output[-3000:]}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output[-5000:]
    return output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join([str(WORKER.parents[1]), env.get("PYTHONPATH", "")])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
          "--out", str(root / "two")], root, env)
    _run([sys.executable, str(WORKER), "--out", str(root / "one")], root, env)
    load = lambda folder, rank: dict(np.load(root / folder / f"rank{rank}.npz", allow_pickle=False))  # noqa: E731
    reports = {name: pd.read_csv(root / folder / f"report{rank}.csv", index_col=0)
               for name, folder, rank in (("one", "one", 0), ("rank0", "two", 0), ("rank1", "two", 1))}
    return {"one": load("one", 0), "rank0": load("two", 0), "rank1": load("two", 1)}, reports


def test_every_rank_has_the_whole_training_set_in_dataset_order(runs):
    arrays, _ = runs
    from distributed_worker import N_TRAIN

    for rank in ("rank0", "rank1"):
        assert arrays[rank]["losses"].shape == (N_TRAIN,)
        np.testing.assert_allclose(arrays[rank]["losses"], arrays["one"]["losses"], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(arrays[rank]["labels"], arrays["one"]["labels"])
        np.testing.assert_array_equal(arrays[rank]["predictions"], arrays["one"]["predictions"])


def test_every_rank_fits_the_same_detector_as_one_process(runs):
    arrays, _ = runs
    np.testing.assert_array_equal(arrays["rank0"]["parameters"], arrays["rank1"]["parameters"])  # identical fits
    np.testing.assert_allclose(arrays["rank0"]["parameters"], arrays["one"]["parameters"], rtol=1e-6)
    np.testing.assert_array_equal(arrays["rank0"]["epochs"], [0, 1])
    np.testing.assert_allclose(arrays["rank0"]["p_noisy"], arrays["one"]["p_noisy"], rtol=1e-6, atol=1e-9)


def test_report_has_one_row_per_training_sample(runs):
    _, reports = runs
    from distributed_worker import N_TRAIN

    for name in ("rank0", "rank1"):
        assert len(reports[name]) == N_TRAIN and list(reports[name]["item"]) == list(range(N_TRAIN))
        pd.testing.assert_frame_equal(reports[name], reports["one"], rtol=1e-5, atol=1e-7)


def test_rank_shares_cover_the_set_once_with_padding_marked():
    for n, world_size in ((10, 2), (203, 2), (7, 3), (2, 4)):
        shares = [rank_share(n, r, world_size) for r in range(world_size)]
        assert len({len(indices) for indices, _ in shares}) == 1  # same length on every rank
        real = np.concatenate([indices[mask] for indices, mask in shares])
        np.testing.assert_array_equal(np.sort(real), np.arange(n))


def test_gather_refuses_an_incomplete_set(monkeypatch):
    """Single-process stand-in for the collective: a gather that lost a sample must raise."""
    import lnc_fastai.distributed as distributed

    monkeypatch.setattr(distributed, "world", lambda: (0, 2))

    def fake_all_gather(parts, tensor):  # rank 1 sent the same block as rank 0
        for part in parts:
            part.copy_(tensor)

    monkeypatch.setattr(distributed.dist, "all_gather", fake_all_gather)
    indices, real = rank_share(10, 0, 2)
    with pytest.raises(RuntimeError, match="do not cover the 10 training samples exactly once"):
        distributed.gather_in_dataset_order(
            {"losses": torch.arange(5.0)}, torch.as_tensor(indices), torch.as_tensor(real), 10
        )
