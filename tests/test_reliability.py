"""Failures mid-training: a NaN batch, a failing or degenerate detector fit, non-finite
per-sample losses, and an interrupted run resumed from a checkpoint."""

import random
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fastai.basics import CancelFitException, Callback
from fastai.torch_core import set_seed
from test_callback import N_TRAIN, make_data, quiet_fit, tensor_learner

from lnc_fastai import DynamicBootstrapMixUp, SaveModelWithState, load_checkpoint, save_checkpoint
from lnc_sklearn import BetaMixtureNoiseDetector, DegenerateFitWarning


@pytest.fixture(autouse=True)
def seeded():
    set_seed(0)


class PoisonBatch(Callback):
    """Turns one training batch's inputs into NaN, as a corrupt sample or an overflow would."""

    order = 0  # before DynamicBootstrapMixUp mixes the batch

    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def before_batch(self):
        if self.training and (self.epoch, self.iter) == self.at:
            self.learn.xb = (torch.full_like(self.xb[0], float("nan")),)

DATA = Path(__file__).parent / "data"


def _weights_finite(learn):
    """Parameters and buffers (BatchNorm's running statistics) all finite."""
    return all(torch.isfinite(t).all() for t in [*learn.model.parameters(), *learn.model.buffers()])


def test_a_nan_batch_is_skipped_and_never_steps_the_optimizer():
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    learn = tensor_learner(cb)
    learn.add_cb(PoisonBatch(epoch=1, batch=2))
    with pytest.warns(RuntimeWarning, match="epoch 1, batch 2: the training loss is not finite.*skipped"):
        quiet_fit(learn, epochs=3)
    assert cb.skipped_batches == [{"epoch": 1, "iter": 2}]
    assert _weights_finite(learn)
    assert all(np.isfinite(row[0]) for row in learn.recorder.values)  # the logged training loss
    assert len(cb.history) == 3 and np.isfinite(cb.losses_).all()


def test_without_the_skip_the_same_batch_poisons_the_weights():
    """The check above can fail: plain training through the same NaN batch ruins the model."""
    learn = tensor_learner([])
    learn.add_cb(PoisonBatch(epoch=1, batch=2))
    quiet_fit(learn, epochs=2)
    assert not _weights_finite(learn)


class FailsAt(BetaMixtureNoiseDetector):
    """A detector whose fit at one chosen call fails in a chosen way."""

    calls = 0

    def __init__(self, *, how="raise", at=2, **kwargs):
        kwargs.setdefault("rate_estimate", "mixture")  # the callback's default detector's reading
        super().__init__(**kwargs)
        self.how, self.at = how, at

    def fit(self, X, y=None):
        type(self).calls += 1
        if type(self).calls == self.at:
            if self.how == "raise":
                raise np.linalg.LinAlgError("synthetic failure")
            if self.how == "degenerate":
                warnings.warn("component 1 collapsed (synthetic)", DegenerateFitWarning)
        super().fit(X, y)
        if type(self).calls == self.at and self.how == "flat":
            self.alphas_, self.betas_ = np.array([1.0, 1.0]), np.array([1.0, 1.0])
        if type(self).calls == self.at and self.how == "nan":
            self.weights_ = np.array([np.nan, np.nan])
        return self

    def get_params(self, deep=True):
        return {**super().get_params(deep), "how": self.how, "at": self.at}


@pytest.mark.parametrize(
    "how, reason",
    [
        ("raise", "fit failed \\(LinAlgError: synthetic failure\\)"),
        ("degenerate", "fit degenerated \\(component 1 collapsed"),
        ("flat", "fit cannot tell samples apart"),
        ("nan", "fit gave non-finite p\\(noisy\\)"),
    ],
)
def test_a_failed_or_degenerate_fit_keeps_the_previous_one(how, reason):
    FailsAt.calls = 0
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, detector=FailsAt(how=how, at=2))
    learn = tensor_learner(cb)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_fit(learn, epochs=3)
    ours = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(ours) == 1, ours  # warned once, with the reason
    assert re.search(f"epoch 1: the detector's {reason}.*keeping the previous fit", ours[0])
    assert cb.failed_fits == [{"epoch": 1, "problem": ours[0].split(": ", 1)[1].split("; keeping")[0]}]
    history = cb.history
    columns = ["alphas_0", "alphas_1", "betas_0", "betas_1", "weights_0"]
    np.testing.assert_array_equal(history.loc[1, columns], history.loc[0, columns])  # epoch 1 kept epoch 0's fit
    assert np.isfinite(history[columns].to_numpy()).all()
    assert _weights_finite(learn)


def test_non_finite_per_sample_losses_are_reported_and_left_out():
    x, _, noisy, _ = make_data()
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    learn = tensor_learner(cb)
    learn.dls.train.dataset[5] = (torch.full_like(x[5], float("nan")), noisy[5])  # one corrupt sample
    with pytest.warns(RuntimeWarning, match="1 of 200 per-sample losses are not finite; they are left out"):
        quiet_fit(learn, epochs=2)
    report = cb.report()
    assert np.isnan(report.loc[5, "p_noisy"]) and report.loc[5, "rank"] == len(report)
    assert np.isfinite(report.drop(index=5)["p_noisy"]).all()


class SeedEveryEpoch(Callback):
    """Each epoch draws the same random numbers (shuffling, mixup) in every run, so that an
    interrupted-and-resumed run can be compared with an uninterrupted one."""

    order = -100

    def before_epoch(self):
        set_seed(1000 + self.epoch)
        self.dls.train.rng = random.Random(1000 + self.epoch)


class StopAfter(Callback):
    def __init__(self, epoch):
        self.stop_epoch = epoch

    def after_epoch(self):
        if self.epoch == self.stop_epoch:
            raise CancelFitException


def _run(tmp_path, cbs, make_detector=BetaMixtureNoiseDetector, **fit_kwargs):
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, detector=make_detector())
    learn = tensor_learner([cb, SeedEveryEpoch(), *cbs])
    learn.path, learn.model_dir = tmp_path, "models"
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit_one_cycle(4, 1e-2, **fit_kwargs)
    return learn, cb


@pytest.mark.parametrize("detector", ["default", "warm_start"])
def test_resume_from_a_checkpoint_gives_the_same_detector(tmp_path, detector):
    make = (lambda: BetaMixtureNoiseDetector(warm_start=True)) if detector == "warm_start" else BetaMixtureNoiseDetector
    parameters = ["bounds_0", "bounds_1", "alphas_0", "alphas_1", "betas_0", "betas_1", "weights_0", "weights_1"]

    _, whole = _run(tmp_path, [], make)
    stopped_learn, stopped = _run(tmp_path, [StopAfter(epoch=1)], make)
    assert list(stopped.history["epoch"]) == [0, 1]
    save_checkpoint(stopped_learn, "checkpoint")  # model, optimizer and the callback's state beside them
    assert (tmp_path / "models" / "checkpoint.dynamic_bootstrap_mix_up.npz").exists()

    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, detector=make())
    learn = tensor_learner([cb, SeedEveryEpoch()])
    learn.path, learn.model_dir = tmp_path, "models"
    load_checkpoint(learn, "checkpoint")
    assert cb.table is not None and list(cb.history["epoch"]) == [0, 1]
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit_one_cycle(4, 1e-2, start_epoch=2)
    assert list(cb.history["epoch"]) == [0, 1, 2, 3]
    np.testing.assert_allclose(
        cb.history.loc[2, parameters].to_numpy(float), whole.history.loc[2, parameters].to_numpy(float), rtol=1e-5
    )
    np.testing.assert_allclose(cb.losses_, whole.losses_, rtol=1e-4, atol=1e-6)


def test_resume_would_differ_without_the_state(tmp_path):
    """The comparison above can fail: resuming the model alone (no table) trains epoch 2 without
    bootstrapping, and the detector at epoch 2 comes out different."""
    _, whole = _run(tmp_path, [])
    stopped_learn, _ = _run(tmp_path, [StopAfter(epoch=1)])
    save_checkpoint(stopped_learn, "checkpoint")
    (tmp_path / "models" / "checkpoint.dynamic_bootstrap_mix_up.npz").unlink()
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    learn = tensor_learner([cb, SeedEveryEpoch()])
    learn.path, learn.model_dir = tmp_path, "models"
    with pytest.warns(RuntimeWarning, match="no dynamic_bootstrap_mix_up state beside"):
        load_checkpoint(learn, "checkpoint")
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        learn.fit_one_cycle(4, 1e-2, start_epoch=2)
    assert not np.allclose(cb.losses_, whole.losses_, rtol=1e-4, atol=1e-6)


def test_plain_save_leaves_the_callback_alone(tmp_path):
    """lnc changes nothing in fastai: learn.save writes the model only; the state goes with
    save_checkpoint (or SaveModelWithState)."""
    learn, _ = _run(tmp_path, [StopAfter(epoch=1)])
    learn.save("plain")
    assert (tmp_path / "models" / "plain.pth").exists()
    assert not (tmp_path / "models" / "plain.dynamic_bootstrap_mix_up.npz").exists()


def test_save_model_with_state_keeps_the_best_epochs_state(tmp_path):
    """fastai's SaveModelCallback, with the callback's state saved beside every best model and
    restored with it at the end of the fit."""
    saver = SaveModelWithState(monitor="valid_loss", fname="best")
    learn, cb = _run(tmp_path, [saver])
    assert (tmp_path / "models" / "best.pth").exists()
    assert (tmp_path / "models" / "best.dynamic_bootstrap_mix_up.npz").exists()
    best = int(np.argmin([row[1] for row in learn.recorder.values]))
    assert list(cb.history["epoch"]) == list(range(best + 1))  # the history of the best epoch, restored


def test_state_files_are_checked_and_never_unpickled(tmp_path):
    cb = DynamicBootstrapMixUp()
    (tmp_path / "text.npz").write_text("not a state")
    with pytest.raises(ValueError, match="is not a DynamicBootstrapMixUp state file"):
        cb.load_state(tmp_path / "text.npz")
    np.savez(tmp_path / "objects.npz", meta=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(ValueError, match="is not a DynamicBootstrapMixUp state file"):
        cb.load_state(tmp_path / "objects.npz")
    np.savez(tmp_path / "other.npz", meta=np.array('{"format": "something else"}'))
    with pytest.raises(ValueError, match="expected format"):
        cb.load_state(tmp_path / "other.npz")


def test_lr_find_leaves_the_callback_as_it_was():
    """fastai's lr_find trains a few epochs and loads the model back; the callback's detector,
    table and history go back too, so the real fit starts from scratch."""
    cb = DynamicBootstrapMixUp(mode="paper", warmup=0)
    learn = tensor_learner(cb)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.lr_find(num_it=30, show_plot=False)
    assert cb.epoch_records == [] and cb.table is None and cb.detector_ is None and cb.losses_ is None
    quiet_fit(learn, epochs=2)
    assert list(cb.history["epoch"]) == [0, 1]


def test_a_callback_exported_before_detector_was_split_loads():
    """Learners exported when ``detector`` held the fitted detector (no ``detector_``) unpickle
    into the current layout."""
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1)
    quiet_fit(tensor_learner(cb))
    fitted = cb.detector_
    old_layout = {k: v for k, v in cb.__dict__.items() if k not in ("correction", "policy", "stack_y")}
    old_layout.update(detector=fitted, mode="paper", p_noisy_=cb.p_noisy_, labels_=cb.labels_)
    old = DynamicBootstrapMixUp.__new__(DynamicBootstrapMixUp)
    old.__setstate__(old_layout)
    assert old.detector is None and old.detector_.alphas_.tolist() == fitted.alphas_.tolist()
    assert old.stack_y is False and "meta" in old.state_dict() and np.array_equal(old.p_noisy_, cb.p_noisy_)


@pytest.mark.parametrize("mode", ["lnc", "paper"])
def test_a_callback_and_a_state_file_saved_before_the_policy_object_load(mode):
    """Files written by the version before the training policy became one object
    (``tests/data/callback_*_before_policy.*``: a callback fitted three epochs, lnc mode's as after
    a memorisation call at epoch 2): the pickled callback (as ``load_learner`` reads it) and its
    state file load, keep what they learned, and train on."""
    import pickle

    with open(DATA / f"callback_{mode}_before_policy.pkl", "rb") as file:
        old = pickle.load(file)
    assert old.mode == mode and old.p_noisy_.shape == (N_TRAIN,) and len(old.epoch_records) == 3
    assert old.detector_ is not None and old.correction.detector_ is old.detector_
    if mode == "lnc":
        assert (old.policy.memorising_since, old.policy.regime) == (2, "heavy")
        assert old.correction.epoch_plan(2).phase == "bootstrapping" and old.policy.alpha == 0.4
    state = DynamicBootstrapMixUp() if mode == "lnc" else DynamicBootstrapMixUp.preset("m-dyr-h")
    state.load_state(DATA / f"callback_{mode}_state_before_policy.npz")
    np.testing.assert_array_equal(state.p_noisy_, old.p_noisy_)
    if mode == "lnc":
        assert (state.policy.memorising_since, state.policy.regime) == (2, "heavy")
        assert state.policy.previous_flags.shape == (N_TRAIN,)
    learn = tensor_learner(old)
    quiet_fit(learn, 2)  # a new fit: it starts afresh and trains
    assert len(old.epoch_records) > 3
