"""DynamicBootstrapMixUp on a tiny model and dataset (CPU, a second or so per fit)."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastai.basics import (
    CancelFitException,
    CancelTrainException,
    Callback,
    CrossEntropyLossFlat,
    DataLoaders,
    Datasets,
    Learner,
    TensorBase,
    TensorCategory,
    Transform,
    accuracy,
    load_learner,
)
from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner)
from fastai.data.load import DataLoader
from fastai.torch_core import set_seed
from torch import nn

from lnc_fastai import DynamicBootstrapMixUp, PosteriorTable
from lnc_fastai.batches import eval_mode, mix_inputs
from lnc_fastai.schedule import epochs_of as _epochs
from lnc_fastai.tracking import tracking_batch_size
from lnc_fastai.losses import sharpening_temperature
from lnc_sklearn import BetaMixtureNoiseDetector
from lnc_sklearn.noise_count import count_noise

N_TRAIN, N_VALID, N_FEATURES, N_CLASSES = 200, 40, 6, 3


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state (mixup's lam, shuffling), whatever ran before."""
    set_seed(0)


class Features(TensorBase):
    """The inputs' own type, so that the augmentation below does not touch the labels."""


class TrainOnlyJitter(Transform):
    """A heavy training-only augmentation: tracking losses must not see it."""

    split_idx = 0

    def encodes(self, x: Features):
        return x + 3 * torch.randn_like(x)


def make_data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TRAIN + N_VALID, N_FEATURES, generator=generator)
    truth = x[:, :N_CLASSES].argmax(dim=1)
    noisy = truth.clone()
    flip = torch.rand(N_TRAIN + N_VALID, generator=generator) < 0.3
    flip[N_TRAIN:] = False
    noisy[flip] = (truth[flip] + 1) % N_CLASSES
    return x, truth, noisy, flip[:N_TRAIN].numpy()


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(N_FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, N_CLASSES))


def fastai_learner(cb, seed=0, bs=32):
    x, _, noisy, _ = make_data(seed)
    splits = [list(range(N_TRAIN)), list(range(N_TRAIN, N_TRAIN + N_VALID))]
    datasets = Datasets(
        range(N_TRAIN + N_VALID), tfms=[[lambda i: Features(x[i])], [lambda i: TensorCategory(noisy[i])]], splits=splits
    )
    dls = datasets.dataloaders(bs=bs, after_item=[TrainOnlyJitter()], drop_last=True)
    return Learner(dls, tiny_model(), loss_func=CrossEntropyLossFlat(), metrics=accuracy, cbs=cb)


def tensor_learner(cb, targets=None, bs=32):
    x, _, noisy, _ = make_data()
    targets = noisy if targets is None else targets
    train = list(zip(x[:N_TRAIN], targets[:N_TRAIN]))
    valid = list(zip(x[N_TRAIN:], targets[N_TRAIN:]))
    dls = DataLoaders(DataLoader(train, bs=bs, shuffle=True, drop_last=True), DataLoader(valid, bs=bs))
    return Learner(dls, tiny_model(), loss_func=CrossEntropyLossFlat(), cbs=cb)


def quiet_fit(learn, epochs=2, lr=1e-2):
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit_one_cycle(epochs, lr)


def test_per_sample_losses_in_dataset_order_and_unaugmented():
    x, _, noisy, _ = make_data()
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    learn = fastai_learner(cb)
    quiet_fit(learn)
    learn.model.eval()
    with torch.no_grad():
        device = next(learn.model.parameters()).device  # the GPU, where there is one
        expected = F.cross_entropy(learn.model(x[:N_TRAIN].to(device)), noisy[:N_TRAIN].to(device), reduction="none").cpu().numpy()
    np.testing.assert_allclose(cb.losses_, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(cb.labels_, noisy[:N_TRAIN].numpy())
    assert cb.report()["item"].tolist() == list(range(N_TRAIN))  # the Datasets' items: sample indices

    augmented = DynamicBootstrapMixUp(mode="paper", warmup=1, augmented_tracking=True)
    learn = fastai_learner(augmented)
    quiet_fit(learn)
    learn.model.eval()
    with torch.no_grad():
        device = next(learn.model.parameters()).device
        clean = F.cross_entropy(learn.model(x[:N_TRAIN].to(device)), noisy[:N_TRAIN].to(device), reduction="none").cpu().numpy()
    assert np.abs(augmented.losses_ - clean).mean() > 0.1  # the option really augments


@pytest.mark.parametrize("tracking_bs", [None, 48])
def test_loss_pass_batches_are_the_training_batch_on_a_cpu(tracking_bs):
    # On a CPU an eval forward over four training batches at once costs more per sample than over
    # one (the activations outgrow the caches), so the pass keeps the training batch size there;
    # an accelerator gets four training batches; an explicit tracking_bs wins everywhere.
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, tracking_bs=tracking_bs)
    learn = fastai_learner(cb, bs=16)
    quiet_fit(learn, epochs=1)
    sizes = []
    hook = learn.model.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    losses = cb.per_sample_losses()[0]
    hook.remove()
    device = next(learn.model.parameters()).device
    expected = tracking_bs or (16 if device.type == "cpu" else 64)
    assert sizes == [expected] * (N_TRAIN // expected) + ([N_TRAIN % expected] if N_TRAIN % expected else [])
    assert losses.shape == (N_TRAIN,)
    assert tracking_batch_size(learn.dls.train, torch.device("cpu")) == 16
    assert tracking_batch_size(learn.dls.train, torch.device("cuda")) == 64


class CountForwards:
    """Forward calls by phase: validation, train mode, the un-mixed pass, the tracking pass."""

    def __init__(self, learn):
        self.learn, self.calls = learn, []
        learn.model.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        if not self.learn.training:
            phase = "validation"
        elif module.training:
            phase = "train"
        elif torch.is_inference_mode_enabled():
            phase = "tracking"
        else:
            phase = "un-mixed, no grad" if not torch.is_grad_enabled() else "eval with grad"
        self.calls.append(phase)


def test_one_gradient_free_eval_forward_per_batch_after_warmup():
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    learn = fastai_learner(cb)
    counter = CountForwards(learn)
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-2)
    pass_bs = tracking_batch_size(learn.dls.train, next(learn.model.parameters()).device)
    batches, tracking_batches = len(learn.dls.train), -(-N_TRAIN // pass_bs)
    assert counter.calls.count("train") == 2 * batches
    assert counter.calls.count("un-mixed, no grad") == batches  # epoch 1 only; one extra forward, not two
    assert counter.calls.count("tracking") == 2 * tracking_batches
    assert counter.calls.count("eval with grad") == 0


def test_unmixed_forward_leaves_batchnorm_statistics_and_modes_alone():
    cb = DynamicBootstrapMixUp(mode="paper", warmup=0)
    learn = tensor_learner(cb)
    quiet_fit(learn, epochs=1)
    xb = (torch.randn(8, N_FEATURES),)
    bn = learn.model[1]
    before = bn.running_mean.clone(), bn.num_batches_tracked.clone()
    learn.model.train()
    learn.model[2].eval()  # a user's own frozen module keeps its mode
    weights, targets = cb.noise_weights_and_targets(xb, torch.zeros(8, dtype=torch.long))
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.num_batches_tracked, before[1])
    assert learn.model[0].training and bn.training and not learn.model[2].training
    assert weights.shape == (8,) and ((0 <= weights) & (weights <= 1)).all()
    assert not weights.requires_grad and torch.equal(targets.sum(dim=1), torch.ones(8))


class CancelAt(Callback):
    def __init__(self, exception, epoch, iteration):
        self.exception, self.at = exception, (epoch, iteration)

    def after_batch(self):
        if (self.epoch, self.iter) == self.at:
            raise self.exception()


class RecordLossFunc(Callback):
    order = 90

    def before_validate(self):
        self.seen = self.learn.loss_func


@pytest.mark.parametrize("exception", [CancelFitException, CancelTrainException])
def test_loss_function_restored_after_fit_and_on_cancel(exception):
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    learn = fastai_learner(cb)
    original, metrics = learn.loss_func, list(learn.metrics)
    recorder = RecordLossFunc()
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-2, cbs=[CancelAt(exception, 1, 2), recorder])
    assert learn.loss_func is original and list(learn.metrics) == metrics
    assert recorder.seen is original  # validation scores with the user's loss
    quiet_fit(learn)
    assert learn.loss_func is original and list(learn.metrics) == metrics


def test_refits_detector_every_epoch_and_shows_noise_columns():
    _, _, _, mask = make_data()
    cb = DynamicBootstrapMixUp(mode="paper", warmup=0.5, noise_mask=mask)
    learn = tensor_learner(cb)
    learn.metrics = accuracy
    quiet_fit(learn, epochs=4, lr=3e-2)
    history = cb.history
    assert list(history["epoch"]) == [0, 1, 2, 3]
    assert history[["alphas_0", "alphas_1", "betas_0", "betas_1"]].drop_duplicates().shape[0] == 4
    assert history["noise_fraction"].between(0, 1).all() and history["auc"].between(0, 1).all()
    assert history["noise_rate"].between(0, 1).all()
    # The count is the log-odds estimate on the epoch's losses within each given label, not the
    # weights' mean p(noisy).
    losses, labels = cb.per_sample_losses()[:2]
    count, flags = count_noise(losses, labels, cb.p_noisy_)
    assert history["noise_separation"].iloc[-1] == pytest.approx(count.separation)
    assert history["noise_rate"].iloc[-1] == pytest.approx(count.rate, abs=1e-6)
    assert history["noise_from_mixture"].iloc[-1] == float(count.most_disbelieved)
    assert history["noise_verdict"].iloc[-1] == count.verdict and history["noise_source"].iloc[-1] == count.source
    assert (history["noise_interval_low"] <= history["noise_rate"]).all()
    assert (history["noise_rate"] <= history["noise_interval_high"]).all()
    np.testing.assert_array_equal(cb.noise_flags_, flags)
    # where the network disbelieves most labels, the verdict is "cannot tell"
    fell_back = history["noise_from_mixture"] == 1
    assert (history.loc[fell_back, "noise_verdict"] == "cannot tell").all()
    assert cb.warmup_epochs == 2
    names = list(learn.recorder.metric_names)
    assert "noise_rate" in names and "noise_auc" in names
    logged = np.array([row[names.index("noise_rate") - 1] for row in learn.recorder.values])
    np.testing.assert_allclose(logged, history["noise_rate"], rtol=1e-6)
    # The detector learned something: mislabelled samples are more suspect than the rest.
    assert history["auc"].iloc[-1] > 0.7


def test_report_one_row_per_sample_in_dataset_order():
    x, _, noisy, mask = make_data()
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, noise_mask=mask)
    learn = tensor_learner(cb)
    quiet_fit(learn)
    report = cb.report()
    assert len(report) == N_TRAIN and list(report["item"]) == list(range(N_TRAIN))
    assert {"given_label", "predicted_label", "loss", "p_noisy", "is_noisy", "noise_mask"} <= set(report.columns)
    np.testing.assert_array_equal(report["given_label"], noisy[:N_TRAIN].numpy())
    # is_noisy flags the history's count, within each given label the highest losses first
    assert report["is_noisy"].sum() >= round(cb.history["noise_rate"].iloc[-1] * N_TRAIN) - report["given_label"].nunique()
    for _, part in report.groupby("given_label"):
        if part["is_noisy"].any() and not part["is_noisy"].all():
            assert part.loc[part["is_noisy"], "loss"].min() >= part.loc[~part["is_noisy"], "loss"].max()
    assert report.attrs["noise_count"].rate == cb.history["noise_rate"].iloc[-1]
    assert report.attrs["noise_count"].verdict == cb.history["noise_verdict"].iloc[-1]
    np.testing.assert_array_equal(cb.report(threshold=0.5)["is_noisy"], report["p_noisy"] > 0.5)
    expected = cb.detector_.predict_proba(report["loss"].to_numpy().reshape(-1, 1))[:, 1]
    np.testing.assert_allclose(report["p_noisy"], expected)


def test_mixed_precision_runs():
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    learn = fastai_learner(cb).to_fp16()
    quiet_fit(learn)
    assert np.isfinite(cb.losses_).all() and len(cb.history) == 2
    assert np.isfinite(learn.recorder.values[-1][0])


def test_export_and_load_learner(tmp_path):
    x, *_ = make_data()
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    learn = fastai_learner(cb)
    quiet_fit(learn)
    learn.path = tmp_path
    learn.export("noisy.pkl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_learner(tmp_path / "noisy.pkl")
    loaded.model.eval()
    learn.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x[:5].to(next(loaded.model.parameters()).device)).cpu(),
                                   learn.model(x[:5].to(next(learn.model.parameters()).device)).cpu())
    assert loaded.dynamic_bootstrap_mix_up.detector_.alphas_.tolist() == cb.detector_.alphas_.tolist()


def test_trace_file(tmp_path):
    _, _, noisy, mask = make_data()
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, noise_mask=mask, keep_trace=True, trace_probs=True)
    learn = tensor_learner(cb)
    quiet_fit(learn, epochs=3)
    path = cb.save_trace(tmp_path / "trace")
    assert path.name == "trace.npz" and [p.name for p in tmp_path.iterdir()] == ["trace.npz"]
    trace = np.load(path)
    assert trace["losses"].shape == trace["p_noisy"].shape == (3, N_TRAIN)
    assert trace["probs"].shape == (3, N_TRAIN, N_CLASSES) and trace["probs"].dtype == np.float16
    np.testing.assert_array_equal(trace["noise_mask"], mask)
    np.testing.assert_array_equal(trace["noisy_labels"], noisy[:N_TRAIN].numpy())
    np.testing.assert_allclose(trace["losses"][-1], cb.losses_, rtol=1e-6)


def test_the_detector_argument_is_left_as_given():
    given = BetaMixtureNoiseDetector(max_iter=20)
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, detector=given)
    quiet_fit(tensor_learner(cb))
    assert cb.detector is given and not hasattr(given, "alphas_")  # never fitted itself
    assert cb.detector_ is not given and cb.detector_.max_iter == 20 and hasattr(cb.detector_, "alphas_")
    default = DynamicBootstrapMixUp(mode="paper", warmup=1)
    quiet_fit(tensor_learner(default))
    assert default.detector is None and isinstance(default.detector_, BetaMixtureNoiseDetector)


def test_failing_detector_fit_keeps_previous_fit():
    class FailsSecondTime(BetaMixtureNoiseDetector):
        fits = 0

        def fit(self, X, y=None):
            type(self).fits += 1
            if type(self).fits == 2:
                raise ValueError("synthetic failure")
            return super().fit(X, y)

    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, detector=FailsSecondTime(warm_start=True))
    learn = tensor_learner(cb)
    with pytest.warns(RuntimeWarning, match="synthetic failure.*keeping the previous fit"):
        quiet_fit(learn, epochs=3)
    assert len(cb.history) == 3
    assert cb.history.loc[0, "alphas_0"] == cb.history.loc[1, "alphas_0"]  # epoch 1 kept epoch 0's fit


def test_class_index_targets_required():
    x, _, noisy, _ = make_data()
    one_hot = F.one_hot(noisy, N_CLASSES).float()
    learn = tensor_learner(DynamicBootstrapMixUp(), targets=one_hot)
    learn.loss_func = nn.CrossEntropyLoss()
    with pytest.raises(TypeError, match="class index"):
        quiet_fit(learn, epochs=1)


def test_posterior_table_matches_detector():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.gamma(1.0, 0.2, 3000), rng.gamma(6.0, 0.5, 1000)])
    detector = BetaMixtureNoiseDetector().fit(losses)
    table = PosteriorTable.from_detector(detector, losses.max())
    probe = rng.uniform(0, losses.max(), 5000)
    exact = detector.predict_proba(probe)[:, 1]
    np.testing.assert_allclose(table(torch.tensor(probe)).numpy(), exact, atol=1e-3)
    ends = table(torch.tensor([losses.max() * 10, float("nan"), float("inf")]))
    np.testing.assert_allclose(ends.numpy(), detector.predict_proba([[losses.max()]])[0, 1], atol=1e-6)


def test_confidence_detector_is_given_probabilities():
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, detector=BetaMixtureNoiseDetector(input_type="confidence"))
    learn = tensor_learner(cb)
    quiet_fit(learn)
    report = cb.report()
    # Higher loss = lower confidence = more suspect, whichever input the detector takes.
    order = np.argsort(report["loss"].to_numpy())
    assert np.all(np.diff(report["p_noisy"].to_numpy()[order]) >= -1e-12)


def test_warmup_and_mixing_helpers():
    assert _epochs(0.35, 300) == 105 and _epochs(3, 10) == 3
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="warmup must be"):
            DynamicBootstrapMixUp(mode="paper", warmup=bad)
    floats, codes = torch.tensor([[0.0], [10.0]]), torch.tensor([[1], [2]])
    partner = torch.tensor([1, 0])
    mixed_floats, mixed_codes = mix_inputs((floats, codes), partner, 0.7)
    torch.testing.assert_close(mixed_floats, torch.tensor([[3.0], [7.0]]))
    assert torch.equal(mixed_codes, codes)  # lam >= 0.5 keeps each sample's own codes
    assert torch.equal(mix_inputs((codes,), partner, 0.3)[0], codes[partner])
    kept = mix_inputs((floats, codes), partner, 1.0)  # lam 1: the inputs as they are, bit for bit
    assert kept[0] is floats and kept[1] is codes


@pytest.mark.parametrize("kwargs, message", [
    ({"bootstrap": "medium"}, "bootstrap must be one of"),
    ({"alpha": 0}, "alpha must be > 0"),
    ({"reg_weight": -1}, "reg_weight must be >= 0"),
    ({"detector": object()}, "detector must have fit and predict_proba"),
    ({"tracking_bs": 0}, "tracking_bs must be a positive int"),
    ({"fresh_targets": "always"}, "no longer takes 'fresh_targets'"),
    ({"unmixed_until_memorising": "no"}, "no longer takes 'unmixed_until_memorising'"),
    ({"fitted_share": 0}, "no longer takes 'fitted_share'.*validation cells"),
    ({"mixing_only": 2.0}, "mixing_only must be a number of epochs"),
])
def test_bad_options_say_what_is_accepted(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        DynamicBootstrapMixUp(mode="paper", **kwargs)


def test_noise_mask_length_checked():
    learn = tensor_learner(DynamicBootstrapMixUp(mode="paper", noise_mask=np.zeros(5, bool)))
    with pytest.raises(ValueError, match="noise_mask has 5 entries but the training set has 200"):
        quiet_fit(learn, epochs=1)


class RecordBatches(Callback):
    """After DynamicBootstrapMixUp's before_batch: what it decided for each training batch."""

    order = DynamicBootstrapMixUp.order + 1

    def before_fit(self):
        self.seen = []

    def before_batch(self):
        if self.training:
            cb = self.learn.dynamic_bootstrap_mix_up
            self.seen.append((self.epoch, cb.temperature, *cb._batch))


def test_md_dyr_sh_mixes_by_the_detector_and_sharpens_its_targets():
    set_seed(0)
    cb = DynamicBootstrapMixUp(mode="paper", bootstrap="soft-to-hard", detector_mixing=True, warmup=1, sharpening=(1, 3))
    probe = RecordBatches()
    learn = tensor_learner([cb, probe])
    quiet_fit(learn, epochs=4)
    temperatures = {epoch: temperature for epoch, temperature, *_ in probe.seen}
    assert temperatures == pytest.approx({0: 1.0, 1: 1.0, 2: 1 + (0.001 - 1) / 2, 3: 0.001})
    for epoch, _, labels, partner, lam, loss_lam, weights, targets in probe.seen:
        if epoch == 0:  # warm-up: plain mixup, one Beta(32, 32) draw per batch
            assert isinstance(lam, float) and weights is None and loss_lam == lam
            continue
        assert loss_lam == 0.5  # the reference weighs the two partners' terms half and half
        expected = (1 - weights).clamp(min=1e-4) / ((1 - weights).clamp(min=1e-4) + (1 - weights[partner]).clamp(min=1e-4))
        torch.testing.assert_close(lam, expected)
        assert torch.allclose(targets.sum(dim=1), torch.ones(len(targets)))
        if epoch == 3:  # temperature 0.001: the soft targets are the hard ones (or split between tied logits)
            assert (targets.max(dim=1).values > 0.99).float().mean() > 0.9
            assert (targets.topk(2, dim=1).values.sum(dim=1) > 0.99).all()
    assert isinstance(learn.loss_func, CrossEntropyLossFlat)  # the learner's own loss is back


class ReferenceMdDyrSh(Callback):
    """Recomputes every training batch as the reference code's MD-DYR-SH does it (Arazo et al.'s
    ``mixup_data_beta``, ``mixup_criterion_beta``, ``mixup_criterion_SoftHard`` and
    ``reg_loss_class``, written out here formula by formula) from the un-mixed batch, and
    compares the mixed inputs and the loss with what DynamicBootstrapMixUp produced."""

    order = DynamicBootstrapMixUp.order - 1  # sees each batch before it is mixed

    def before_fit(self):
        self.checked, self.temperatures, self.mixing_lams = {}, {}, []

    def before_batch(self):
        if self.training:
            self.x, self.y = self.xb[0].clone(), self.yb[0].as_subclass(torch.Tensor).clone()
            with torch.no_grad(), eval_mode(self.model):  # lnc's un-mixed forward is in eval mode
                self.logits = self.model(self.x).float()

    def after_loss(self):
        if not self.training:
            return
        cb = self.learn.dynamic_bootstrap_mix_up
        x, y, batch, n_classes = self.x, self.y, cb._batch, self.logits.shape[1]
        index, log_probs = batch.partner, F.log_softmax(self.pred.float(), dim=1)
        if self.epoch < 1:  # plain mixup: one lam per batch for inputs and loss
            lam = batch.input_lam
            assert isinstance(lam, float) and batch.loss_lam == lam
            mixed = lam * x + (1 - lam) * x[index]
            expected = lam * F.nll_loss(log_probs, y) + (1 - lam) * F.nll_loss(log_probs, y[index])
        else:
            B = cb.table(F.cross_entropy(self.logits, y, reduction="none"))
            B[B <= 1e-4], B[B >= 1 - 1e-4] = 1e-4, 1 - 1e-4
            total = (1 - B) + (1 - B[index])
            per_sample = (-1, *[1] * (x.ndim - 1))  # the reference unsqueezes once per input dimension
            mixed = ((1 - B) / total).view(per_sample) * x + ((1 - B[index]) / total).view(per_sample) * x[index]
            if self.epoch < 2:  # epochs 106-110 of the reference: plain mixup loss, a fresh Beta(32, 32) draw
                lam = batch.loss_lam
                assert isinstance(lam, float) and 0 < lam < 1
                self.mixing_lams.append(lam)
                expected = lam * F.nll_loss(log_probs, y) + (1 - lam) * F.nll_loss(log_probs, y[index])
            else:  # soft-to-hard bootstrapping, temperature linspace(1, 0.001, end - start + 1)[epoch - start]
                temperature = np.linspace(1, 0.001, 3)[min(self.epoch - 2, 2)]
                self.temperatures[self.epoch] = cb.temperature
                assert cb.temperature == pytest.approx(temperature, abs=1e-12)
                out1, out2 = self.logits, self.logits[index]
                expected = torch.sum(
                    0.5 * ((1 - B) * F.nll_loss(log_probs, y, reduction="none")
                           + B * (-torch.sum(F.softmax(out1 / temperature, dim=1) * log_probs, dim=1)))
                    + 0.5 * ((1 - B[index]) * F.nll_loss(log_probs, y[index], reduction="none")
                             + B[index] * (-torch.sum(F.softmax(out2 / temperature, dim=1) * log_probs, dim=1)))
                ) / len(log_probs)
                mean_probs = torch.mean(F.softmax(self.pred.float(), dim=1), -2)
                expected = expected + sum((1.0 / n_classes) * torch.log((1.0 / n_classes) / p) for p in mean_probs)
        torch.testing.assert_close(self.xb[0], mixed)
        torch.testing.assert_close(self.loss_grad, expected)
        self.checked[self.epoch] = self.checked.get(self.epoch, 0) + 1


def test_md_dyr_sh_is_the_reference_loss_and_phases_by_hand():
    """Epoch 0 plain mixup, epoch 1 detector mixing with mixup's loss, epochs 2-4 soft-to-hard
    bootstrapping with the partners weighed 0.5 / 0.5, sharpening over epochs 2 -> 4."""
    set_seed(0)
    cb = DynamicBootstrapMixUp(mode="paper", bootstrap="soft-to-hard", detector_mixing=True, warmup=1, mixing_only=1, sharpening=(2, 4))
    reference = ReferenceMdDyrSh()
    learn = tensor_learner([cb, reference])
    quiet_fit(learn, epochs=5)
    assert cb.warmup_epochs == 1 and cb.bootstrap_epoch == 2
    assert reference.checked == {epoch: N_TRAIN // 32 for epoch in range(5)}
    assert reference.temperatures == pytest.approx({2: 1.0, 3: 0.5005, 4: 0.001})
    assert len(set(reference.mixing_lams)) == len(reference.mixing_lams) == N_TRAIN // 32  # a fresh draw per batch


def test_md_dyr_sh_milestones_scale_with_the_run():
    """The reference's 0-based epochs 105 (detector mixing), 110 (bootstrapping, sharpening
    starts) and 198 (temperature 0.001) of 300, in runs of other lengths; with another warm-up
    the sharpening starts with bootstrapping all the same."""
    for n_epoch, warmup, expected in ((300, 0.35, (105, 110, (110, 198))), (30, 0.35, (10, 11, (11, 20))),
                                      (6, 0.35, (2, 2, (2, 4))), (300, 0.5, (150, 155, (155, 243)))):
        cb = DynamicBootstrapMixUp(mode="paper", bootstrap="soft-to-hard", detector_mixing=True, warmup=warmup)
        cb.n_epoch, cb.learn = n_epoch, tensor_learner([])
        cb.before_fit()
        assert (cb.warmup_epochs, cb.bootstrap_epoch, cb.sharpening_epochs) == expected
    temperatures = [sharpening_temperature(epoch, 110, 198) for epoch in range(110, 300)]
    np.testing.assert_allclose(temperatures[:89], np.linspace(1, 0.001, 89), rtol=0, atol=1e-12)
    assert set(temperatures[88:]) == {0.001}


def test_bad_sharpening_says_what_is_accepted():
    for bad in ((5, 2), (0.2,), "early", (0.5, 1.5)):
        with pytest.raises(ValueError, match="sharpening must"):
            DynamicBootstrapMixUp(mode="paper", sharpening=bad)


def test_sharpening_that_ends_before_it_starts_in_this_run_stops_before_training():
    cb = DynamicBootstrapMixUp(mode="paper", sharpening=(3, 0.1))  # epoch 3 to a tenth of a 4-epoch run
    learn = tensor_learner(cb)
    with pytest.raises(ValueError, match=r"in a run of 4 epochs is epochs \(3, 0\)"):
        quiet_fit(learn, epochs=4)
    assert isinstance(learn.loss_func, CrossEntropyLossFlat) and not learn.metrics


def test_per_sample_mixing_weights_mix_each_pair_by_its_own_share():
    floats, codes = torch.tensor([[0.0], [10.0], [4.0]]), torch.tensor([[1], [2], [3]])
    partner, lam = torch.tensor([1, 2, 0]), torch.tensor([0.75, 0.5, 0.2])
    mixed_floats, mixed_codes = mix_inputs((floats, codes), partner, lam)
    torch.testing.assert_close(mixed_floats, torch.tensor([[2.5], [7.0], [0.8]]))
    assert torch.equal(mixed_codes, torch.tensor([[1], [2], [1]]))  # the heavier partner's codes
