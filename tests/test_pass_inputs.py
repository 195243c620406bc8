"""The loss pass's batches kept between passes (``keep_pass_inputs``): later passes skip the data
pipeline, and the run is the same as without keeping them."""

import warnings

import numpy as np
import pytest
import torch
from fastai.basics import Callback, CrossEntropyLossFlat, Datasets, Learner, TensorCategory
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner)
from fastai.torch_core import set_seed
from torch import nn

from lnc_fastai import DynamicBootstrapMixUp
from lnc_fastai.pass_inputs import PassInputs, batch_bytes, same_batch


def batches(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, generator=g), torch.arange(4) + i) for i in range(n)]


class Counted:
    """An iterable over fixed batches that counts how many it handed out."""

    def __init__(self, data):
        self.data, self.built = data, 0

    def __iter__(self):
        for batch in self.data:
            self.built += 1
            yield batch


def test_batches_are_kept_after_two_passes_built_the_same_and_then_served_from_memory():
    data, inputs = batches(), PassInputs(10**6)
    states, built = [], []
    for _ in range(4):
        pipeline = Counted(data)
        out = list(inputs.batches("train", pipeline, "cpu"))
        assert len(out) == len(data) and all(same_batch(a, b) for a, b in zip(out, data))
        states.append(inputs.state)
        built.append(pipeline.built)
    assert states == ["checking", "kept", "kept", "kept"]
    assert built == [3, 3, 1, 1]  # once kept, the pipeline builds the first batch only
    assert inputs.kept[1][0] is not data[1][0]  # copies, not the pipeline's own tensors


def test_a_pipeline_that_builds_other_batches_is_used_for_every_pass():
    inputs = PassInputs(10**6)
    for seed in range(3):  # random transforms: every pass differs
        data = batches(seed=seed)
        out = list(inputs.batches("train", Counted(data), "cpu"))
        assert all(same_batch(a, b) for a, b in zip(out, data))
    assert inputs.state == "off" and "other batches" in inputs.why_off
    # a first batch that changes once kept: the pipeline's batches, all of them, from then on
    kept, data = PassInputs(10**6), batches()
    for _ in range(2):
        list(kept.batches("train", Counted(data), "cpu"))
    assert kept.state == "kept"
    changed = batches(seed=5)
    pipeline = Counted(changed)
    out = list(kept.batches("train", pipeline, "cpu"))
    assert pipeline.built == 3 and all(same_batch(a, b) for a, b in zip(out, changed))
    assert kept.state == "off" and "first batch" in kept.why_off


def test_a_limit_too_small_or_a_new_key_and_bad_limits():
    data = batches()
    small = PassInputs(batch_bytes(data[0]) * 2)  # room for two of the three batches
    for _ in range(3):
        out = list(small.batches("train", Counted(data), "cpu"))
        assert len(out) == 3
    assert small.state == "off" and small.kept == []
    inputs = PassInputs(10**6)
    for _ in range(2):
        list(inputs.batches("train", Counted(data), "cpu"))
    assert inputs.state == "kept"
    pipeline = Counted(batches(seed=1))
    list(inputs.batches("another loader", pipeline, "cpu"))
    assert inputs.state == "checking" and pipeline.built == 3  # started over for the new key
    assert PassInputs(0).batches("train", Counted(data), "cpu") is not None
    off = PassInputs(0)
    assert len(list(off.batches("train", Counted(data), "cpu"))) == 3 and off.state == "off"
    for bad in (-1, 1.5, True, "2GB"):
        with pytest.raises(ValueError, match="limit_bytes"):
            PassInputs(bad)
    assert not same_batch(data[0], data[0][:1]) and not same_batch(data[0], (data[0][0], data[0][1] + 1))


# ---- in the callback -------------------------------------------------------------------------
N_TRAIN, N_VALID = 160, 40


def learner(cb, random_items=False):
    """A small learner over fastai Datasets whose input transform counts the items it builds
    (``random_items``: and adds noise in every split, as a random validation transform would)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VALID, 5, generator=generator)
    y = (x[:, :3].argmax(dim=1) + (torch.rand(N_TRAIN + N_VALID, generator=generator) < 0.3).long()) % 3
    built = {"items": 0}

    def item(i):
        built["items"] += 1
        return x[i] + (0.1 * torch.randn(5) if random_items else 0)

    splits = [list(range(N_TRAIN)), list(range(N_TRAIN, N_TRAIN + N_VALID))]
    datasets = Datasets(range(N_TRAIN + N_VALID), tfms=[[item], [lambda i: TensorCategory(y[i])]], splits=splits)
    dls = datasets.dataloaders(bs=32, val_bs=N_VALID, drop_last=True, num_workers=0)  # items counted in this process
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=cb), built


class Watch(Callback):
    """The kept batches' state and the items the data pipeline built, after each epoch."""

    order = 100

    def __init__(self, cb, built):
        self.cb, self.built, self.states, self.items = cb, built, [], []

    def after_epoch(self):
        inputs = self.cb._pass_inputs
        self.states.append(None if inputs is None else inputs.state)
        self.items.append(self.built["items"])


def fitted(keep, random_items=False, epochs=5):
    set_seed(0)
    cb = DynamicBootstrapMixUp(warmup=0)
    cb.tracking_every, cb.keep_pass_inputs = 1, keep  # speed settings, as attributes
    learn, built = learner(cb, random_items)
    watch = Watch(cb, built)
    learn.add_cb(watch)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit_one_cycle(epochs, 1e-2)
    return cb, learn, watch


@pytest.mark.parametrize("random_items", [False, True])
def test_keeping_the_pass_inputs_leaves_the_run_as_it_was(random_items):
    kept, kept_learn, kept_watch = fitted("auto", random_items)  # on a CPU: kept
    plain, plain_learn, plain_watch = fitted(False, random_items)
    assert plain_watch.states == [None] * 5
    if random_items:
        assert kept_watch.states == ["checking"] + ["off"] * 4  # the second pass differed
    else:
        assert kept_watch.states == ["checking", "kept", "kept", "kept", "kept"]
        # from the third pass on the pipeline built one batch of the pass, not all five
        per_epoch = np.diff([0] + kept_watch.items) - np.diff([0] + plain_watch.items)
        assert per_epoch.tolist() == [0, 0, -(N_TRAIN - 32), -(N_TRAIN - 32), -(N_TRAIN - 32)]
    assert np.array_equal(kept.p_noisy_, plain.p_noisy_, equal_nan=True)
    assert np.array_equal(kept.losses_, plain.losses_)
    for a, b in zip(kept_learn.model.parameters(), plain_learn.model.parameters()):
        assert torch.equal(a, b)  # same draws, same batches: the same weights
    assert kept._pass_inputs is None  # not kept beyond the fit (exports, checkpoints)


def test_keep_pass_inputs_is_a_speed_setting_chosen_for_the_device():
    with pytest.raises(TypeError, match="no longer takes 'keep_pass_inputs'.*speed setting"):
        DynamicBootstrapMixUp(keep_pass_inputs=False)
