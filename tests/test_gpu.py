"""The callback on a CUDA GPU: mixed precision (fp16 and bf16) with channels-last memory, what
really runs under autocast, where the posterior table lives, and which host synchronisations a
training batch costs. Skipped without CUDA; ``bash benchmarks/gpu_check.sh`` runs this file on a
GPU machine (with ``LNC_GPU_REPORT_DIR`` set, the synchronisation counts are also written there
as ``gpu_syncs.md``)."""

import linecache
import os
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from fastai.basics import Callback, CrossEntropyLossFlat, Learner
from fastai.callback.channelslast import ChannelsLast  # noqa: F401  (adds Learner.to_channelslast)
from fastai.callback.fp16 import MixedPrecision  # noqa: F401  (adds Learner.to_fp16 / to_bf16)
from fastai.callback.mixup import MixUp

from lnc_experiments.data import tensor_dataloaders
from lnc_experiments.models import small_cnn
from lnc_fastai import DynamicBootstrapMixUp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run benchmarks/gpu_check.sh there)")

AMP = {"fp16": torch.float16, "bf16": torch.bfloat16}
SYNC_MESSAGE = "called a synchronizing CUDA operation"


def synthetic(n_train=512, n_test=128, seed=0):
    """Colour-coded 32x32 uint8 images (class c brightens channel c % 3), labels 30% wrong."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n_train + n_test)
    x = rng.integers(0, 128, (len(y), 32, 32, 3))
    x[np.arange(len(y)), :, :, y % 3] += 12 * y[:, None, None]
    noisy = y.copy()
    flip = rng.random(n_train) < 0.3
    noisy[:n_train][flip] = rng.integers(0, 10, flip.sum())
    x = x.clip(0, 255).astype(np.uint8)
    return x[:n_train], noisy[:n_train], x[n_train:], y[n_train:]


def learner(cbs, amp):
    """The GPU path of ``examples/cifar10.py``: uint8 data on the device, batches cut, augmented
    and normalised there, channels-last, mixed precision."""
    torch.manual_seed(0)
    dls = tensor_dataloaders(*synthetic(), bs=64, device="cuda", channels_last=True)
    learn = Learner(dls, small_cnn(3), loss_func=CrossEntropyLossFlat(), cbs=cbs)
    return learn.to_channelslast(amp_mode=amp)


def fit(learn, epochs=2, lr=1e-2):
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(epochs, lr)


class ForwardLog(Callback):
    """What each forward pass of the model ran as: a hook on its first convolution records
    whether autocast was on, the output dtype, whether the input was channels-last and its
    device, separately for training batches, the callback's un-mixed forward, its per-epoch loss
    pass and validation."""

    order = -20

    def __init__(self):
        self.phase, self.seen = None, defaultdict(set)

    def before_fit(self):
        conv = next(m for m in self.model.modules() if isinstance(m, torch.nn.Conv2d))
        self.handle = conv.register_forward_hook(self.hook)
        cb = self.learn.dynamic_bootstrap_mix_up
        for name, phase in (("per_sample_losses", "loss pass"), ("noise_weights_and_targets", "un-mixed forward")):
            setattr(cb, name, self.tagged(getattr(cb, name), phase))

    def tagged(self, method, phase):
        def run(*args, **kwargs):
            self.phase = phase
            try:
                return method(*args, **kwargs)
            finally:
                self.phase = None
        return run

    def hook(self, module, inputs, output):
        phase = self.phase or ("training" if self.learn.training else "validation")
        self.seen[phase].add((torch.is_autocast_enabled("cuda"), output.dtype,
                              inputs[0].is_contiguous(memory_format=torch.channels_last), inputs[0].device.type))

    def after_fit(self):
        self.handle.remove()


@pytest.mark.parametrize("amp", AMP)
def test_every_forward_runs_under_autocast_channels_last_on_the_gpu(amp):
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    log = ForwardLog()
    learn = learner([cb, log], amp)
    fit(learn)
    expected = {(True, AMP[amp], True, "cuda")}
    for phase in ("training", "un-mixed forward", "loss pass", "validation"):
        assert log.seen[phase] == expected, phase
    assert cb.table.p_noisy.device.type == "cuda"  # batches read p(noisy) without leaving the GPU
    assert cb.bootstrapping and np.isfinite(cb.losses_).all()
    # The loss pass really ran in reduced precision: its losses differ from a float32 pass, slightly.
    learn.to_fp32()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        full = cb.per_sample_losses()[0]
    assert not np.array_equal(cb.losses_, full)
    np.testing.assert_allclose(cb.losses_, full, rtol=0.05, atol=0.05)


class _Mark(Callback):
    """Records how many synchronisation warnings had been caught when each training batch
    started (first callback to run) and ended (last to run)."""

    def __init__(self, caught, marks, key, order):
        self.caught, self.marks, self.key, self.order = caught, marks, key, order

    def before_batch(self):
        if self.key == "start" and self.training:
            self.marks.append([self.epoch, len(self.caught), None])

    def after_batch(self):
        if self.key == "end" and self.training:
            self.marks[-1][2] = len(self.caught)

    def after_cancel_batch(self):
        self.after_batch()


def source(warning):
    """Where a synchronisation came from: ``lnc: file:line: code`` for lnc's own lines."""
    path = Path(warning.filename)
    code = linecache.getline(warning.filename, warning.lineno).strip()
    for package in ("lnc_fastai", "lnc_sklearn", "examples"):
        if package in path.parts:
            return f"lnc: {package}/{path.name}:{warning.lineno}: {code}"
    parts = path.parts
    package = next((p for p in ("fastai", "torch") if p in parts), None)
    if package is None:
        return f"{path.name}:{warning.lineno}"
    last = len(parts) - 1 - parts[::-1].index(package)  # the package folder, not a parent of the same name
    return f"{package}: {'/'.join(parts[last + 1:])}:{warning.lineno}"


def count_syncs(make_cbs, amp, epochs=2):
    """Synchronisation warnings (``torch.cuda.set_sync_debug_mode``) of the last epoch's training
    batches, by source, per batch; and the rest of that epoch (loss pass, refit, validation)."""
    marks = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learn = learner([*make_cbs(), _Mark(caught, marks, "start", -1000), _Mark(caught, marks, "end", 1000)], amp)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with learn.no_bar(), learn.no_logging():
                learn.fit(epochs, 1e-2)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if SYNC_MESSAGE in str(w.message)]
    last = [(start, end) for epoch, start, end in marks if epoch == epochs - 1]
    in_batches = Counter()
    for start, end in last:
        in_batches.update(source(w) for w in caught[start:end] if SYNC_MESSAGE in str(w.message))
    epoch_start = last[0][0]
    epoch_syncs = [w for w in caught[epoch_start:] if SYNC_MESSAGE in str(w.message)]
    outside = len(epoch_syncs) - sum(in_batches.values())
    cb = next((c for c in learn.cbs if isinstance(c, DynamicBootstrapMixUp)), None)
    return {"batches": len(last), "per_batch": {k: v / len(last) for k, v in in_batches.items()},
            "outside_batches": outside, "total": len(syncs), "phase": cb.phase if cb is not None else None}


VARIANTS = {
    "fastai MixUp": lambda: [MixUp(alpha=32.0)],
    "M-DYR-H (DynamicBootstrapMixUp)": lambda: [DynamicBootstrapMixUp(mode="paper", warmup=1)],
    "MD-DYR-SH": lambda: [DynamicBootstrapMixUp(mode="paper", bootstrap="soft-to-hard", detector_mixing=True, warmup=1, mixing_only=0)],
}


def _report(amp, results):
    directory = os.environ.get("LNC_GPU_REPORT_DIR")
    if not directory:
        return
    path = Path(directory) / "gpu_syncs.md"
    lines = [] if path.exists() else [
        "# Host synchronisations per training batch on the GPU",
        "",
        f"- {torch.cuda.get_device_name(0)}; torch {torch.__version__}; written by `tests/test_gpu.py`",
        "- counted with `torch.cuda.set_sync_debug_mode(\"warn\")` over the second epoch's training batches "
        "(the first bootstrapping epoch), small CNN on 512 synthetic 32x32 images on the device, batch 64, "
        "channels-last; 'outside batches' is the rest of that epoch (loss pass, refit, validation)",
        "",
        "| variant | precision | syncs per batch | by source (per batch) | syncs in the epoch outside batches |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, counts in results.items():
        by_source = "; ".join(f"{k} ({v:g})" for k, v in sorted(counts["per_batch"].items())) or "none"
        lines.append(f"| {name} | {amp} | {sum(counts['per_batch'].values()):g} | {by_source.replace('|', '/')} | "
                     f"{counts['outside_batches']} |")
    with open(path, "a") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("amp", AMP)
def test_host_synchronisations_per_batch_are_the_finiteness_check_alone(amp):
    """The callback adds one host synchronisation per training batch to fastai's MixUp: the
    check that the loss is finite before backward (a batch whose loss is not is skipped). The
    table lookup, the un-mixed forward, the targets and the mixing stay on the device."""
    results = {name: count_syncs(make, amp) for name, make in VARIANTS.items()}
    _report(amp, results)
    mixup = sum(results["fastai MixUp"]["per_batch"].values())
    for name in ("M-DYR-H (DynamicBootstrapMixUp)", "MD-DYR-SH"):
        assert results[name]["phase"] == "bootstrap", results[name]  # the counted epoch bootstrapped
        ours = {k: v for k, v in results[name]["per_batch"].items() if k.startswith("lnc:")}
        assert list(ours.values()) == [1.0], (name, results[name])
        assert "isfinite" in next(iter(ours)), ours  # the finiteness check in after_loss
        assert sum(results[name]["per_batch"].values()) <= mixup + 1, (name, results)


def test_md_dyr_sh_is_the_reference_on_the_gpu():
    """The hand-computed reference MD-DYR-SH of tests/test_callback.py, on images on the GPU."""
    from fastai.torch_core import set_seed
    from test_callback import ReferenceMdDyrSh

    set_seed(0)
    cb = DynamicBootstrapMixUp(mode="paper", bootstrap="soft-to-hard", detector_mixing=True, warmup=1, mixing_only=1, sharpening=(2, 4))
    reference = ReferenceMdDyrSh()
    dls = tensor_dataloaders(*synthetic(), bs=64, device="cuda")
    learn = Learner(dls, small_cnn(3), loss_func=CrossEntropyLossFlat(), cbs=[cb, reference])
    fit(learn, epochs=5)
    assert reference.checked == {epoch: 512 // 64 for epoch in range(5)}
    assert cb.table.p_noisy.device.type == "cuda"


@pytest.mark.parametrize("amp", AMP)
def test_a_nan_batch_is_skipped_on_the_gpu(amp):
    from test_reliability import PoisonBatch, _weights_finite

    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    learn = learner([cb, PoisonBatch(epoch=1, batch=3)], amp)
    with pytest.warns(RuntimeWarning, match="epoch 1, batch 3: the training loss is not finite"):
        fit(learn)
    assert cb.skipped_batches == [{"epoch": 1, "iter": 3}]
    assert _weights_finite(learn) and np.isfinite(cb.losses_).all()


def test_cifar10_example_keeps_its_data_on_the_gpu():
    from lnc_experiments.cifar10 import complete, parser, train

    args = complete(parser().parse_args(["--width", "8", "--bs", "64", "--quiet", "--schedule", "one-cycle",
                                         "--epochs", "2", "--warmup", "0.5", "--method", "md-dyr-sh", "--noise", "0.5"]))
    x, y, xt, yt = synthetic(n_train=1024, n_test=256)
    args.arrays = (x, y, xt, yt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result, learn = train(args)
    assert result["device"] != "cpu" and result["fp16"] and result["channels_last"]
    assert learn.dls.train.images.device.type == "cuda"
    assert learn.dynamic_bootstrap_mix_up.table.p_noisy.device.type == "cuda"
    assert all(np.isfinite(result["acc_per_epoch"]))
