"""Max pooling in channels-last order in the callback's own forwards (``channels_last_pooling``):
the pooling layers see channels-last images and hand the usual order on, the results are those of
the model as it is to the last bit (also of whole fits), the hooks go away afterwards, and a model
that fails with it runs without it, with a warning."""

import random
import warnings

import numpy as np
import pytest
import torch
from fastai.basics import TensorImage
from torch import nn

from lnc_fastai import DynamicBootstrapMixUp
from lnc_fastai.pooling import PoolingForward, max_pooling_channels_last

SIDE = 12


def pooling_cnn(n_channels, pool=lambda: nn.MaxPool2d(2)):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(n_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), pool(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                          nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, n_channels, SIDE, SIDE))  # the lazy layer's shape
    for module in model.modules():  # running statistics that are not the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def layouts_seen(model):
    """Records, for every max pooling layer, whether its input was in channels-last order, and for
    every layer after one, whether its input was in the usual order (hooks registered last: they
    see what the pooling hooks made of the inputs)."""
    seen = {"pooled": [], "after": []}
    modules = list(model)
    for i, module in enumerate(modules):
        if isinstance(module, nn.MaxPool2d):
            module.register_forward_pre_hook(lambda m, args: seen["pooled"].append(args[0].stride(1) == 1))
            modules[i + 1].register_forward_pre_hook(lambda m, args: seen["after"].append(args[0].is_contiguous()))
    return seen


@pytest.mark.parametrize("n_channels", [1, 3])
def test_the_pooling_layers_see_channels_last_images_and_the_logits_are_the_same_bits(n_channels):
    model = pooling_cnn(n_channels)
    x = torch.randn(16, n_channels, SIDE, SIDE)
    with torch.inference_mode():
        expected = model(x)
        with max_pooling_channels_last(model) as n_pooling:
            seen = layouts_seen(model)
            got = model(x)
    assert n_pooling == 2
    assert seen == {"pooled": [True, True], "after": [True, True]}
    assert torch.equal(got, expected)
    assert x.stride(1) == SIDE * SIDE  # the batch itself is left as it was


def test_the_models_own_hooks_on_a_pooling_layer_see_its_output_in_the_usual_order():
    pool = nn.MaxPool2d(2)
    seen = []
    pool.register_forward_hook(lambda m, args, out: seen.append(out.is_contiguous()))
    with torch.inference_mode(), max_pooling_channels_last(pool):
        out = pool(torch.randn(2, 4, SIDE, SIDE))
    assert seen == [True] and out.is_contiguous()


def test_the_hooks_go_away_afterwards_also_when_the_forward_raises():
    model = pooling_cnn(3)
    with pytest.raises(RuntimeError):
        with max_pooling_channels_last(model):
            model(torch.randn(2, 5, SIDE, SIDE))  # five channels for a three-channel convolution
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    seen = layouts_seen(model)
    with torch.inference_mode():
        model(torch.randn(2, 3, SIDE, SIDE))
    assert seen["pooled"] == [False, False]


def test_channels_last_inputs_unbatched_images_and_pooling_that_returns_indices_pass_as_they_are():
    pool = nn.MaxPool2d(2)
    ready = torch.randn(2, 4, SIDE, SIDE).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), max_pooling_channels_last(pool):
        out = pool(ready)
        unbatched = pool(torch.randn(4, SIDE, SIDE))
    assert out.is_contiguous(memory_format=torch.channels_last)  # as without the hooks: not copied back
    assert unbatched.shape == (4, SIDE // 2, SIDE // 2)
    with_indices = nn.MaxPool2d(2, return_indices=True)
    with max_pooling_channels_last(with_indices) as n_pooling:
        assert n_pooling == 0 and not with_indices._forward_pre_hooks


class RefusingPool(nn.MaxPool2d):
    """A pooling layer that cannot take channels-last images."""

    def forward(self, x):
        if x.stride(1) == 1 and x.shape[1] > 1:
            raise RuntimeError("no channels-last images here")
        return super().forward(x)


def test_a_model_that_fails_with_it_runs_without_it_after_one_warning():
    model = pooling_cnn(3, pool=lambda: RefusingPool(2))
    x = torch.randn(4, 3, SIDE, SIDE)
    forward = PoolingForward()
    with torch.inference_mode():
        expected = model(x)
        with pytest.warns(RuntimeWarning, match="max pooling in channels-last order"):
            got = forward(model, (x,))
        assert torch.equal(got, expected) and not forward.on
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert torch.equal(forward(model, (x,)), expected)
        with pytest.raises(RuntimeError):  # an error the pooling did not cause is raised
            PoolingForward()(model, (torch.randn(4, 5, SIDE, SIDE),))


def fit(make, pooling, random_image_learner):
    """Three epochs from the same start; the weights, the pass's losses, and whether the
    callback's forwards pooled channels-last images."""
    random.seed(0), np.random.seed(0), torch.manual_seed(0)  # fastai's DataLoader draws its shuffling seed from random
    cb = make(pooling)
    learn = random_image_learner(cb, 3, SIDE, lambda: pooling_cnn(3).train(), image_type=TensorImage)
    pooled = []
    for module in learn.model.modules():
        if isinstance(module, nn.MaxPool2d):
            module.register_forward_hook(  # sees the input the pooling got; the callback's forwards: eval mode in training
                lambda m, args, out: pooled.append(args[0].stride(1) == 1) if learn.training and not m.training else None)
    torch.manual_seed(1)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(3, 1e-2)
    weights = torch.cat([p.detach().flatten() for p in learn.model.parameters()])
    return cb, weights, cb.losses_, pooled


def with_speed(cb, **settings):
    """``cb`` with speed settings (attributes since they are chosen for the device) as given."""
    for name, value in settings.items():
        setattr(cb, name, value)
    return cb


@pytest.mark.parametrize("make", [
    lambda pooling: with_speed(DynamicBootstrapMixUp.preset("m-dyr-h", warmup=0), channels_last_pooling=pooling),
    lambda pooling: with_speed(DynamicBootstrapMixUp(warmup=0), tracking_every=1, channels_last=False,
                               channels_last_pooling=pooling),
], ids=["paper preset", "lnc mode"])
def test_whole_fits_are_the_same_to_the_last_bit_with_and_without_it(make, random_image_learner):
    on, weights_on, losses_on, pooled_on = fit(make, "auto", random_image_learner)
    off, weights_off, losses_off, pooled_off = fit(make, False, random_image_learner)
    assert on.channels_last_pooling_ and not off.channels_last_pooling_  # "auto": on a CPU
    assert pooled_on and all(pooled_on)  # every eval-mode pooling of the callback's forwards
    assert pooled_off and not any(pooled_off)
    assert len(on.history) == 3
    assert torch.equal(weights_on, weights_off)
    np.testing.assert_array_equal(losses_on, losses_off)


def test_channels_last_pooling_is_a_speed_setting_chosen_for_the_device():
    with pytest.raises(TypeError, match="no longer takes 'channels_last_pooling'.*speed setting"):
        DynamicBootstrapMixUp(channels_last_pooling=False)


def test_the_pooling_modules_are_looked_up_once_per_model_and_not_pickled_with_it():
    import copy
    import pickle

    model = pooling_cnn(3)
    x = torch.randn(2, 3, SIDE, SIDE)
    forward = PoolingForward()
    with torch.inference_mode():
        expected = model(x)
        assert torch.equal(forward(model, (x,)), expected)
        looked_up = forward._modules
        assert len(looked_up) == 2 and forward(model, (x,)) is not None and forward._modules is looked_up
        other = pooling_cnn(1)
        forward(other, (torch.randn(2, 1, SIDE, SIDE),))
    assert forward._model is other and forward._modules is not looked_up
    for restored in (pickle.loads(pickle.dumps(forward)), copy.deepcopy(forward)):
        assert restored.on and restored._model is None and restored._modules == []
