"""examples/cifar10.py: every method, both schedules and user label files, on tiny synthetic
images (and on the real CIFAR-10 file where it is there)."""

import json
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lnc_experiments.cifar10 import METHODS, complete, parser, train
from lnc_experiments.data import FILES, data_dir, tensor_dataloaders
from lnc_experiments.validation import validation_seed
from lnc_fastai import DynamicBootstrapMixUp
from lnc_sklearn import symmetric_noise

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def synthetic_cifar(n_train=256, n_test=64, seed=0):
    """Colour-coded 32x32 images: class c has its mean brightness in channel c % 3 raised."""
    rng = np.random.default_rng(seed)

    def images(labels):
        x = rng.integers(0, 128, (len(labels), 32, 32, 3))
        x[np.arange(len(labels)), :, :, labels % 3] += 12 * labels[:, None, None]
        return x.clip(0, 255).astype(np.uint8)

    y_train, y_test = rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)
    return images(y_train), y_train, images(y_test), y_test


def run(*argv, arrays=None):
    args = complete(parser().parse_args(["--width", "4", "--bs", "32", "--quiet", *argv]))
    args.arrays = arrays or synthetic_cifar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(args)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_reports(method):
    result, learn = run("--method", method, "--schedule", "one-cycle", "--epochs", "3", "--noise", "0.5")
    assert len(result["acc_per_epoch"]) == len(result["seconds_per_epoch"]) == 3
    assert 0 < result["wrong_label_rate"] < 0.6 and result["noise_type"] == "symmetric"
    cb = getattr(learn, "dynamic_bootstrap_mix_up", None)
    assert (cb is None) == (method in ("ce", "mixup"))
    if cb is not None:
        # one AUC per tracked epoch (lnc's default on a CPU: every third epoch except under heavy
        # noise, and always the first and the last)
        assert len(result["auc_per_epoch"]) == len(cb.history) and list(cb.history.epoch)[-1] == 2
        assert len(cb.history) == 3 or method == "default"
        assert all(0 <= a <= 1 for a in result["auc_per_epoch"])
        assert cb.bootstrap == {"m-dyr-h": "hard", "m-dyr-s": "soft", "md-dyr-sh": "soft-to-hard", "default": "hard"}[method]
        assert cb.detector_mixing == (method == "md-dyr-sh")
        if method == "default":  # the callback as constructed with no arguments
            defaults = DynamicBootstrapMixUp()
            assert (cb.alpha, cb.warmup, cb.reg_weight) == (defaults.alpha, defaults.warmup, defaults.reg_weight)


def test_a_seed_gives_the_same_run_twice_in_one_process():
    # fastai's DataLoader seeds its shuffling from Python's random module: a runner that seeds only
    # torch trains each run of a process (and each process) on another batch order
    arrays = synthetic_cifar()
    first, _ = run("--method", "default", "--schedule", "one-cycle", "--epochs", "2", "--noise", "0.5", arrays=arrays)
    np.random.rand(), random.random(), torch.rand(1)  # whatever ran in between
    second, _ = run("--method", "default", "--schedule", "one-cycle", "--epochs", "2", "--noise", "0.5", arrays=arrays)
    assert first["acc_per_epoch"] == second["acc_per_epoch"]
    assert first["noise_rate_per_epoch"] == second["noise_rate_per_epoch"]


def test_paper_schedule_steps_the_learning_rate_at_a_third_and_five_sixths():
    result, learn = run("--method", "md-dyr-sh", "--schedule", "paper", "--epochs", "6", "--lr", "0.1", "--noise", "0.5")
    lrs = np.asarray(learn.recorder.hps["lr"]).reshape(6, -1)[:, 0]
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.01, 0.01, 0.01, 0.001], rtol=1e-6)
    cb = learn.dynamic_bootstrap_mix_up
    # Epochs 105, 110 and 110 -> 198 of 300, scaled to 6: warm-up 2 epochs, no epoch of detector
    # mixing alone, sharpening over epochs 2 -> 4.
    assert cb.warmup_epochs == cb.bootstrap_epoch == 2 and cb.sharpening_epochs == (2, 4)
    result, learn = run("--method", "md-dyr-sh", "--schedule", "paper", "--epochs", "30", "--n-train", "256", "--noise", "0.5")
    cb = learn.dynamic_bootstrap_mix_up  # scaled to 30: mixing from epoch 10, bootstrapping from 11
    assert (cb.warmup_epochs, cb.bootstrap_epoch, cb.sharpening_epochs) == (10, 11, (11, 20))
    opt_state = learn.opt.hypers[0]
    assert opt_state["mom"] == 0.9 and opt_state["wd"] == pytest.approx(1e-4)


def test_asymmetric_noise_flips_only_the_usual_pairs():
    arrays = synthetic_cifar()
    result, learn = run("--method", "ce", "--schedule", "one-cycle", "--epochs", "1", "--noise", "0.4",
                        "--noise-type", "asymmetric", arrays=arrays)
    given = learn.dls.train.labels[: len(arrays[1])].cpu().numpy()
    flipped = given != arrays[1]
    assert flipped.any() and result["noise_type"] == "asymmetric"
    pairs = set(zip(arrays[1][flipped].tolist(), given[flipped].tolist()))
    assert pairs <= {(9, 1), (2, 0), (4, 7), (3, 5), (5, 3)}


def test_a_label_file_replaces_the_injected_noise(tmp_path):
    arrays = synthetic_cifar()
    labels = arrays[1].copy()
    labels[:40] = (labels[:40] + 1) % 10
    path = tmp_path / "labels.npy"
    np.save(path, labels)
    result, learn = run("--method", "m-dyr-h", "--schedule", "one-cycle", "--epochs", "2", "--labels", str(path),
                        arrays=arrays)
    assert result["noise_type"] == "labels file" and result["wrong_label_rate"] == pytest.approx(40 / 256)
    np.testing.assert_array_equal(learn.dynamic_bootstrap_mix_up.noise_mask, np.arange(256) < 40)
    np.testing.assert_array_equal(learn.dls.train.labels[:256].cpu().numpy(), labels)


@pytest.mark.parametrize("content, message", [
    (np.zeros((256, 2), dtype=np.int64), "1-D array with one label per training image"),
    (np.zeros(100, dtype=np.int64), "1-D array with one label per training image"),
    (np.full(256, 0.5), "integer class indices in 0..9"),
    (np.full(256, 10), "integer class indices in 0..9"),
    (np.array([{"a": 1}] * 256, dtype=object), "object arrays are not accepted"),
])
def test_bad_label_files_say_what_is_accepted(tmp_path, content, message):
    path = tmp_path / "labels.npy"
    np.save(path, content, allow_pickle=True)
    with pytest.raises(SystemExit, match=message):
        run("--method", "ce", "--epochs", "1", "--labels", str(path))


def test_a_missing_label_file_is_named():
    with pytest.raises(SystemExit, match="existing .npy file.*missing.npy"):
        run("--method", "ce", "--epochs", "1", "--labels", "missing.npy")


def test_a_held_out_split_validates_and_the_test_set_is_scored_apart(tmp_path):
    arrays = synthetic_cifar(n_train=320, n_test=64)
    result, learn = run("--method", "default", "--schedule", "one-cycle", "--epochs", "3", "--noise", "0.5",
                        "--n-train", "256", "--n-valid", "64", arrays=arrays)
    # the learner validates on training images 256..319, their labels noised from a stream of their own
    valid_labels = learn.dls.valid.labels[learn.dls.valid.dataset.items].cpu().numpy()
    assert len(valid_labels) == 64 and 0.2 < result["valid_wrong_label_rate"] < 0.6
    assert result["valid_wrong_label_rate"] == pytest.approx(np.mean(valid_labels != arrays[1][256:320]))
    expected, _ = symmetric_noise(arrays[1][256:320], 0.5, n_classes=10, random_state=validation_seed(0))
    np.testing.assert_array_equal(valid_labels, expected)
    # the accuracies reported are the test set's (its clean labels), the validation split's kept apart
    assert result["validation"] == "held-out" and result["n_valid"] == 64
    assert [float(row[2]) for row in learn.recorder.values] == result["valid_acc_per_epoch"]
    preds = learn.get_preds(dl=learn.dls[2])[0].argmax(dim=1).as_subclass(torch.Tensor)
    assert result["acc_per_epoch"][-1] == pytest.approx(float((preds == torch.from_numpy(arrays[3])).float().mean()))
    assert result["classes_predicted"] == int(torch.unique(preds).numel())
    # a label file gives the held-out split its labels too, from the same positions
    labels = arrays[1].copy()
    labels[250:270] = (labels[250:270] + 1) % 10
    path = tmp_path / "labels.npy"
    np.save(path, labels)
    result, learn = run("--method", "ce", "--schedule", "one-cycle", "--epochs", "1", "--labels", str(path),
                        "--n-train", "256", "--n-valid", "64", arrays=arrays)
    assert result["wrong_label_rate"] == pytest.approx(6 / 256) and result["valid_wrong_label_rate"] == pytest.approx(14 / 64)
    np.save(path, labels[:300])
    with pytest.raises(SystemExit, match="at least 320"):
        run("--method", "ce", "--epochs", "1", "--labels", str(path), "--n-train", "256", "--n-valid", "64", arrays=arrays)


@pytest.mark.parametrize("argv, message", [
    (["--n-valid", "64"], "needs --n-train set"),
    (["--n-train", "300", "--n-valid", "64"], "--n-train \\+ --n-valid <= 320"),
    (["--n-valid", "-1"], "--n-valid must be >= 0"),
])
def test_a_held_out_split_that_does_not_fit_is_refused(argv, message):
    with pytest.raises(SystemExit, match=message):
        run("--method", "ce", "--epochs", "1", *argv, arrays=synthetic_cifar(n_train=320, n_test=64))


def test_batches_come_from_the_tensors_augmented_only_for_training():
    x_train, y_train, x_test, y_test = synthetic_cifar(n_train=64, n_test=16)
    dls = tensor_dataloaders(x_train, y_train, x_test, y_test, bs=16, channels_last=True)
    normalise = dls.train.after_batch.fs[-2]
    expected = (torch.from_numpy(x_test).permute(0, 3, 1, 2).float() / 255 - normalise.mean.view(1, 3, 1, 1)) / normalise.std.view(1, 3, 1, 1)
    xb, yb = dls.valid.one_batch()
    torch.testing.assert_close(xb.as_subclass(torch.Tensor), expected)
    assert torch.equal(yb.as_subclass(torch.Tensor), torch.from_numpy(y_test))
    assert xb.is_contiguous(memory_format=torch.channels_last)
    # The callback's loss pass: training set, dataset order, split 1 (no crop, no flip).
    ordered = dls.train.new(shuffle=False, drop_last=False, bs=64)
    with dls.train.dataset.set_split_idx(1):
        plain = next(iter(ordered))[0]
    augmented = next(iter(ordered))[0]
    assert plain.shape == augmented.shape == (64, 3, 32, 32)
    assert not torch.equal(plain, augmented)


def test_the_script_on_real_cifar10(tmp_path):
    directory = data_dir()
    if directory is None or not (directory / FILES["cifar10"]).is_file():
        pytest.skip("CIFAR-10 not found: set LNC_DATA_DIR to a folder with cifar10_jpeg.npz")
    out = tmp_path / "run.json"
    result = subprocess.run(
        [sys.executable, "cifar10.py", "--schedule", "one-cycle", "--epochs", "1", "--n-train", "512", "--n-test", "256",
         "--width", "4", "--method", "m-dyr-h", "--noise", "0.8", "--quiet", "--out", str(out)],
        cwd=EXAMPLES, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "the 10 most suspect training images" in result.stdout
    run_numbers = json.loads(out.read_text())
    assert run_numbers["method"] == "m-dyr-h" and 0.6 < run_numbers["wrong_label_rate"] < 0.85
