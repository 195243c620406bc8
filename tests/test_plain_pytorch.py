"""lnc mode from a hand-written PyTorch loop: the same core as the fastai callback, the same
decisions and weights when fed the same passes, and the example that trains that way."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lnc_fastai import NoiseCorrection, TrainingPolicy, loss_pass

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_fed_the_callbacks_passes_the_plain_core_makes_the_same_plans_and_weights():
    from test_lnc_mode import N_TRAIN, fit_quietly, indexed_learner

    from lnc_fastai import DynamicBootstrapMixUp

    cb = DynamicBootstrapMixUp(warmup=1)
    cb.tracking_every = 1
    passes, plans, weights = [], [], []
    observe, update = cb.correction.observe, cb.correction.update

    def record_observe(epoch, *arrays):
        copies = [np.array(a, copy=True) for a in arrays]
        count = observe(epoch, *arrays)
        passes.append((epoch, copies, cb.correction.noise_flags_.copy()))
        return count

    def record_update(epoch, valid_history=()):
        passes[-1] = (*passes[-1], list(valid_history))
        plan = update(epoch, valid_history)
        plans.append([plan.at(e) for e in range(epoch + 1, cb.n_epoch)])
        weights.append(cb.correction.sample_weights(plan.at(epoch + 1)) if epoch + 1 < cb.n_epoch else None)
        return plan

    cb.correction.observe, cb.correction.update = record_observe, record_update
    learn = indexed_learner(cb, noise=0.4)
    fit_quietly(learn, 6, one_cycle=True)
    assert len(passes) == 6
    plain = NoiseCorrection()
    plain.start(6)
    for (epoch, arrays, flags, history), expected_plans, expected_weights in zip(passes, plans, weights):
        plain.observe(epoch, *arrays)
        np.testing.assert_array_equal(plain.noise_flags_, flags)
        plan = plain.update(epoch, history)
        assert [plan.at(e) for e in range(epoch + 1, 6)] == expected_plans
        if expected_weights is not None:
            np.testing.assert_array_equal(plain.sample_weights(plan.at(epoch + 1)), expected_weights)
    np.testing.assert_array_equal(plain.p_noisy_, cb.p_noisy_)
    assert plain.policy.state_dict()["reason"] == cb.policy.reason and plain.policy.regime == cb.policy.regime
    assert cb.p_noisy_.shape == (N_TRAIN,)


def test_a_plain_loop_trains_with_indices_and_bootstraps_after_the_call():
    torch.manual_seed(0)
    x = torch.randn(120, 5)
    y = x[:, :3].argmax(1)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = TensorDataset(x, y, torch.arange(120))
    correction = NoiseCorrection(policy=TrainingPolicy(warmup=0, ramp=0, memorisation_threshold=1.0))  # no call of its own
    correction.start(4)
    for epoch in range(4):
        plan = correction.epoch_plan(epoch)
        assert plan.phase == ("bootstrapping" if epoch == 3 else "mixup")
        forwards = []
        hook = model.register_forward_hook(lambda module, inputs, output: forwards.append(module.training))
        for xb, yb, idx in DataLoader(data, batch_size=32, shuffle=True):
            loss = correction.training_loss(model, xb, yb, idx, plan)
            assert loss.ndim == 0 and torch.isfinite(loss)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        hook.remove()
        # after the call, one forward of each un-mixed batch (eval mode) for its targets
        assert forwards.count(False) == (4 if epoch == 3 else 0) and forwards.count(True) == 4
        losses, labels, predictions, probabilities = loss_pass(model, DataLoader(data, batch_size=50))
        assert losses.shape == labels.shape == predictions.shape == (120,) and probabilities.shape == (120, 3)
        np.testing.assert_array_equal(labels, y.numpy())
        correction.observe(epoch, losses, labels, predictions, probabilities)
        correction.update(epoch, [])
        if epoch == 2:  # as if the network had been seen memorising under heavy noise
            correction.policy.memorising_since = 3
    weights = correction.sample_weights(correction.epoch_plan(3))
    assert weights.shape == (120,) and np.all((weights > 0) & (weights < 1))


def test_the_plain_pytorch_example_trains_through_heavy_noise():
    result = subprocess.run([sys.executable, "plain_pytorch.py", "--epochs", "15"], cwd=EXAMPLES, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "42% of their labels wrong" in out and "the count reads" in out and "heavy noise" in out
    ce, lnc = (float(v) for v in out.strip().splitlines()[-1].replace(",", "").split()[-3::2])
    assert 0.1 < ce < 1 and 0.1 < lnc < 1


def test_no_bootstrapping_before_a_usable_pass():
    correction = NoiseCorrection(policy=TrainingPolicy(warmup=0))
    correction.start(3)
    correction.policy.memorising_since = 0  # whatever the policy says
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = correction.epoch_plan(0)
    assert plan.bootstrap_scale == 0 and not plan.fresh_targets
    try:
        correction.update(0)
    except RuntimeError as error:
        assert "needs a pass first" in str(error)
    else:
        raise AssertionError("update without a pass did not raise")
