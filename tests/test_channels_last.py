"""The forward of each un-mixed batch in channels-last memory order (``channels_last``): the
images are copied into that order, the logits are those of the inputs as they are, lnc's mode
does it on a CPU by default and the paper's presets only when asked, and a model that fails on
such inputs gets them as they are."""

import warnings

import pytest
import torch
from torch import nn

from lnc_fastai import DynamicBootstrapMixUp, TrainingPolicy
from lnc_fastai.batches import channels_last

N_TRAIN, SIDE = 96, 8  # N_TRAIN: the training images of the conftest learner


@pytest.mark.parametrize("n_channels", [1, 3])
def test_images_are_copied_into_channels_last_order_with_their_values(n_channels):
    x = torch.randn(4, n_channels, SIDE, SIDE)
    (out,) = channels_last((x,))
    assert out.stride(1) == 1 and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    assert x.stride(1) == SIDE * SIDE  # the batch itself is left as it was


def test_other_inputs_and_images_already_in_that_order_are_left_as_they_are():
    ready = torch.randn(4, 3, SIDE, SIDE).contiguous(memory_format=torch.channels_last)
    flat, codes = torch.randn(4, 6), torch.zeros(4, 3, SIDE, SIDE, dtype=torch.long)
    out = channels_last((ready, flat, codes, "not a tensor"))
    assert out[0] is ready and out[1] is flat and out[2] is codes and out[3] == "not a tensor"


@pytest.fixture
def image_learner(random_image_learner):
    """``make(cb, n_channels=1, flatten_first=False)``: a learner on random images (conftest) with a
    small CNN, or with a model that flattens its input first."""

    def make(cb, n_channels=1, flatten_first=False):
        def model():
            if flatten_first:  # views its input as laid out in memory: fails on channels-last images
                return nn.Sequential(Flattening(), nn.Linear(n_channels * SIDE * SIDE, 3))
            return nn.Sequential(nn.Conv2d(n_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(8 * (SIDE // 2) ** 2, 3))

        return random_image_learner(cb, n_channels, SIDE, model)

    return make


class Flattening(nn.Module):
    def forward(self, x):
        return x.view(x.shape[0], -1)


class CalledAtOne(TrainingPolicy):
    """lnc mode's policy as if the memorisation call had come after epoch 0."""

    def _epoch_plan(self, epoch):
        if epoch >= 1:
            self.regime, self.memorising_since = "heavy", 1
        return super()._epoch_plan(epoch)


def Memorising(channels_last="auto"):  # noqa: N802  (a callback maker)
    cb = DynamicBootstrapMixUp(policy=CalledAtOne(warmup=0))
    cb.tracking_every, cb.channels_last = 1, channels_last
    return cb


def unmixed_forwards(learn):
    """Fits ``learn`` for three epochs and returns, for each eval-mode forward of a training batch
    (the un-mixed batch's, outside the pass's inference mode), whether its images were in
    channels-last order, and whether its logits equal a forward of the same images in plain order."""
    seen, busy = [], []

    def hook(module, inputs, output):
        if not learn.training or module.training or torch.is_inference_mode_enabled() or busy:
            return
        busy.append(True)
        plain = module(inputs[0].contiguous())
        busy.clear()
        seen.append((inputs[0].stride(1) == 1, torch.allclose(output, plain, atol=1e-5)))

    learn.model.register_forward_hook(hook)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(3, 1e-2)
    return seen


@pytest.mark.parametrize("n_channels", [1, 3])
def test_lnc_mode_on_a_cpu_makes_the_forward_of_each_batch_in_channels_last_order(n_channels, image_learner):
    cb = Memorising()
    seen = unmixed_forwards(image_learner(cb, n_channels))
    assert cb.channels_last_ and len(seen) == 2 * (N_TRAIN // 16)  # every batch of the two memorising epochs
    assert all(ordered and same for ordered, same in seen)


@pytest.mark.parametrize("make", [lambda: Memorising(channels_last=False),
                                  lambda: DynamicBootstrapMixUp.preset("m-dyr-h", warmup=0)],
                         ids=["channels_last=False", "paper preset"])
def test_it_is_off_when_asked_and_in_the_paper_presets_unless_asked(make, image_learner):
    cb = make()
    seen = unmixed_forwards(image_learner(cb, 3))
    assert not cb.channels_last_ and seen and not any(ordered for ordered, _ in seen)
    asked = DynamicBootstrapMixUp.preset("m-dyr-h", warmup=0)
    asked.channels_last = True
    seen = unmixed_forwards(image_learner(asked, 3))
    assert asked.channels_last_ and seen and all(ordered for ordered, _ in seen)


def test_a_model_that_fails_on_channels_last_images_gets_them_as_they_are_with_a_warning(image_learner):
    cb = Memorising()
    learn = image_learner(cb, 3, flatten_first=True)
    with learn.no_bar(), learn.no_logging(), pytest.warns(RuntimeWarning, match="channels-last inputs"):
        learn.fit(3, 1e-2)
    assert not cb.channels_last_ and list(cb.history["fresh_targets"]) == [False, True, True]


def test_channels_last_is_a_speed_setting_chosen_for_the_device():
    with pytest.raises(TypeError, match="no longer takes 'channels_last'.*speed setting"):
        DynamicBootstrapMixUp(channels_last=True)
