"""lnc's own training mode, ``DynamicBootstrapMixUp()``: its maths, its presets, and that each
batch reads its weights and targets from the per-epoch pass by sample index, with no extra forward."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastai.basics import Callback, CrossEntropyLossFlat, Datasets, Learner, TensorCategory
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner)
from fastai.data.load import DataLoader
from fastai.torch_core import set_seed
from torch import nn

from lnc_fastai import DynamicBootstrapMixUp, TrainingPolicy
from lnc_fastai.adaptive import (
    class_prior,
    collapse_guard,
    effective_classes,
    label_fit,
    memorisation,
    noise_regime,
    ramp,
    running_average,
    still_improving,
)
from lnc_fastai.batches import WEIGHT_CLIP, plain
from lnc_fastai.tracking import epoch_indices, per_sample_losses, tracking_batch_size
from lnc_sklearn import NoiseCount

# counts the regime tests tell the callback about: heavy noise (the network disbelieves most
# labels), light noise found, and none
HEAVY = NoiseCount(0.6, (0.5, 0.9), "cannot tell", "mixture", most_disbelieved=True)
LIGHT = NoiseCount(0.05, (0.03, 0.07), "noise", "log-odds count")
NONE = NoiseCount(0.0, (0.0, 0.01), "little or no noise", "label confidence")

N_TRAIN, N_VALID, N_FEATURES, N_CLASSES = 200, 40, 6, 3


@pytest.fixture(autouse=True)
def seeded():
    set_seed(0)


# ---- the maths ------------------------------------------------------------------------------
def test_running_average_starts_at_the_first_epoch_and_weighs_later_ones():
    first = np.array([[1.0, 0.0], [0.5, 0.5]])
    average = running_average(None, first, 0.7)
    assert np.array_equal(average, first) and average.dtype == np.float32
    second = running_average(average, np.array([[0.0, 1.0], [0.5, 0.5]]), 0.7)
    assert np.allclose(second, [[0.7, 0.3], [0.5, 0.5]])
    with pytest.raises(ValueError, match="momentum"):
        running_average(None, first, 1.0)
    with pytest.raises(ValueError, match="shape"):
        running_average(average, np.ones((3, 2)), 0.5)


def test_effective_classes_counts_an_even_spread_fully_and_one_class_once():
    assert effective_classes(np.arange(10) % 5, 5) == pytest.approx(5.0)
    assert effective_classes(np.zeros(7, int), 5) == pytest.approx(1.0)
    assert 1 < effective_classes([0, 0, 0, 1], 2) < 2


def test_collapse_guard_backs_off_as_predictions_narrow():
    assert collapse_guard(10.0, 10.0) == 1.0
    assert collapse_guard(8.0, 10.0) == pytest.approx(1.0)
    assert collapse_guard(6.5, 10.0) == pytest.approx(0.5)
    assert collapse_guard(2.0, 10.0) == 0.0  # the CIFAR-10 collapse: a few classes left
    assert collapse_guard(float("nan"), 10.0) == 0.0
    with pytest.raises(ValueError):
        collapse_guard(1.0, 1.0, low=0.9, high=0.5)


def test_still_improving_reads_the_validation_accuracy():
    # CIFAR-10 at 0% noise, 12 epochs: the validation accuracy rises every epoch, the network learns
    assert still_improving([0.24, 0.27, 0.43, 0.44, 0.49, 0.52, 0.53, 0.56])
    # the digits at 80%: best at the third epoch, then lower: what it now fits, it memorises
    assert not still_improving([0.34, 0.50, 0.56, 0.51, 0.38, 0.36])
    assert not still_improving([0.10, 0.50, 0.56, 0.55, 0.565, 0.56])  # within 2.5% of the range of the best: a stall
    assert still_improving([0.10, 0.50, 0.56, 0.55, 0.58, 0.56])  # 2 points on a range of 48: a gain
    assert still_improving([0.24, 0.35, 0.35, 0.34, 0.48])  # a two-epoch stall at the peak learning rate
    assert still_improving([0.3, 0.4, 0.35])  # too early to tell
    assert not still_improving([]) and not still_improving(None)  # no validation set: no veto
    assert not still_improving([0.5, float("nan"), 0.4, 0.45, 0.44])  # NaNs left out


def test_still_improving_reads_a_noisy_validation_split_as_a_clean_one():
    # CIFAR-10 at 0% noise, 12 one-cycle epochs (the training matrix's default run, seed 0), and the
    # same curve read against validation labels of which 80% are wrong: 0.089 + 0.111 a
    clean = [0.193, 0.342, 0.399, 0.435, 0.444, 0.477, 0.513, 0.582, 0.618, 0.643, 0.66, 0.678]
    noisy = [0.089 + 0.111 * a for a in clean]
    assert all(still_improving(clean[:k]) for k in range(1, 13))
    assert all(still_improving(noisy[:k]) for k in range(1, 13))  # a fixed gain of 1 point: stalled at epoch 6
    assert [still_improving(clean[:k]) for k in range(1, 13)] == [still_improving(noisy[:k]) for k in range(1, 13)]


def test_ramp_rises_from_its_start():
    assert [ramp(e, 2, 3) for e in range(7)] == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert ramp(5, 5, 0) == 1.0


def test_class_prior_is_the_label_frequencies():
    assert np.allclose(class_prior([0, 0, 1, 2], 4), [0.5, 0.25, 0.25, 0.0])


def test_memorisation_is_the_share_of_flagged_samples_predicted_as_their_label():
    labels = np.array([0, 1, 2, 0, 1])
    predictions = np.array([0, 2, 2, 1, 1])
    flagged = np.array([False, True, True, True, False])
    assert memorisation(predictions, labels, flagged) == pytest.approx(1 / 3)
    assert np.isnan(memorisation(predictions, labels, np.zeros(5, bool)))


def test_memorisation_takes_off_what_churn_gives_by_chance():
    rng = np.random.default_rng(0)
    n, k = 20000, 10
    labels = rng.integers(0, k, n)
    previous = (labels + rng.integers(1, k, n)) % k  # every flagged sample was predicted as another class
    flagged = np.ones(n, dtype=bool)
    # a network that churns: its predictions move to any other class, whatever the label
    churned = (previous + rng.integers(1, k, n)) % k
    raw = memorisation(churned, labels, flagged)
    assert raw == pytest.approx(1 / (k - 1), abs=0.01)  # above a threshold of 0.05 by chance alone
    assert memorisation(churned, labels, flagged, previous, k) == pytest.approx(0.0, abs=0.01)
    # a network that memorises: a fifth of the flagged samples moves to their given label
    memorised = np.where(rng.random(n) < 0.2, labels, previous)
    assert memorisation(memorised, labels, flagged, previous, k) == pytest.approx(0.2 - 0.2 / (k - 1), abs=0.01)
    # no previous predictions, or two classes (any move lands on the label): the plain share
    assert memorisation(churned, labels, flagged, None, k) == raw
    two = labels % 2
    assert memorisation(1 - two, two, flagged, two, 2) == memorisation(1 - two, two, flagged)


def test_memorising_needs_the_share_above_its_threshold_and_beyond_chance():
    from lnc_fastai.adaptive import CHANCE_MARGIN, memorising

    assert memorising(0.06, 0.03, 0.05)
    assert not memorising(0.10, -0.002, 0.05)  # churn alone: the share above the threshold, nothing beyond chance
    assert not memorising(0.10, CHANCE_MARGIN, 0.05)  # the margin is exceeded, not met
    assert not memorising(0.05, 0.04, 0.05)  # the threshold is exceeded, not met
    assert not memorising(float("nan"), 0.3, 0.05) and not memorising(0.3, float("nan"), 0.05)


def test_label_fit_is_the_share_predicted_as_the_given_label():
    assert label_fit([0, 1, 2, 2], [0, 1, 1, 0]) == 0.5
    assert np.isnan(label_fit([], []))
    with pytest.raises(ValueError, match="shape"):
        label_fit([0, 1], [0, 1, 2])


def test_noise_regime():
    def count(rate, verdict, source, heavy=False):
        return NoiseCount(rate, (rate, rate), verdict, source, most_disbelieved=heavy)

    assert noise_regime(count(0.0, "little or no noise", "label confidence")) == "none"
    assert noise_regime(count(0.05, "noise", "log-odds count")) == "light"
    assert noise_regime(count(0.05, "cannot tell", "log-odds count")) == "light"  # the estimate, not the verdict
    assert noise_regime(count(0.4, "cannot tell", "label confidence", heavy=True)) == "heavy"


# ---- construction ---------------------------------------------------------------------------
def test_no_arguments_is_lncs_mode_and_the_presets_are_the_papers():
    default = DynamicBootstrapMixUp()
    assert (default.mode, default.bootstrap, default.alpha, default.warmup) == ("lnc", "hard", 0.4, 0.1)
    assert (default.policy.alpha, default.policy.warmup) == (0.4, 0.1) and default.policy is default.correction.policy
    m_dyr_h = DynamicBootstrapMixUp.preset("m-dyr-h")
    assert (m_dyr_h.mode, m_dyr_h.bootstrap, m_dyr_h.alpha, m_dyr_h.warmup) == ("paper", "hard", 32.0, 0.35)
    assert DynamicBootstrapMixUp.preset("m-dyr-s").bootstrap == "soft"
    sh = DynamicBootstrapMixUp.preset("md-dyr-sh", warmup=3)
    assert (sh.bootstrap, sh.detector_mixing, sh.warmup) == ("soft-to-hard", True, 3)
    with pytest.raises(ValueError, match="preset must be one of"):
        DynamicBootstrapMixUp.preset("m-dyr-x")
    with pytest.raises(ValueError, match="MD-DYR-SH"):
        DynamicBootstrapMixUp(detector_mixing=True)
    with pytest.raises(ValueError, match="mode must be one of"):
        DynamicBootstrapMixUp(mode="fast")


def test_lnc_mode_shows_at_most_ten_parameters_and_removed_ones_say_what_replaces_them():
    import inspect

    from lnc_fastai import TrainingPolicy
    from lnc_fastai.options import REMOVED

    shown = [p for p in inspect.signature(DynamicBootstrapMixUp).parameters.values() if p.kind != p.VAR_KEYWORD]
    assert len(shown) <= 10
    for name in ("memorisation_threshold", "ramp"):
        with pytest.raises(TypeError, match=f"no longer takes '{name}'.*TrainingPolicy\\({name}="):
            DynamicBootstrapMixUp(**{name: 1})
    for name in ("strong_alpha", "light_noise_rate", "settle", "fitted_share", "rewind", "prediction_floor"):
        with pytest.raises(TypeError, match=f"no longer takes '{name}'.*cost nothing on the policy's validation cells"):
            DynamicBootstrapMixUp(**{name: 1})
    for name in ("tracking_every", "channels_last", "keep_pass_inputs", "pass_from_batches"):
        with pytest.raises(TypeError, match=f"no longer takes '{name}'.*speed setting"):
            DynamicBootstrapMixUp(**{name: 1})
    for name in ("target_momentum", "unmixed_until_memorising", "fresh_targets", "memorising_gain"):
        with pytest.raises(TypeError, match=f"no longer takes '{name}'"):
            DynamicBootstrapMixUp(**{name: True})
    assert len(REMOVED) == 17
    with pytest.raises(TypeError, match="unexpected arguments \\['colour'\\]"):
        DynamicBootstrapMixUp(colour=1)
    policy = TrainingPolicy(memorisation_threshold=0.1, warmup=2)
    cb = DynamicBootstrapMixUp(policy=policy)
    assert cb.policy is policy and cb.warmup == 2
    with pytest.raises(ValueError, match="give alpha and warmup to the TrainingPolicy"):
        DynamicBootstrapMixUp(policy=policy, alpha=1.0)
    with pytest.raises(ValueError, match="policy is lnc mode's"):
        DynamicBootstrapMixUp(mode="paper", policy=policy)
    with pytest.raises(TypeError, match="policy must be a lnc_fastai.TrainingPolicy"):
        DynamicBootstrapMixUp(policy={"memorisation_threshold": 0.1})


# ---- batches read by index ------------------------------------------------------------------
def test_epoch_indices_are_the_order_fastai_drew_the_samples_in():
    dl = DataLoader(list(range(50)), bs=8, shuffle=True, drop_last=True)
    for _ in range(2):
        for i, batch in enumerate(dl):
            assert batch.tolist() == epoch_indices(dl)[i * 8 : (i + 1) * 8].tolist()
    assert epoch_indices(torch.utils.data.DataLoader(list(range(5)))) is None


def indexed_learner(cb, bs=32, noise=0.3):
    """Features whose last column is the sample's index, so a test can see which samples a batch holds."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VALID, N_FEATURES, generator=generator)
    x[:, -1] = torch.arange(N_TRAIN + N_VALID).float()
    truth = x[:, :N_CLASSES].argmax(dim=1)
    noisy = truth.clone()
    flip = torch.rand(N_TRAIN + N_VALID, generator=generator) < noise
    flip[N_TRAIN:] = False
    noisy[flip] = (truth[flip] + 1) % N_CLASSES
    splits = [list(range(N_TRAIN)), list(range(N_TRAIN, N_TRAIN + N_VALID))]
    datasets = Datasets(range(N_TRAIN + N_VALID), tfms=[[lambda i: x[i]], [lambda i: TensorCategory(noisy[i])]], splits=splits)
    dls = datasets.dataloaders(bs=bs, val_bs=N_VALID // 2, drop_last=True)  # two whole validation batches
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(N_FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, N_CLASSES))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=cb)




class Scripted(TrainingPolicy):
    """lnc mode's policy with its epoch plans given (``plans``: from each epoch on, the fields of
    :class:`lnc_fastai.EpochPlan` that hold), whatever the passes say."""

    def __init__(self, plans, **constants):
        super().__init__(**{"warmup": 0, **constants})
        self.plans = plans

    def _epoch_plan(self, epoch):
        given = {}
        for start, fields in sorted(self.plans.items()):
            if epoch >= start:
                given.update(fields)
        return dataclasses.replace(super()._epoch_plan(epoch), **given)


def scripted(plans):
    """The default callback over a :class:`Scripted` policy, passing every epoch."""
    cb = DynamicBootstrapMixUp(policy=Scripted(plans))
    cb.tracking_every = 1
    return cb


def bootstrap_from_epoch_one(fresh_targets=False, scale=0.5):
    return scripted({1: {"phase": "bootstrapping", "bootstrap_scale": scale, "fresh_targets": fresh_targets}})


class SeeBatches(Callback):
    """Before the callback: the batch's sample indices; after it: what it decided."""

    order = 0

    def __init__(self, cb):
        self.cb, self.seen, self.forwards = cb, [], 0

    def before_batch(self):
        if self.training:
            self.indices = self.xb[0][:, -1].long().clone()

    def after_pred(self):
        if self.training and self.cb._batch is not None and self.cb._batch.weights is not None:
            self.seen.append((self.indices, self.cb._batch.weights.clone(), self.cb._batch.targets.clone()))


def fit_quietly(learn, epochs, one_cycle=False):
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        (learn.fit_one_cycle if one_cycle else learn.fit)(epochs, 1e-2)


def test_batches_read_weights_and_targets_by_index_without_an_extra_forward():
    cb = bootstrap_from_epoch_one()
    learn = indexed_learner(cb)
    seen = SeeBatches(cb)
    learn.add_cb(seen)
    forwards = []
    learn.model.register_forward_hook(lambda module, inputs, output: forwards.append(module.training))
    fit_quietly(learn, 2)
    assert len(seen.seen) == len(learn.dls.train)  # the second epoch bootstrapped every batch
    # the second epoch's batches read the first epoch's pass (the state the first pass left)
    first_p, first_targets = cb.trace_first_p, cb.trace_first_targets
    for indices, weights, targets in seen.seen:
        expected = np.clip(np.nan_to_num(first_p[indices.numpy()], nan=WEIGHT_CLIP[1]), *WEIGHT_CLIP) * 0.5
        assert np.allclose(weights.numpy(), expected, atol=1e-6)
        assert torch.equal(targets.argmax(1), torch.as_tensor(first_targets[indices.numpy()].argmax(1)))
        assert torch.all(targets.sum(1) == 1)  # hard targets: one-hot of the running average's argmax
    # forwards: training batches in train mode, and per epoch the pass and validation (eval
    # mode); no forward of the un-mixed batch
    assert sum(forwards) == 2 * len(learn.dls.train)
    tracking = -(-N_TRAIN // tracking_batch_size(learn.dls.train, next(learn.model.parameters()).device))
    assert len(forwards) - sum(forwards) == 2 * tracking + 2 * len(learn.dls.valid)
    assert list(cb.history.phase) == ["mixup", "bootstrapping"]
    assert all(isinstance(reason, str) and reason.startswith(f"epoch {e}:") for e, reason in enumerate(cb.history.reason))


def test_once_called_the_targets_come_from_a_forward_of_each_batch():
    cb = bootstrap_from_epoch_one(fresh_targets=True, scale=1.0)
    learn = indexed_learner(cb)
    seen = SeeBatches(cb)
    learn.add_cb(seen)
    unmixed = []  # eval-mode forwards with gradients off inside training batches

    def hook(module, inputs, output):
        if learn.training and not module.training and not torch.is_inference_mode_enabled():
            unmixed.append((inputs[0][:, -1].long().clone(), output.detach().clone()))

    learn.model.register_forward_hook(hook)
    fit_quietly(learn, 2)
    assert len(seen.seen) == len(learn.dls.train)
    first_p = cb.trace_first_p
    for indices, weights, _ in seen.seen:  # the weights are the pass's p(noisy) either way
        p = np.clip(np.nan_to_num(first_p[indices.numpy()], nan=WEIGHT_CLIP[1]), *WEIGHT_CLIP)
        assert np.allclose(weights.numpy(), p, atol=1e-6)
    # one forward per batch, of the batch's own samples before mixing; the targets its one-hot argmax
    assert len(unmixed) == len(seen.seen)
    for (indices, _, targets), (forward_indices, logits) in zip(seen.seen, unmixed):
        assert torch.equal(forward_indices, indices)
        assert torch.equal(targets, F.one_hot(logits.argmax(1), N_CLASSES).float())
    assert list(cb.history["fresh_targets"]) == [False, True]


def test_once_called_the_batches_forwards_make_the_epochs_pass():
    cb = bootstrap_from_epoch_one(fresh_targets=True, scale=1.0)
    learn = indexed_learner(cb)
    forwards, direct = [], {}  # eval-mode forwards within training batches; whole passes made here

    class WholePass(Callback):
        """After the callback's pass: one made here over every training sample, for comparison."""

        order, busy = cb.order + 1, False

        def after_train(self):
            self.busy = True
            direct[self.epoch] = per_sample_losses(self.learn)[0]
            self.busy = False

    whole = WholePass()

    def hook(module, inputs, output):
        if learn.training and not module.training and not whole.busy:
            kind = "pass" if torch.is_inference_mode_enabled() else "batch"
            forwards.append((learn.epoch, kind, inputs[0][:, -1].long().clone(), output.detach().float().clone()))

    learn.model.register_forward_hook(hook)
    learn.add_cb(whole)
    losses_after = {}
    learn.add_cb(type("Keep", (Callback,), {"order": whole.order + 1,
                                           "after_train": lambda self: losses_after.update({self.epoch: cb.losses_.copy()})})())
    fit_quietly(learn, 4)
    assert list(cb.history["fresh_targets"]) == [False, True, True, True]
    # the last epoch's pass is a whole one, as is any pass without a forward per batch
    assert list(cb.history["pass_from_batches"]) == [False, True, True, False]
    n_batches, bs = len(learn.dls.train), learn.dls.train.bs
    unseen = N_TRAIN - n_batches * bs  # drop_last leaves these out of every epoch
    for epoch in range(4):
        passes = [f for f in forwards if f[0] == epoch and f[1] == "pass"]
        batches = [f for f in forwards if f[0] == epoch and f[1] == "batch"]
        assert len(batches) == (0 if epoch == 0 else n_batches)
        if epoch in (1, 2):  # the pass ran the model over the samples no batch held, and no others
            assert len(passes) == 1 and passes[0][2].numel() == unseen
            losses = losses_after[epoch]
            for _, _, idx, logits in batches:
                expected = F.cross_entropy(logits, torch.as_tensor(cb.labels_[idx.numpy()]), reduction="none")
                assert np.allclose(losses[idx.numpy()], expected.numpy(), atol=1e-5)
            rest = passes[0][2].numpy()
            assert np.allclose(losses[rest], direct[epoch][rest], atol=1e-5)
            seen = np.setdiff1d(np.arange(N_TRAIN), rest)
            assert not np.allclose(losses[seen], direct[epoch][seen], atol=1e-4)  # taken before each step
        else:
            assert sum(f[2].numel() for f in passes) == N_TRAIN
            assert np.allclose(losses_after[epoch], direct[epoch], atol=1e-5)


class SeeMixing(Callback):
    """Keeps each training batch's un-mixed inputs (before the callback) and checks, after the loss,
    that the mixing and the loss are fastai MixUp's: one lam per sample, the larger share its own."""

    order = 0

    def __init__(self, cb):
        self.cb, self.checked = cb, 0

    def before_batch(self):
        if self.training:
            self.x, self.y = self.xb[0].clone(), self.yb[0].clone()

    def after_loss(self):
        if not self.training:
            return
        batch = self.cb._batch
        lam, partner = batch.input_lam, batch.partner
        assert torch.is_tensor(lam) and lam.shape == (self.x.shape[0],) and torch.all(lam >= 0.5)
        assert torch.equal(batch.loss_lam, lam)
        assert len(torch.unique(lam)) > 1  # a draw per sample, not per batch
        torch.testing.assert_close(self.learn.xb[0], lam[:, None] * self.x + (1 - lam[:, None]) * self.x[partner])
        self.checked += 1
        if batch.weights is not None:
            return
        log_probs = torch.log_softmax(self.learn.pred.detach(), dim=1)
        y = self.y.as_subclass(torch.Tensor)
        expected = torch.lerp(
            torch.nn.functional.nll_loss(log_probs, y[partner], reduction="none"),
            torch.nn.functional.nll_loss(log_probs, y, reduction="none"),
            lam,
        ).mean()
        torch.testing.assert_close(self.learn.loss.detach(), expected)  # no bootstrapping: MixUp's loss


@pytest.mark.parametrize("noise", [0.0, 0.4])
def test_lnc_mode_mixes_every_batch_as_fastai_mixup_does(noise):
    cb = DynamicBootstrapMixUp()
    learn = indexed_learner(cb, noise=noise)
    seen = SeeMixing(cb)
    learn.add_cb(seen)
    fit_quietly(learn, 5, one_cycle=True)
    assert seen.checked == 5 * len(learn.dls.train)  # never unmixed
    assert (cb.history.alpha == 0.4).all()


def test_without_sample_indices_the_weights_come_from_each_batchs_forward(monkeypatch):
    """Where the batches' sample indices are unknown (a DataLoader without them), each batch's
    weights are p(noisy) of its own forward's losses, read from the posterior table."""
    import lnc_fastai.batch_reading

    monkeypatch.setattr(lnc_fastai.batch_reading, "epoch_indices", lambda dl: None)
    cb = bootstrap_from_epoch_one(scale=0.5)
    spied = []
    original = cb.noise_weights_and_targets

    def spy(xb, labels):
        weights, targets = original(xb, labels)
        losses = F.cross_entropy(cb.unmixed_logits(xb), plain(labels), reduction="none")
        spied.append((weights.clone(), cb.table(losses).clamp(*WEIGHT_CLIP)))
        return weights, targets

    cb.noise_weights_and_targets = spy
    seen = SeeBatches(cb)
    learn = indexed_learner(cb)
    learn.add_cb(seen)
    fit_quietly(learn, 2)
    assert cb._use_indices is False and len(spied) == len(seen.seen) == len(learn.dls.train)
    for (weights, expected), (_, used, _) in zip(spied, seen.seen):
        torch.testing.assert_close(weights, expected)
        torch.testing.assert_close(used, expected * 0.5)


@pytest.fixture(autouse=True)
def keep_first_pass(monkeypatch):
    """Keep what the first epoch's pass left (p(noisy), running-average targets) on the callback."""
    original = DynamicBootstrapMixUp._track_and_refit

    def tracked(self):
        result = original(self)
        if self.epoch == 0:
            self.trace_first_p, self.trace_first_targets = self.p_noisy_.copy(), self.target_average_.copy()
        return result

    monkeypatch.setattr(DynamicBootstrapMixUp, "_track_and_refit", tracked)


def test_labels_that_do_not_match_their_indices_stop_the_index_path():
    cb = bootstrap_from_epoch_one()
    learn = indexed_learner(cb)

    class Corrupt(Callback):
        order = cb.order - 1

        def before_batch(self):
            if self.training and self.epoch == 1 and self.iter == 0:
                arrays = cb.correction.device_arrays(cb.epoch_plan_, torch.device("cpu"))
                arrays["labels"] = (arrays["labels"] + 1) % N_CLASSES

    learn.add_cb(Corrupt())
    with learn.no_bar(), learn.no_logging(), pytest.warns(RuntimeWarning, match="labels differ"):
        learn.fit(2, 1e-2)
    assert cb._use_indices is False


@pytest.mark.parametrize("noise", [0.0, 0.4])
def test_bootstrapping_only_after_a_call_the_history_gives(noise):
    cb = DynamicBootstrapMixUp(warmup=0)
    cb.tracking_every = 1
    learn = indexed_learner(cb, noise=noise)
    fit_quietly(learn, 6, one_cycle=True)
    history = cb.history
    for column in ("noise_regime", "memorisation", "memorising", "bootstrap_scale", "collapse_guard", "classes_predicted",
                   "phase", "reason", "valid_fit", "still_learning", "label_fit"):
        assert column in history
    called = history.index[history.memorising]
    for row in history.itertuples():
        assert (row.bootstrap_scale > 0) <= (row.phase == "bootstrapping")
        assert (row.phase == "bootstrapping") == (len(called) > 0 and row.Index > called[0])
    if len(called):
        assert "bootstrapping from epoch" in history.reason[called[0]] and history.noise_regime[called[0]] == "heavy"


def test_validation_accuracy_is_counted_each_epoch_and_read_by_the_policy_after_validation():
    cb = DynamicBootstrapMixUp(warmup=0)
    cb.tracking_every = 1
    learn = indexed_learner(cb, noise=0.0)
    told = []
    original = cb.policy.update
    cb.policy.update = lambda epoch, stats, valid_history=(): told.append((epoch, list(valid_history))) or original(
        epoch, stats, valid_history)
    fit_quietly(learn, 3)
    # one value per epoch: the share of the validation samples predicted as their label
    assert len(cb.valid_fits_) == 3
    preds, targets = learn.get_preds()
    assert cb.valid_fits_[-1] == pytest.approx(float((preds.argmax(1) == targets).float().mean()))
    # the policy's update after each epoch's pass reads that epoch's validation too
    assert [(epoch, len(history)) for epoch, history in told] == [(0, 1), (1, 2), (2, 3)]
    learn.validate()  # outside a fit: not counted
    assert len(cb.valid_fits_) == 3
    assert {"valid_fit", "still_learning"} <= set(cb.history.columns)


def test_checkpoints_keep_lnc_modes_memory(tmp_path):
    from lnc_fastai import load_checkpoint, save_checkpoint

    cb = bootstrap_from_epoch_one()
    learn = indexed_learner(cb)
    learn.path = tmp_path
    fit_quietly(learn, 2)
    save_checkpoint(learn, "early")  # before the call
    cb.policy.memorising_since, cb.policy.regime = 1, "heavy"
    save_checkpoint(learn, "run")
    restored = DynamicBootstrapMixUp()
    learn2 = indexed_learner(restored)
    learn2.path = tmp_path
    load_checkpoint(learn2, "run")
    assert np.array_equal(restored.target_average_, cb.target_average_)
    assert (restored.policy.memorising_since, restored.policy.regime) == (1, "heavy")
    assert np.array_equal(restored.policy.previous_flags, cb.policy.previous_flags)
    load_checkpoint(learn2, "early")  # back to before the call: unset again
    assert restored.policy.memorising_since is None
    plan = restored.correction.epoch_plan(1)
    assert restored.correction.device_arrays(plan, torch.device("cpu"))["weights"].shape == (N_TRAIN,)


def test_an_earlier_versions_checkpoint_loads_its_memory_into_the_policy():
    """A state as the version before the policy object wrote it: lnc_state by the callback's own
    attribute names (some of mechanisms now gone), the flags as the callback's arrays."""
    import json

    cb = bootstrap_from_epoch_one()
    learn = indexed_learner(cb)
    fit_quietly(learn, 2)
    arrays = cb.state_dict()
    meta = json.loads(str(arrays["meta"]))
    meta.pop("policy")
    meta["lnc_state"] = {"noise_regime_": "heavy", "memorising_since_": 3, "bootstrap_since_": 3, "fitted_since_": None,
                         "collapse_guard_": 0.7, "valid_fits_": [0.4, 0.5], "alpha_": 32.0, "light_rate_": 0.0,
                         "rewound_to_": 2}
    arrays["meta"] = np.array(json.dumps(meta))
    arrays["_previous_flags"] = arrays.pop("policy_previous_flags")
    restored = DynamicBootstrapMixUp()
    restored.load_state_dict(arrays)
    assert (restored.policy.regime, restored.policy.memorising_since, restored.policy.collapse_guard) == ("heavy", 3, 0.7)
    assert restored.valid_fits_ == [0.4, 0.5] and restored.policy.previous_flags.dtype == bool


def test_benchmark_results_keep_the_memorisation_signal_per_epoch():
    import pandas as pd
    from lnc_experiments.results import callback_history

    records = [{"epoch": e, "noise_fraction": 0.5, "noise_rate": 0.5, "bootstrap_scale": 0.0, "alpha": 0.4,
                "unmixed": True, "label_fit": 0.2, "memorisation": m, "rewound_to": float("nan")}
               for e, m in enumerate([float("nan"), -0.01, 0.08])]

    class Recorded:
        epoch_records = records
        history = pd.DataFrame(records)

    numbers = callback_history(Recorded())
    assert numbers["memorisation_per_epoch"][1:] == [-0.01, 0.08] and np.isnan(numbers["memorisation_per_epoch"][0])
