"""Seconds per training epoch: DynamicBootstrapMixUp after warm-up against fastai's MixUp.

Same model, data and batches for each method, in one process, rounds of three epochs
interleaved round-robin so that drifts of a shared machine hit every method alike. An epoch is timed from ``before_train``
to the end of ``after_train``: the training batches plus, for the bootstrapping callbacks, the
per-epoch pass over the training set and the detector's refit (validation is left out, being
the same for all). Variants:

- ``fastai MixUp``: the baseline (one forward and one backward per batch).
- ``M-DYR-H (paper preset)``: one extra forward without gradients per batch; p(noisy) read from
  the posterior table on the device.
- ``DynamicBootstrapMixUp()``: lnc's default as most runs train it, without a memorisation
  call: mixup, and on a CPU the pass every third epoch (``tracking_every=1``: every epoch).
- ``DynamicBootstrapMixUp(), memorising``: lnc's default after the memorisation call: one extra
  forward per batch for the targets, as M-DYR-H, whose losses and predictions make the epoch's
  pass; a round of three epochs ends with a whole pass, which a long run makes at its last
  epoch only.
- ``DynamicBootstrapMixUp(), waiting under heavy noise``: before the call under heavy noise:
  mixup, the pass every epoch.
- ``... as before``: the memorising and waiting variants with the pass's batches built by the
  data pipeline every time (``keep_pass_inputs=False``), as before 2026-12-01's cheaper passes,
  timed in the same process (``--as-before``; by default on a CPU only).
- ``memorising, plain order``: the memorising variant with the forward of each un-mixed batch in
  the inputs' own memory order (the ``channels_last`` attribute False), as before 2026-12-01's evening change;
  ``M-DYR-H (paper preset), channels_last=True``: the paper preset with that forward in
  channels-last order, which it takes only when asked. Both on a CPU only, where ``"auto"``
  turns it on.
- ``..., plain pooling (channels_last_pooling=False)``: the waiting variant and the paper preset
  with the callback's forwards pooling in the inputs' own order, as before 2026-12-01's late
  change (max pooling in channels-last order, which leaves every value as it was). On a CPU, and
  only for a model with ``nn.MaxPool2d`` layers (the small CNN; the PreAct ResNet has none).
- ``reference-style``: as the reference code: a train-mode forward on the un-mixed batch for the
  targets (moving BatchNorm statistics) and another eval-mode forward for the losses, which go to
  the CPU every batch for the detector's posterior; its pass pools in the inputs' own order, as
  before 2026-12-01's late change, so that it stays the fixed point of comparison it was.

Run: ``python benchmarks/callback_overhead.py --dataset fashion_mnist --n-train 10000 --rounds 3``
(the paper's network: ``--dataset cifar10 --model preact-resnet18 --width 16``). On a GPU, with the
data on the device as ``examples/cifar10.py`` keeps it (mixed precision and channels-last are then
on by default): ``--dataset cifar10 --model preact-resnet18 --width 64 --n-train 50000 --loader tensor``.
"""

import argparse
import contextlib
import statistics
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from lnc_experiments.data import as_float_images, image_dataloaders, load_arrays, tensor_dataloaders
from lnc_experiments.models import PreActResNet18, small_cnn
from lnc_experiments.results import markdown_table, write_json, write_results
from fastai.basics import Callback, CrossEntropyLossFlat, Learner  # noqa: E402
from fastai.callback.channelslast import ChannelsLast  # noqa: E402,F401  (adds Learner.to_channelslast)
from fastai.callback.fp16 import MixedPrecision  # noqa: E402,F401  (adds Learner.to_fp16)
from fastai.callback.mixup import MixUp  # noqa: E402
from fastai.torch_core import set_seed  # noqa: E402
from lnc_fastai import DynamicBootstrapMixUp, TrainingPolicy  # noqa: E402
from lnc_fastai.batches import eval_mode  # noqa: E402
from lnc_fastai.losses import bootstrap_targets  # noqa: E402
from lnc_fastai.pooling import max_pooling_channels_last  # noqa: E402
from lnc_fastai.posterior_table import noisy_probability  # noqa: E402
from lnc_fastai.tracking import tracking_batch_size  # noqa: E402
from lnc_sklearn import symmetric_noise  # noqa: E402


class ReferenceStyleBootstrap(DynamicBootstrapMixUp):
    """The reference code's per-batch work: two extra forwards and a GPU-to-CPU round trip."""

    def noise_weights_and_targets(self, xb, labels):
        with torch.no_grad():
            targets = bootstrap_targets(self.model(*xb).float(), self.bootstrap)  # train mode
        with torch.no_grad(), eval_mode(self.model):
            losses = F.cross_entropy(self.model(*xb).float(), labels, reduction="none")
        weights = noisy_probability(self.detector_, losses.cpu().numpy())
        return torch.from_numpy(weights).float().to(labels.device), targets


def reference_style():
    cb = ReferenceStyleBootstrap(mode="paper", warmup=0)
    cb.channels_last_pooling = False
    return cb


CPU_ROUND = 3  # epochs per timed round on a CPU (lnc's default tracks one of three there); 1 on a GPU


class Forced(TrainingPolicy):
    """lnc mode's policy held in one phase in every epoch (``forced``: the state fields that
    hold it there), so the per-batch path of that phase is timed whatever the passes find."""

    def __init__(self, forced):
        super().__init__(warmup=0, ramp=0)
        self.forced = forced

    def _epoch_plan(self, epoch):
        self.__dict__.update(self.forced)
        return super()._epoch_plan(epoch)


MIXUP = {"regime": "none", "memorising_since": None}  # most runs: no call
MEMORISING = {"regime": "heavy", "memorising_since": 0, "collapse_guard": 1.0}  # after the call
WAITING = {"regime": "heavy", "memorising_since": None}  # heavy noise before the call


def lnc_variant(forced, **speed):
    """lnc's default held in one phase, with speed settings as given. ``MIXUP``: no call (most
    runs): mixup, the pass every third epoch on a CPU; ``MEMORISING``: after the call, a forward
    of each un-mixed batch for its targets, the pass every epoch from those forwards;
    ``WAITING``: heavy noise before the call: mixup and the pass every epoch."""
    cb = DynamicBootstrapMixUp(policy=Forced(forced))
    for name, value in speed.items():
        setattr(cb, name, value)
    return cb


def paper_variant(name, **speed):
    cb = DynamicBootstrapMixUp.preset(name, warmup=0)
    for attribute, value in speed.items():
        setattr(cb, attribute, value)
    return cb


def keep_pass_inputs_across_rounds(cb):
    """Keep the callback's pass batches (``keep_pass_inputs``) from one timed round to the next, as
    one long fit keeps them from its third pass on: each round is a fit of its own, which would
    otherwise build them again."""
    before_fit, after_fit = cb.before_fit, cb.after_fit

    def before():
        before_fit()
        if getattr(cb, "_kept_inputs", None) is not None:
            cb._pass_inputs = cb._kept_inputs

    def after():
        cb._kept_inputs = cb._pass_inputs
        after_fit()

    cb.before_fit, cb.after_fit = before, after


def time_tracking(cb):
    """Record the seconds of each per-epoch loss pass and refit of a bootstrapping callback."""
    cb.tracking_seconds, track = [], cb._track_and_refit

    def timed():
        start = time.perf_counter()
        track()
        cb.tracking_seconds.append(time.perf_counter() - start)

    cb._track_and_refit = timed


class TrainTimer(Callback):
    """Wall time of each epoch's training part; its two halves run first and last."""

    def __init__(self):
        self.seconds = []

    def start(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def stop(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self._start)


class _Start(Callback):
    order = -1000

    def __init__(self, timer):
        self.timer = timer

    def before_train(self):
        self.timer.start()


class _Stop(Callback):
    order = 1000

    def __init__(self, timer):
        self.timer = timer

    def after_train(self):
        self.timer.stop()


def make_learner(callback, data, args):
    x_train, noisy, x_test, y_test = data
    set_seed(args.seed)  # torch, numpy and Python's random (fastai's DataLoader seeds its shuffling from the last)
    if args.loader == "tensor":  # uint8 images on the device, batches cut and augmented there
        dls = tensor_dataloaders(x_train, noisy, x_test, y_test, bs=args.bs, device=args.device,
                                 channels_last=args.channels_last)
    else:
        dls = image_dataloaders(x_train, noisy, x_test, y_test, bs=args.bs)
    timer = TrainTimer()
    channels = 1 if x_train.ndim == 3 else 3 if args.loader == "tensor" else x_train.shape[1]
    model = small_cnn(channels) if args.model == "small-cnn" else PreActResNet18(width=args.width, in_channels=channels)
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=[callback, _Start(timer), _Stop(timer)])
    if args.channels_last:
        learn.to_channelslast(use_amp=args.fp16)
    elif args.fp16:
        learn.to_fp16()
    return learn, timer


def bare_forward_seconds(learn, args, pooling=False):
    """A bare eval-mode forward over the training images already on the device, in the loss
    pass's default batches, with the runs' precision and memory layout (the batches' own: plain
    contiguous unless ``--channels-last``): the least any loss pass costs; with ``pooling``, its
    max pooling in channels-last order, as the callback's pass makes it on a CPU. Returns the
    seconds and the batch size."""
    model = learn.model
    device = next(model.parameters()).device
    bs = tracking_batch_size(learn.dls.train, device)
    if args.loader == "tensor":
        images = learn.dls.train.images[: args.n_train].float().div_(255)
    else:
        images = as_float_images(args.arrays[0]).to(device)
    images = images.contiguous(memory_format=torch.channels_last if args.channels_last else torch.contiguous_format)
    autocast = torch.autocast("cuda", dtype=torch.float16) if args.fp16 and device.type == "cuda" else contextlib.nullcontext()
    with torch.inference_mode(), eval_mode(model), autocast, max_pooling_channels_last(model) if pooling else contextlib.nullcontext():
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(images), bs):
            model(images[i : i + bs])
        if device.type == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - start, bs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", choices=["mnist", "fashion_mnist", "cifar10", "synthetic"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--bs", type=int, default=128)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--model", default="small-cnn", choices=["small-cnn", "preact-resnet18"])
    parser.add_argument("--width", type=int, default=16, help="preact-resnet18's first-stage channels (64 in the paper)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loader", default="items", choices=["items", "tensor"],
                        help="items: fastai Datasets per sample (the CPU figures); tensor: uint8 images kept on the device")
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision (default: on CUDA with --loader tensor)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels-last memory order (default: on CUDA with --loader tensor)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="fewer timed rounds (at least one) where --rounds would not fit in this many seconds")
    parser.add_argument("--round-epochs", type=int, default=None,
                        help="epochs per timed round (default: 3 on a CPU, where lnc's default tracks every third epoch; 1 on a GPU)")
    parser.add_argument("--as-before", action=argparse.BooleanOptionalAction, default=None,
                        help="also time the waiting and memorising variants as the code before 2026-12-01's cheaper "
                             "passes ran them (default: on a CPU only, to keep the GPU check within its time)")
    parser.add_argument("--out-name", default=None, help="results file name (default: from dataset, model and device)")
    parser.add_argument("--variants", nargs="+", default=None, metavar="TEXT",
                        help="time only the variants whose names contain one of these texts (fastai MixUp, the "
                             "baseline, always), for more rounds of fewer variants in the same time")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.device = device
    gpu_path = device.type == "cuda" and args.loader == "tensor"
    args.fp16 = gpu_path if args.fp16 is None else args.fp16
    args.channels_last = gpu_path if args.channels_last is None else args.channels_last
    if args.channels_last and args.loader != "tensor":
        raise SystemExit("--channels-last needs --loader tensor")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    x_train, y_train, x_test, y_test = load_arrays(args.dataset, args.data_dir)
    noisy, _ = symmetric_noise(y_train[: args.n_train], args.noise, n_classes=10, random_state=args.seed)
    args.n_train = len(noisy)
    if args.loader == "tensor":
        data = (x_train[: args.n_train], noisy, x_test[: args.n_test], y_test[: args.n_test])
    else:
        data = (as_float_images(x_train[: args.n_train]), noisy, as_float_images(x_test[: args.n_test]), y_test[: args.n_test])
    args.arrays = (x_train[: args.n_train],)
    rounds_of = args.round_epochs or (1 if device.type == "cuda" else CPU_ROUND)
    variants = {
        "fastai MixUp": MixUp(alpha=32.0),
        "M-DYR-H (paper preset)": paper_variant("m-dyr-h"),
        "reference-style": reference_style(),
        "DynamicBootstrapMixUp()": lnc_variant(MIXUP),
        "DynamicBootstrapMixUp(tracking_every=1)": lnc_variant(MIXUP, tracking_every=1),
        "DynamicBootstrapMixUp(), memorising": lnc_variant(MEMORISING),
        "DynamicBootstrapMixUp(), waiting under heavy noise": lnc_variant(WAITING),
        # as before 2026-12-01: the whole pass every epoch, through the data pipeline every time
        "memorising, as before (keep_pass_inputs=False)": lnc_variant(MEMORISING, keep_pass_inputs=False),
        "waiting, as before (keep_pass_inputs=False)": lnc_variant(WAITING, keep_pass_inputs=False),
        # as before the channels-last forward (2026-12-01, evening): the per-batch forward in the inputs' order
        "memorising, plain order (channels_last=False)": lnc_variant(MEMORISING, channels_last=False),
        # the paper preset with the channels-last forward (off in paper mode unless asked)
        "M-DYR-H (paper preset), channels_last=True": paper_variant("m-dyr-h", channels_last=True),
        # as before max pooling in channels-last order (2026-12-01, late): the same values, pooled in the inputs' order
        "waiting, plain pooling (channels_last_pooling=False)": lnc_variant(WAITING, channels_last_pooling=False),
        "M-DYR-H (paper preset), plain pooling (channels_last_pooling=False)":
            paper_variant("m-dyr-h", channels_last_pooling=False),
    }
    if not (device.type == "cpu" if args.as_before is None else args.as_before):
        variants = {name: cb for name, cb in variants.items() if "as before" not in name}
    if device.type != "cpu":  # channels_last is "auto" (lnc mode) on a CPU only: both comparisons are CPU figures
        del variants["memorising, plain order (channels_last=False)"], variants["M-DYR-H (paper preset), channels_last=True"]
    # channels_last_pooling is "auto" on a CPU, and only the small CNN has max pooling: compared there only
    pooling_compared = device.type == "cpu" and args.model == "small-cnn"
    if not pooling_compared:
        variants = {name: cb for name, cb in variants.items() if "plain pooling" not in name}
    if device.type == "cuda" or rounds_of == 1:  # the default then tracks every epoch, as tracking_every=1 does
        del variants["DynamicBootstrapMixUp(tracking_every=1)"]
    if args.variants:
        variants = {name: cb for name, cb in variants.items()
                    if name == "fastai MixUp" or any(text in name for text in args.variants)}
        if len(variants) == 1:
            raise SystemExit(f"--variants {args.variants} matches no variant besides fastai MixUp")
    for cb in variants.values():
        if isinstance(cb, DynamicBootstrapMixUp):
            time_tracking(cb)
            keep_pass_inputs_across_rounds(cb)
    learners = {name: make_learner(cb, data, args) for name, cb in variants.items()}
    # One untimed epoch each: warm caches, and give the bootstrapping callbacks a fitted detector
    # (with warmup=0 every later fit bootstraps from its first batch).
    started = time.perf_counter()
    for learn, timer in learners.values():
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 1e-2)
        timer.seconds.clear()
        cb = next((c for c in learn.cbs if isinstance(c, DynamicBootstrapMixUp)), None)
        if cb is not None and cb._kept_inputs is not None:  # a second, untimed pass checks the kept batches
            cb._pass_inputs = cb._kept_inputs
            cb.per_sample_losses()
            cb._pass_inputs = None
    if args.max_seconds:  # as many rounds as fit, judged by the (slower) untimed round; at least one
        spent = time.perf_counter() - started
        args.rounds = max(1, min(args.rounds, int((args.max_seconds - spent) // spent)))
    for cb in variants.values():
        if hasattr(cb, "tracking_seconds"):
            cb.tracking_seconds.clear()
        if hasattr(cb, "copy_seconds"):
            cb.copy_seconds.clear()
    for _ in range(args.rounds):
        for learn, _timer in learners.values():
            with learn.no_bar(), learn.no_logging():
                learn.fit(rounds_of, 1e-2)  # on a CPU three epochs: lnc's default tracks one of them
    # the rewind's copy runs after validation, outside the timed training: added to its epoch
    for name, (learn, timer) in learners.items():
        copies = getattr(variants[name], "copy_seconds", None)
        if copies is not None:
            if len(copies) != len(timer.seconds):
                raise RuntimeError(f"{name}: {len(copies)} rewind copies for {len(timer.seconds)} timed epochs")
            timer.seconds = [t + c for t, c in zip(timer.seconds, copies)]
    # seconds per epoch: the median over rounds of each round's mean of its epochs
    per_round = {name: [statistics.mean(timer.seconds[i : i + rounds_of]) for i in range(0, len(timer.seconds), rounds_of)]
                 for name, (learn, timer) in learners.items()}
    base = statistics.median(per_round["fastai MixUp"])
    # the memorising variants end each round with a whole pass, which a long fit makes once, at
    # its last epoch: their ratio over each round's epochs before its last, against MixUp's same
    steady = {name: [statistics.mean(timer.seconds[i : i + rounds_of - 1]) for i in range(0, len(timer.seconds), rounds_of)]
              for name, (learn, timer) in learners.items()} if rounds_of > 1 else None
    rows = []
    for name, (learn, timer) in learners.items():
        median = statistics.median(per_round[name])
        tracking = getattr(variants[name], "tracking_seconds", None)
        rows.append({"variant": name, "median s/epoch": median, "ratio to MixUp": median / base,
                     "between whole passes": (statistics.median(steady[name]) / statistics.median(steady["fastai MixUp"])
                                              if steady and "memorising" in name else "-"),
                     "loss pass + refit per epoch": sum(tracking) / len(timer.seconds) if tracking else 0.0,
                     "pass batches": getattr(getattr(variants[name], "_kept_inputs", None), "state", "-"),
                     "epochs timed": ", ".join(f"{s:.2f}" for s in timer.seconds)})
    frame = pd.DataFrame(rows)
    print(frame.to_string(index=False))
    # What any per-epoch loss pass must at least spend: the bare forward over the training set.
    bare_forward, pass_bs = bare_forward_seconds(learners["fastai MixUp"][0], args)
    bare_pooled = bare_forward_seconds(learners["fastai MixUp"][0], args, pooling=True)[0] if pooling_compared else None
    setting = []
    if args.fp16:
        setting.append("mixed precision (fp16)")
    if args.channels_last:
        setting.append("channels-last")
    lines = [
        f"Data: first {args.n_train} {args.dataset} training images ({args.noise:g} symmetric noise), batch "
        f"{args.bs}, random crop and flip on the batch"
        + ("; uint8 images kept on the device, each batch cut, augmented and normalised there" if args.loader == "tensor"
           else "; fastai Datasets, one item per sample")
        + "; " + ("small CNN (`lnc_experiments/models.py`)" if args.model == "small-cnn" else f"PreAct ResNet-18 at width {args.width} (`lnc_experiments/models.py`)")
        + f"; device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
        + (f", {', '.join(setting)}" if setting else "") + ". "
        "Timed: training batches plus, for the bootstrapping variants, the per-epoch loss pass over the "
        f"training set and the detector refit. Each variant: {args.rounds} timed rounds of {rounds_of} epochs (`fit({rounds_of})`), after one "
        "untimed epoch; s/epoch is the median over rounds of the round's mean; rounds interleaved round-robin in one process. "
        "The bootstrapping callbacks keep their pass's input batches (`keep_pass_inputs`, the default) from round to "
        "round, as one long fit keeps them from its third pass on (an untimed pass after the untimed epoch checks them; "
        "`pass batches`: `kept` where the timed passes read them from memory). "
        "lnc's default is timed held in its phases (`lnc_variant` in the script): `DynamicBootstrapMixUp()` without a "
        "call (mixup, the pass every third epoch on a CPU), 'waiting under heavy noise' before the call (mixup, the "
        "pass every epoch), 'memorising' after it (a forward of each un-mixed batch for its targets).",
        (f"`between whole passes` (the memorising variants): the ratio over each round's first {rounds_of - 1} "
         "epochs, against MixUp's same epochs, leaving out the whole pass that ends each round (their other "
         "passes come from the batches' forwards); a long fit makes that whole pass once, at its last epoch."
         if rounds_of > 1 else ""),
        "",
        markdown_table(frame, "{:.3f}"),
        "",
        f"For scale: a bare eval-mode forward over the {args.n_train} training images (tensors already in "
        f"memory, no data pipeline, batch {pass_bs}) takes {bare_forward:.3f} s = "
        f"{bare_forward / base:.2f} of a MixUp epoch on this device"
        + (f" ({bare_pooled:.3f} s = {bare_pooled / base:.2f} with its max pooling in channels-last order, as the "
           "callback's pass makes it here)" if bare_pooled is not None else "")
        + ". The loss pass costs at least that, and the paper preset's extra forward per batch about as much again.",
    ]
    model_tag = "" if args.model == "small-cnn" else f"_{args.model}_w{args.width}"
    name = args.out_name or f"callback_overhead_{args.dataset}{model_tag}_{'gpu' if device.type == 'cuda' else 'cpu'}.md"
    path = write_results(name, "DynamicBootstrapMixUp overhead per epoch", lines)
    write_json(Path(name).with_suffix(".json").name, {"rows": rows, "bare_forward_seconds": bare_forward,
                                                      "bare_forward_seconds_channels_last_pooling": bare_pooled,
                                                      "n_train": args.n_train, "bs": args.bs, "tracking_bs": pass_bs})
    print(f"written {path}")


if __name__ == "__main__":
    main()
