"""lnc's own training mode, ``DynamicBootstrapMixUp()``: its maths, its presets, and that each
batch reads its weights and targets from the per-epoch pass by sample index, with no extra forward."""

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

from lnc_fastai import DynamicBootstrapMixUp
from lnc_fastai.adaptive import (
    class_prior,
    collapse_guard,
    effective_classes,
    label_fit,
    memorisation,
    noise_regime,
    prediction_floor,
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


def test_prediction_floor_raises_confident_disagreement_only():
    weights = np.array([0.2, 0.2, 0.9, 0.5, 0.3], dtype=np.float32)
    predictions = np.array([1, 0, 2, 1, 2])
    labels = np.array([0, 0, 1, 1, 0])
    confidence = np.array([0.8, 0.99, 0.6, 0.97, np.nan], dtype=np.float32)
    floored = prediction_floor(weights, predictions, labels, confidence)
    # another class than the label: at least its confidence (never lowered); the label itself, or
    # no finite confidence: the weight as it is
    assert floored.tolist() == pytest.approx([0.8, 0.2, 0.9, 0.5, 0.3])
    assert floored.dtype == np.float32
    with pytest.raises(ValueError, match="one value per sample"):
        prediction_floor(weights, predictions[:3], labels, confidence)


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
    m_dyr_h = DynamicBootstrapMixUp.preset("m-dyr-h")
    assert (m_dyr_h.mode, m_dyr_h.bootstrap, m_dyr_h.alpha, m_dyr_h.warmup) == ("paper", "hard", 32.0, 0.35)
    assert DynamicBootstrapMixUp.preset("m-dyr-s").bootstrap == "soft"
    sh = DynamicBootstrapMixUp.preset("md-dyr-sh", warmup=3)
    assert (sh.bootstrap, sh.detector_mixing, sh.warmup) == ("soft-to-hard", True, 3)
    with pytest.raises(ValueError, match="preset must be one of"):
        DynamicBootstrapMixUp.preset("m-dyr-x")
    with pytest.raises(ValueError, match="MD-DYR-SH"):
        DynamicBootstrapMixUp(detector_mixing=True)
    for bad in ({"mode": "fast"}, {"strong_alpha": 0}, {"memorisation_threshold": 0}, {"target_momentum": 1.0},
                {"tracking_every": 0}, {"ramp": -1}, {"settle": -2}):
        with pytest.raises(ValueError):
            DynamicBootstrapMixUp(**bad)


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


class BootstrapFromEpochOne(DynamicBootstrapMixUp):
    """lnc's mode with bootstrapping forced on from the second epoch, whatever the detector says."""

    def _set_lnc_epoch(self):
        super()._set_lnc_epoch()
        if self.epoch >= 1:
            self.bootstrap_scale_ = 0.5


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


def test_batches_read_weights_and_targets_by_index_without_an_extra_forward():
    cb = BootstrapFromEpochOne(warmup=0)
    learn = indexed_learner(cb)
    seen = SeeBatches(cb)
    learn.add_cb(seen)
    forwards = []
    learn.model.register_forward_hook(lambda module, inputs, output: forwards.append(module.training))
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(2, 1e-2)
    assert len(seen.seen) == len(learn.dls.train)  # the second epoch bootstrapped every batch
    # the second epoch's batches read the first epoch's pass (the state the first pass left)
    first_p, first_targets = cb.trace_first_p, cb.trace_first_targets
    for indices, weights, targets in seen.seen:
        expected = np.clip(np.nan_to_num(first_p[indices.numpy()], nan=WEIGHT_CLIP[1]), *WEIGHT_CLIP) * 0.5
        assert np.allclose(weights.numpy(), expected, atol=1e-6)
        assert torch.equal(targets.argmax(1), torch.as_tensor(first_targets[indices.numpy()].argmax(1)))
        assert torch.all(targets.sum(1) == 1)  # hard targets: one-hot of the running average's argmax
    # forwards: training batches in train mode, and per epoch the tracking pass and validation
    # (eval mode); no forward of the un-mixed batch
    assert sum(forwards) == 2 * len(learn.dls.train)
    tracking = -(-N_TRAIN // tracking_batch_size(learn.dls.train, next(learn.model.parameters()).device))
    assert len(forwards) - sum(forwards) == 2 * tracking + 2 * len(learn.dls.valid)


class MemorisingFromEpochOne(DynamicBootstrapMixUp):
    """lnc's mode as if the network had been seen to memorise under heavy noise after epoch 0."""

    def _set_lnc_epoch(self):
        if self.epoch >= 1 and self.memorising_since_ is None:
            self.memorising_since_ = 1
        super()._set_lnc_epoch()


@pytest.mark.parametrize("fresh_targets,floor", [("heavy", True), (False, True), ("heavy", False)])
def test_once_memorising_the_targets_come_from_a_forward_of_each_batch(fresh_targets, floor):
    gain = 1.0 if floor else 1.5  # (with the gain, this toy's p(noisy) is above every floor)
    cb = MemorisingFromEpochOne(warmup=0, fresh_targets=fresh_targets, memorising_gain=gain, prediction_floor=floor)
    learn = indexed_learner(cb)
    seen = SeeBatches(cb)
    learn.add_cb(seen)
    unmixed = []  # eval-mode forwards with gradients off inside training batches

    def hook(module, inputs, output):
        if learn.training and not module.training and not torch.is_inference_mode_enabled():
            unmixed.append((inputs[0][:, -1].long().clone(), output.detach().clone()))

    learn.model.register_forward_hook(hook)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(2, 1e-2)
    assert len(seen.seen) == len(learn.dls.train)  # the second epoch bootstrapped every batch
    scale = cb.history["bootstrap_scale"].iloc[1]
    assert scale > 0
    first_p, first_targets = cb.trace_first_p, cb.trace_first_targets
    raised = 0
    for indices, weights, _ in seen.seen:  # the weights are the pass's p(noisy) either way, times the gain
        i = indices.numpy()
        p = np.clip(np.nan_to_num(first_p[i], nan=WEIGHT_CLIP[1]), *WEIGHT_CLIP)
        expected = np.minimum(p * gain, WEIGHT_CLIP[1])
        if floor:  # and at least the pass's confidence where it predicts another class than the label
            other = cb.trace_first_predictions[i] != cb.labels_[i]
            floored = np.minimum(np.maximum(expected, np.where(other, cb.trace_first_confidence[i], 0)), WEIGHT_CLIP[1])
            raised += int(np.count_nonzero(floored > expected + 1e-6))
            expected = floored
        assert np.allclose(weights.numpy(), expected * scale, atol=1e-6)
    assert (raised > 0) == floor  # the floor lifted some weights here
    if fresh_targets:
        # one forward per batch, of the batch's own samples before mixing; the targets its one-hot argmax
        assert len(unmixed) == len(seen.seen)
        for (indices, _, targets), (forward_indices, logits) in zip(seen.seen, unmixed):
            assert torch.equal(forward_indices, indices)
            assert torch.equal(targets, F.one_hot(logits.argmax(1), N_CLASSES).float())
    else:
        assert unmixed == []
        for indices, _, targets in seen.seen:
            assert torch.equal(targets.argmax(1), torch.as_tensor(first_targets[indices.numpy()].argmax(1)))
    assert list(cb.history["fresh_targets"]) == [False, bool(fresh_targets)]


def test_once_memorising_the_batches_forwards_make_the_epochs_pass():
    cb = MemorisingFromEpochOne(warmup=0)
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
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(4, 1e-2)
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


def test_pass_from_batches_false_makes_the_whole_pass_every_epoch():
    cb = MemorisingFromEpochOne(warmup=0, pass_from_batches=False)
    learn = indexed_learner(cb)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(3, 1e-2)
    assert list(cb.history["fresh_targets"]) == [False, True, True]
    assert not cb.history["pass_from_batches"].any()
    with pytest.raises(ValueError, match="pass_from_batches"):
        DynamicBootstrapMixUp(pass_from_batches="yes")


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
        assert torch.equal(batch.loss_lam, lam) and batch.weights is None  # no noise found: plain mixup
        assert len(torch.unique(lam)) > 1  # a draw per sample, not per batch
        torch.testing.assert_close(self.learn.xb[0], lam[:, None] * self.x + (1 - lam[:, None]) * self.x[partner])
        log_probs = torch.log_softmax(self.learn.pred.detach(), dim=1)
        y = self.y.as_subclass(torch.Tensor)
        expected = torch.lerp(
            torch.nn.functional.nll_loss(log_probs, y[partner], reduction="none"),
            torch.nn.functional.nll_loss(log_probs, y, reduction="none"),
            lam,
        ).mean()
        torch.testing.assert_close(self.learn.loss.detach(), expected)
        self.checked += 1


def test_without_noise_lnc_mode_mixes_as_fastai_mixup_does():
    # a network this small reads as heavy noise after one epoch, and by default would train unmixed
    cb = DynamicBootstrapMixUp(settle=0, unmixed_until_memorising=False, fitted_share=None)
    learn = indexed_learner(cb, noise=0.0)
    seen = SeeMixing(cb)
    learn.add_cb(seen)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(2, 1e-2)
    assert seen.checked == 2 * len(learn.dls.train)
    assert (cb.history.bootstrap_scale == 0).all() and (cb.history.alpha == 0.4).all()


class SeeSettling(SeeMixing):
    """Notes, per training batch, whether it trained unmixed with the given labels' cross-entropy
    (the inputs as they came, the loss plain cross-entropy) or mixed."""

    def __init__(self):
        self.unmixed, self.mixed = [], []

    def after_loss(self):
        if not self.training:
            return
        if torch.equal(self.learn.xb[0], self.x):
            expected = torch.nn.functional.cross_entropy(self.learn.pred.detach(), self.y.as_subclass(torch.Tensor))
            torch.testing.assert_close(self.learn.loss.detach(), expected)
            self.unmixed.append(self.epoch)
        else:
            self.mixed.append(self.epoch)


class StartsBootstrappingAtEpochOne(DynamicBootstrapMixUp):
    """lnc's mode told that bootstrapping started at the second epoch (its weights stay the detector's)."""

    def _set_lnc_epoch(self):
        if self.epoch >= 1 and self.bootstrap_since_ is None:
            self.bootstrap_since_ = 1
        super()._set_lnc_epoch()


def assert_unmixed_epochs(cb, epochs, unmixed, **data):
    """Train ``cb`` for ``epochs`` one-cycle epochs and check that every batch of the epochs in
    ``unmixed``, and only those, trained unmixed on the given labels."""
    learn = indexed_learner(cb, **data)
    n = len(learn.dls.train)
    seen = SeeSettling()
    learn.add_cb(seen)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit_one_cycle(epochs, 1e-2)
    assert seen.unmixed == [e for e in unmixed for _ in range(n)]
    assert seen.mixed == [e for e in range(epochs) if e not in unmixed for _ in range(n)]


def test_a_run_that_does_not_bootstrap_ends_without_mixup_and_one_that_does_keeps_it():
    # light mixup before settling (this small network reads as heavy noise, and may fit its labels)
    never = {"light_noise_rate": 1.0, "memorisation_threshold": 1.0, "tracking_every": 1, "settle": 2,
             "unmixed_until_memorising": False, "fitted_share": None}
    for cb, unmixed in ((DynamicBootstrapMixUp(**never), [3, 4]), (StartsBootstrappingAtEpochOne(**never), [])):
        assert_unmixed_epochs(cb, 5, unmixed, noise=0.0)
        assert list(cb.history.settling) == [e in unmixed for e in cb.history.epoch]
    with pytest.raises(ValueError, match="settle must be"):
        DynamicBootstrapMixUp(settle=1.5)


class HeavyFromEpochOne(DynamicBootstrapMixUp):
    """lnc's mode told that the detector sees heavy noise from the second epoch on (and, with
    ``memorising_at``, that the network memorises from that epoch)."""

    def __init__(self, memorising_at=None, **kwargs):
        super().__init__(**kwargs)
        self.memorising_at = memorising_at

    def _set_lnc_epoch(self):
        if self.epoch >= 1:
            self.noise_regime_ = "heavy"
        if self.memorising_at is not None and self.epoch >= self.memorising_at and self.memorising_since_ is None:
            self.memorising_since_ = self.memorising_at
        super()._set_lnc_epoch()


def test_unmixed_until_memorising_trains_heavy_noise_on_the_given_labels_until_the_network_memorises():
    never = {"light_noise_rate": 1.0, "memorisation_threshold": 1.0, "tracking_every": 1, "settle": 0}
    cases = (
        (HeavyFromEpochOne(unmixed_until_memorising=False, **never), []),  # light mixup until memorisation
        (HeavyFromEpochOne(**never), [1, 2, 3]),  # the default: the given labels, no mixup
        # memorising: strong mixup and bootstrapping
        (HeavyFromEpochOne(memorising_at=2, **never), [1]),
    )
    for cb, unmixed in cases:
        assert_unmixed_epochs(cb, 4, unmixed)
        assert list(cb.history.unmixed) == [e in unmixed for e in cb.history.epoch]
        assert not cb.history.settling.any()
    assert list(cb.history.bootstrap_scale > 0) == [False, False, True, True]


class ToldRegime(DynamicBootstrapMixUp):
    """lnc's mode told, at every pass, that the detector counts no wrong labels (``heavy=False``)
    or that the network disbelieves most labels (``heavy=True``)."""

    def __init__(self, heavy=False, **kwargs):
        super().__init__(**kwargs)
        self.told = HEAVY if heavy else NONE

    def _update_regime(self, record, count):
        super()._update_regime(record, self.told)


def test_a_network_that_fits_nearly_every_given_label_gets_strong_mixup_and_does_not_settle():
    never = {"light_noise_rate": 1.0, "memorisation_threshold": 1.0, "tracking_every": 1, "settle": 2, "warmup": 1}
    fits = ToldRegime(fitted_share=0.01, **never)  # any network fits 1% of its labels
    assert_unmixed_epochs(fits, 5, [], noise=0.0)
    history = fits.history
    # seen after the first epoch's pass, in force from the warm-up floor (epoch 1) on
    assert fits.fitted_since_ == 1 and history.fitted.all() and not history.settling.any()
    assert list(history.alpha) == [0.4, 32.0, 32.0, 32.0, 32.0]
    np.testing.assert_allclose(history.label_fit.iloc[-1], np.mean(fits.predictions_ == fits.labels_))
    never_fits = ToldRegime(fitted_share=None, **never)  # off: light mixup, then settling
    assert_unmixed_epochs(never_fits, 5, [3, 4], noise=0.0)
    assert not never_fits.history.fitted.any() and (never_fits.history.alpha == 0.4).all()
    later = ToldRegime(fitted_share=0.01, **{**never, "warmup": 2})  # not before the warm-up floor
    assert_unmixed_epochs(later, 5, [], noise=0.0)
    assert later.fitted_since_ == 2 and list(later.history.alpha) == [0.4, 0.4, 32.0, 32.0, 32.0]
    # not once settling (epochs 3 and 4 here): unmixed epochs fit fast, and must stay unmixed
    settling = ToldRegime(fitted_share=0.01, **{**never, "warmup": 4})
    assert_unmixed_epochs(settling, 5, [3, 4], noise=0.0)
    assert settling.fitted_since_ is None and (settling.history.alpha == 0.4).all()
    # not under heavy noise, where the memorisation call decides
    heavy = ToldRegime(heavy=True, fitted_share=0.01, unmixed_until_memorising=False, **{**never, "settle": 0})
    assert_unmixed_epochs(heavy, 4, [])
    assert heavy.fitted_since_ is None and (heavy.history.alpha == 0.4).all()
    for bad in (0, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match="fitted_share"):
            DynamicBootstrapMixUp(fitted_share=bad)


@pytest.fixture(autouse=True)
def keep_first_pass(monkeypatch):
    """Keep what the first epoch's pass left (p(noisy), running-average targets) on the callback."""
    original = DynamicBootstrapMixUp._track_and_refit

    def tracked(self):
        original(self)
        if self.epoch == 0:
            self.trace_first_p, self.trace_first_targets = self.p_noisy_.copy(), self.target_average_.copy()
            self.trace_first_predictions, self.trace_first_confidence = self.predictions_.copy(), self.confidence_.copy()

    monkeypatch.setattr(DynamicBootstrapMixUp, "_track_and_refit", tracked)


class FloorSpy(MemorisingFromEpochOne):
    """Keeps, for each batch whose weights come from its own forward, the weights and that
    forward's confidence and disagreement with the labels."""

    def noise_weights_and_targets(self, xb, labels, floor=False):
        weights, targets = super().noise_weights_and_targets(xb, labels, floor=floor)
        confidence, predictions = self.unmixed_logits(xb).softmax(1).max(1)
        self.spied.append((floor, weights.clone(), confidence, predictions != plain(labels)))
        return weights, targets


@pytest.mark.parametrize("floor", [True, False])
def test_the_prediction_floor_without_sample_indices_comes_from_the_batch_forward(monkeypatch, floor):
    """Where the batches' sample indices are unknown (a DataLoader without them), the floor reads
    each batch's own forward."""
    import lnc_fastai.callback

    monkeypatch.setattr(lnc_fastai.callback, "epoch_indices", lambda dl: None)
    cb = FloorSpy(warmup=0, prediction_floor=floor)
    cb.spied = []
    learn = indexed_learner(cb)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(2, 1e-2)
    assert cb._use_indices is False and cb.spied
    assert all(f == floor for f, *_ in cb.spied)  # asked for once memorising, as the index path does
    raised = False
    for _, weights, confidence, other in cb.spied:
        bound = torch.clamp(confidence[other], max=WEIGHT_CLIP[1])
        if floor:
            assert torch.all(weights[other] >= bound - 1e-6)
        raised |= bool((weights[other] < bound - 1e-6).any())
    assert raised != floor  # without the floor some disagreeing samples weigh less than their confidence


def test_labels_that_do_not_match_their_indices_stop_the_index_path():
    cb = BootstrapFromEpochOne(warmup=0)
    learn = indexed_learner(cb)

    class Corrupt(Callback):
        order = 0

        def before_epoch(self):
            if self.epoch == 1:
                cb._device_state(torch.device("cpu"))
                cb._per_sample["labels"] = (cb._per_sample["labels"] + 1) % N_CLASSES

    learn.add_cb(Corrupt())
    with learn.no_bar(), learn.no_logging(), pytest.warns(RuntimeWarning, match="labels differ"):
        learn.fit(2, 1e-2)
    assert cb._use_indices is False


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_bootstrapping_only_where_the_history_says_why(noise):
    cb = DynamicBootstrapMixUp(warmup=0)
    learn = indexed_learner(cb, noise=noise)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit_one_cycle(4, 1e-2)
    history = cb.history
    for column in ("noise_regime", "memorisation", "memorising", "bootstrap_scale", "collapse_guard", "classes_predicted"):
        assert column in history
    # bootstrapping only ever where the detector counted noise among believed labels, or memorisation
    for row in history.itertuples():
        if row.bootstrap_scale > 0:
            assert row.Index > 0
            previous = history.iloc[row.Index - 1]
            assert previous.noise_regime == "light" or previous.memorising


def test_validation_accuracy_is_counted_each_epoch_and_vetoes_a_memorisation_call():
    cb = DynamicBootstrapMixUp(warmup=0, tracking_every=1)
    learn = indexed_learner(cb, noise=0.0)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(3, 1e-2)
    # one value per epoch: the share of the validation samples predicted as their label
    assert len(cb.valid_fits_) == 3
    preds, targets = learn.get_preds()
    assert cb.valid_fits_[-1] == pytest.approx(float((preds.argmax(1) == targets).float().mean()))
    learn.validate()  # outside a fit: not counted
    assert len(cb.valid_fits_) == 3
    history = cb.history
    assert {"valid_fit", "still_learning"} <= set(history.columns)
    # heavy noise, a memorisation signal far above the threshold, but a rising validation accuracy:
    # the network is learning, and the call is not made
    cb.valid_fits_, cb.memorising_since_, cb._previous_flags_epoch = [0.3, 0.4, 0.5], None, 1
    cb._previous_flags = np.ones(N_TRAIN, dtype=bool)
    cb._previous_predictions = np.ones(N_TRAIN, int)  # all moved to their label: 1 - 1/(k-1) beyond chance
    cb.noise_flags_ = np.ones(N_TRAIN, dtype=bool)
    cb.predictions_, cb.labels_ = np.zeros(N_TRAIN, int), np.zeros(N_TRAIN, int)
    record = {}
    cb._update_regime(record, HEAVY)
    k = cb.target_average_.shape[1]
    assert record["memorisation"] == pytest.approx(1 - 1 / (k - 1)) and record["still_learning"] and cb.memorising_since_ is None
    cb.valid_fits_ = [0.3, 0.5, 0.45, 0.44, 0.43]  # stalled: now it is memorising
    cb._previous_flags = np.ones(N_TRAIN, dtype=bool)
    cb._previous_predictions = np.ones(N_TRAIN, int)
    cb._update_regime(record, HEAVY)
    assert not record["still_learning"] and cb.memorising_since_ == cb.epoch + 1


def test_under_light_noise_memorising_the_flagged_labels_opens_bootstrapping_below_the_light_rate():
    cb = DynamicBootstrapMixUp(warmup=0, tracking_every=1, settle=0, fitted_share=None)
    learn = indexed_learner(cb, noise=0.0)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(3, 1e-2)
    light = LIGHT  # under light_noise_rate (0.15)

    def told(valid_fits, before, now=0, count=light):  # the flagged samples' predictions; their labels are 0
        cb.valid_fits_, cb.memorising_since_, cb.bootstrap_since_, cb._previous_flags_epoch = valid_fits, None, None, 1
        cb._previous_flags = np.ones(N_TRAIN, dtype=bool)
        cb._previous_predictions = np.full(N_TRAIN, before)
        cb.predictions_, cb.labels_ = np.full(N_TRAIN, now), np.zeros(N_TRAIN, int)
        record = {}
        learn.epoch = 1  # the pass after epoch 1, against the flags of the pass before
        cb._update_regime(record, count)
        learn.epoch = 2
        cb._set_lnc_epoch()
        return record

    stalled = [0.3, 0.5, 0.45, 0.44, 0.43]
    # every flagged sample moved onto its label: memorising, the validation accuracy stalled
    record = told(stalled, 1)
    assert cb.noise_regime_ == "light" and record["light_memorising"] and cb.light_memorising_
    assert cb.bootstrap_since_ == 2 and cb.memorising_since_ is None and cb.alpha_ == cb.alpha
    # none predicted as its label: not memorising
    record = told(stalled, 1, now=1)
    assert not record["light_memorising"] and cb.bootstrap_since_ is None
    # each moved from one wrong class to the next, landing on its label as often as chance has it
    k = cb.target_average_.shape[1]
    before = np.arange(N_TRAIN) % (k - 1) + 1
    record = told(stalled, before, now=(before + 1) % k)
    assert record["memorisation_share"] > 0.05 and abs(record["memorisation"]) < 0.01
    assert not record["light_memorising"] and cb.bootstrap_since_ is None
    # a validation accuracy that still rises: the network is learning them, not memorising
    record = told([0.3, 0.4, 0.5], 1)
    assert record["still_learning"] and not record["light_memorising"] and cb.bootstrap_since_ is None
    # without a validation set the signal cannot be told from learning: the count alone decides
    record = told([], 1)
    assert not record["still_learning"] and not record["light_memorising"] and cb.bootstrap_since_ is None
    # no wrong labels counted: nothing to bootstrap
    record = told(stalled, 1, count=NONE)
    assert cb.noise_regime_ == "none" and not record["light_memorising"] and cb.bootstrap_since_ is None
    # not when the next epoch settles (the last of these three, with settle=1)
    cb.settle_epochs = 1
    record = told(stalled, 1)
    assert not record["light_memorising"] and cb.bootstrap_since_ is None and cb.settling_
    cb.settle_epochs = 0
    # under heavy noise the same signal makes the memorisation call instead
    record = told(stalled, 1, count=HEAVY)
    assert not record["light_memorising"] and cb.memorising_since_ == 2


def test_checkpoints_keep_lnc_modes_memory(tmp_path):
    from lnc_fastai import load_checkpoint, save_checkpoint

    cb = BootstrapFromEpochOne(warmup=0, tracking_every=1)
    learn = indexed_learner(cb)
    learn.path = tmp_path
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(2, 1e-2)
    save_checkpoint(learn, "early")  # before any switch
    cb.memorising_since_, cb.noise_regime_ = 1, "heavy"  # as a heavy-noise run that started memorising
    cb.fitted_since_ = 2
    save_checkpoint(learn, "run")
    restored = BootstrapFromEpochOne()  # the same callback name: its state file
    learn2 = indexed_learner(restored)
    learn2.path = tmp_path
    load_checkpoint(learn2, "run")
    assert np.array_equal(restored.target_average_, cb.target_average_)
    assert (restored.memorising_since_, restored.noise_regime_, restored.alpha_) == (1, "heavy", cb.alpha_)
    assert restored.fitted_since_ == 2
    load_checkpoint(learn2, "early")  # back to before the switches: they are unset again
    assert restored.memorising_since_ is None and restored.fitted_since_ is None
    assert restored._device_state(torch.device("cpu"))["weights"].shape == (N_TRAIN,)


# ---- heavy noise: the memorisation call rewinds to the wait's best weights ---------------------
def test_host_copy_copies_every_tensor_and_to_device_moves_them_back():
    from fastai.torch_core import to_device

    from lnc_fastai.rewind import host_copy

    weight = torch.ones(3)
    state = {"model": {"w": weight}, "opt": [{"avg": torch.zeros(2), "step": 4}], "hypers": ({"lr": 0.1},)}
    copied = host_copy(state)
    weight.add_(1)  # the original moves on (in place, as a training step does)
    assert torch.equal(copied["model"]["w"], torch.ones(3))
    assert copied["opt"][0]["step"] == 4 and copied["hypers"] == ({"lr": 0.1},)
    moved = to_device(copied, torch.device("cpu"))
    assert torch.equal(moved["opt"][0]["avg"], torch.zeros(2))


class HeavyCallAt(DynamicBootstrapMixUp):
    """lnc's mode told at every pass that the network disbelieves most labels, and, at the pass of
    epoch ``call - 1``, that it memorises (the call then starts at epoch ``call``). Keeps, after
    each epoch's validation, the weights and the pass's p(noisy), and, as the call's epoch starts
    training, the weights it starts from."""

    def __init__(self, call=3, **kwargs):
        super().__init__(**kwargs)
        self.call, self.after_epoch_weights, self.after_epoch_p, self.start_weights = call, {}, {}, {}
        self.after_epoch_opt = {}

    def _update_regime(self, record, count):
        super()._update_regime(record, HEAVY)
        if self.epoch == self.call - 1:
            self.memorising_since_ = self.call

    def after_validate(self):
        super().after_validate()
        if self.training is False and getattr(self, "_fitting", False):
            self.after_epoch_weights[self.epoch] = {k: v.clone() for k, v in self.learn.model.state_dict().items()}
            self.after_epoch_p[self.epoch] = self.p_noisy_.copy()
            self.after_epoch_opt[self.epoch] = _opt_tensors(self.learn.opt)

    def before_train(self):
        super().before_train()
        self.start_weights[self.epoch] = {k: v.clone() for k, v in self.learn.model.state_dict().items()}


def _opt_tensors(opt):
    """The optimizer state's tensors, cloned, in parameter order."""
    return [v.clone() for state in opt.state_dict()["state"] for _, v in sorted(state.items()) if torch.is_tensor(v)]


def _same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("rewind", [True, False])
def test_the_memorisation_call_goes_on_from_the_waits_best_validation_weights(rewind):
    cb = HeavyCallAt(call=4, rewind=rewind, warmup=1, tracking_every=1, settle=0, memorisation_threshold=1.0)
    learn = indexed_learner(cb)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(5, 1e-2)
    # the wait: epochs 1-3 (the warm-up floor is epoch 1; the call is made at the pass of epoch 3,
    # before its validation, so epoch 3 is not a candidate)
    wait = [1, 2]
    best = max(wait, key=lambda e: (cb.valid_fits_[e], -e))  # the first of the highest
    start = cb.start_weights[4]
    if rewind:
        assert cb.rewound_to_ == best
        assert _same_weights(start, cb.after_epoch_weights[best])
        assert cb.history.set_index("epoch").rewound_to.loc[4] == best
        # the call's first epoch read the kept epoch's p(noisy), times the gain
        assert cb._rewind_point is None  # dropped once used
    else:
        assert cb.rewound_to_ is None and np.isnan(cb.history.set_index("epoch").rewound_to.loc[4])
        assert _same_weights(start, cb.after_epoch_weights[3])
    assert not _same_weights(cb.after_epoch_weights[1], cb.after_epoch_weights[2])  # the check can fail


def test_the_rewind_puts_back_the_kept_epochs_p_noisy_and_optimizer_state():
    cb = HeavyCallAt(call=3, warmup=1, tracking_every=1, settle=0, memorisation_threshold=1.0)
    learn = indexed_learner(cb)
    seen = []

    class SeeStart(Callback):
        order = cb.order + 1

        def before_train(self):
            if self.epoch == 3:
                seen.append((cb.p_noisy_.copy(), _opt_tensors(learn.opt)))

    learn.add_cb(SeeStart())
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit(4, 1e-2)
    assert cb.rewound_to_ in (1, 2)
    p_noisy, opt_state = seen[0]
    np.testing.assert_array_equal(p_noisy, cb.after_epoch_p[cb.rewound_to_])
    # Adam's moving averages are those of the kept epoch, not the last one's
    kept, last = cb.after_epoch_opt[cb.rewound_to_], cb.after_epoch_opt[2]
    assert len(opt_state) == len(kept) > 0 and all(torch.equal(a, b) for a, b in zip(opt_state, kept))
    if cb.rewound_to_ != 2:
        assert not all(torch.equal(a, b) for a, b in zip(opt_state, last))


def test_rewind_and_memorising_gain_are_checked():
    for bad in ("yes", 1):
        with pytest.raises(ValueError, match="rewind must be True or False"):
            DynamicBootstrapMixUp(rewind=bad)
        with pytest.raises(ValueError, match="prediction_floor must be True or False"):
            DynamicBootstrapMixUp(prediction_floor=bad)
    for bad in (0.5, float("inf"), True, "2"):
        with pytest.raises(ValueError, match="memorising_gain must be a finite number >= 1"):
            DynamicBootstrapMixUp(memorising_gain=bad)


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
