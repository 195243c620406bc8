"""lnc mode's training policy: which epochs bootstrap, and why.

One plain-Python object (NumPy only, no torch, no fastai), in the manner of PyTorch's
``ReduceLROnPlateau``: the training loop calls :meth:`TrainingPolicy.update` once after each
loss pass, with what the pass measured (:class:`PassStats`) and the validation accuracies so
far, and gets the :class:`Plan` for the epochs that follow, with its reason as a sentence. A
plan is a function of the epoch (:meth:`Plan.at`), so the epochs between two passes (a pass
every few epochs on a CPU) need no update: the bootstrapping ramp is in the plan.

Phases and transitions (``docs/training.md`` has the table):

- ``warm-up``: mixup (``alpha``, fastai's ``MixUp()`` draw) until ``warmup_epochs``.
- ``mixup``: the same after it, whatever the count says, until the memorisation call.
- the call: under heavy noise (the network disbelieves most of its labels), once the network
  memorises the labels it disbelieved (more than ``memorisation_threshold`` of the samples
  flagged one pass before are now predicted as given, and more than chance puts there as
  predictions move) and its validation accuracy has stopped rising.
- ``bootstrapping`` from the epoch after the call to the end: each sample's loss moves towards
  the network's prediction (a forward of the un-mixed batch) in proportion to its p(noisy),
  ramping in over ``ramp_epochs`` and scaled down while predictions crowd into fewer classes.

The validation history is explicit: the loop passes the accuracies it has (the fastai callback
updates the policy after fastai's validation, so the list ends with the epoch just trained). An
empty history means no validation set: then the call does not wait for the accuracy to stall.

Switched off on the validation cells of ``benchmarks/results/evaluation_split.md`` without a
loss (``benchmarks/results/policy_validation_before.md``), and so not here: training unmixed
while waiting for the call, the rewind to the best waiting epoch, bootstrapping under light
noise, strong mixup after the call or once the network fits its labels, the prediction floor,
and unmixed last epochs. Counting from the pass's probabilities did not gain either.
"""

from dataclasses import dataclass, field, fields

import numpy as np

from .adaptive import (collapse_guard, effective_classes, label_fit, memorisation, memorising, noise_regime, ramp,
                       still_improving)
from .schedule import epochs_of

__all__ = ["PassStats", "EpochPlan", "Plan", "TrainingPolicy"]


@dataclass
class PassStats:
    """What one loss pass measured, per sample in dataset order: the given ``labels``, the
    network's ``predictions``, the detector's ``flags`` (samples counted as mislabelled), and the
    count's ``rate`` and ``most_disbelieved`` (the network disbelieves most labels: heavy noise)."""

    labels: np.ndarray
    predictions: np.ndarray
    flags: np.ndarray
    rate: float
    most_disbelieved: bool
    n_classes: int


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's training: mixup's ``alpha``, the share ``bootstrap_scale`` of the full
    bootstrapping weights (0 for none), and whether the targets come from a forward of each
    batch (``fresh_targets``)."""

    epoch: int
    phase: str
    alpha: float
    bootstrap_scale: float
    fresh_targets: bool = False


@dataclass(frozen=True)
class Plan:
    """What the policy does from its last update on, as a function of the epoch; ``reason`` says
    why in a sentence."""

    policy: "TrainingPolicy" = field(repr=False, compare=False)
    reason: str = ""

    def at(self, epoch):
        """The :class:`EpochPlan` of ``epoch``."""
        return self.policy._epoch_plan(epoch)


@dataclass
class TrainingPolicy:
    """lnc mode's policy (module docstring). The first four fields are its constants; the run's
    length is given by :meth:`start`; the fields after them are its state, which
    :meth:`state_dict` saves."""

    warmup: object = 0.1  # epochs (int) or a fraction of the run (float): no call before it
    alpha: float = 0.4  # mixup, fastai's MixUp() default
    memorisation_threshold: float = 0.05  # flagged samples predicted as given: the call's share
    ramp: object = 0.1  # epochs (int) or a fraction of the run: bootstrapping's rise to full weight
    # state
    n_epochs: int = 0
    warmup_epochs: int = 0
    ramp_epochs: int = 0
    regime: str = "none"  # what the last count read: "none", "light" (a few wrong labels) or "heavy"
    memorising_since: object = None  # the epoch bootstrapping started at (the call's next)
    widest_classes: float = 0.0
    collapse_guard: float = 1.0
    previous_flags_epoch: int = -1
    memorisation: float = float("nan")  # the last pass's memorisation signal beyond chance
    memorisation_share: float = float("nan")  # and without taking chance off
    label_fit: float = float("nan")  # the share of labels the last pass predicted as given
    still_learning: bool = False  # whether the validation accuracy still rose at the last update
    reason: str = "not started"
    previous_flags: object = field(default=None, repr=False)
    previous_predictions: object = field(default=None, repr=False)

    CONSTANTS = ("warmup", "alpha", "memorisation_threshold", "ramp")
    ARRAYS = ("previous_flags", "previous_predictions")

    def __post_init__(self):
        epochs_of(self.warmup, 1)
        epochs_of(self.ramp, 1, "ramp")
        for name, low, high in (("alpha", 0, None), ("memorisation_threshold", 0, 1)):
            value = getattr(self, name)
            number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            if not (number and np.isfinite(value) and low < value and (high is None or value <= high)):
                raise ValueError(f"{name} must be a finite number in ({low}, {high or 'inf'}], got {value!r}")

    # ---- the run ------------------------------------------------------------------------------
    def start(self, n_epochs):
        """A fresh run of ``n_epochs``: the state back to its start. Returns the first :class:`Plan`."""
        fresh = TrainingPolicy(**{name: getattr(self, name) for name in self.CONSTANTS})
        self.__dict__.update(fresh.__dict__)
        self.set_length(n_epochs)
        self.reason = f"mixup (alpha {self.alpha:g}) on the given labels; no call before epoch {self.warmup_epochs}"
        return Plan(self, self.reason)

    def set_length(self, n_epochs):
        """The run's length, and the epoch counts resolved against it (the state kept: a run
        resumed from a checkpoint)."""
        self.n_epochs = int(n_epochs)
        self.warmup_epochs = epochs_of(self.warmup, self.n_epochs)
        self.ramp_epochs = epochs_of(self.ramp, self.n_epochs, "ramp")

    def update(self, epoch, stats, valid_history=()):
        """After the pass of ``epoch`` (``stats``) and, where there is one, its validation
        (``valid_history``: the validation accuracies against the given labels so far, one per
        epoch, the last the epoch just trained): the :class:`Plan` from ``epoch + 1`` on."""
        labels, predictions = np.asarray(stats.labels), np.asarray(stats.predictions)
        flags = np.asarray(stats.flags, dtype=bool)
        # the collapse guard: predictions crowding into fewer classes than before hold bootstrapping back
        effective = effective_classes(predictions, stats.n_classes)
        self.widest_classes = max(self.widest_classes, effective) if np.isfinite(effective) else self.widest_classes
        self.collapse_guard = collapse_guard(effective, self.widest_classes)
        # memorisation: flagged samples one pass ago now predicted as given, beyond what churn gives by chance
        previous, before = self.previous_flags, self.previous_predictions
        share = signal = float("nan")
        trained = self.previous_flags_epoch >= self.warmup_epochs  # before it, learning looks like memorising
        if previous is not None and before is not None and previous.shape == flags.shape == before.shape and trained:
            share = memorisation(predictions, labels, previous)
            signal = memorisation(predictions, labels, previous, before, stats.n_classes)
        self.previous_flags, self.previous_flags_epoch, self.previous_predictions = flags.copy(), int(epoch), predictions.copy()
        self.regime = noise_regime(stats)
        self.still_learning = still_improving(list(valid_history))  # a rising validation accuracy: still learning
        self.memorisation, self.memorisation_share = signal, share
        self.label_fit = label_fit(predictions, labels) if predictions.size else float("nan")
        nxt = int(epoch) + 1
        why = f"epoch {epoch}: the count reads {stats.rate:.0%} ({self.regime} noise)"
        called = memorising(share, signal, self.memorisation_threshold) and not self.still_learning
        if self.memorising_since is None and self.regime == "heavy" and called:
            self.memorising_since = nxt
            why += (f"; the network memorises labels it disbelieved ({signal:.0%} of the flagged samples beyond chance)"
                    + (" and its validation accuracy has stopped rising" if valid_history else " (no validation set)")
                    + f": bootstrapping from epoch {nxt}")
        elif self.memorising_since is None and self.regime == "heavy":
            why += ("; the network disbelieves most labels, and is not seen memorising them"
                    + (" (its validation accuracy still rises)" if self.still_learning else ""))
        if nxt < self.n_epochs:
            coming = self._epoch_plan(nxt)
            why += f". Epoch {nxt}: {coming.phase}, mixup alpha {coming.alpha:g}, bootstrapping weights x{coming.bootstrap_scale:.2f}"
        self.reason = why
        return Plan(self, why)

    def _epoch_plan(self, epoch):
        called = self.memorising_since is not None and epoch >= self.memorising_since
        scale = ramp(epoch, self.memorising_since, self.ramp_epochs) * self.collapse_guard if called else 0.0
        phase = "bootstrapping" if called else ("warm-up" if epoch < self.warmup_epochs else "mixup")
        return EpochPlan(epoch=int(epoch), phase=phase, alpha=float(self.alpha), bootstrap_scale=float(scale),
                         fresh_targets=called and scale > 0)

    # ---- state --------------------------------------------------------------------------------
    def state_dict(self):
        """The policy's constants and state as plain values (arrays as lists of ints)."""
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.ARRAYS}
        for name in self.ARRAYS:
            value = getattr(self, name)
            state[name] = None if value is None else np.asarray(value).astype(int).tolist()
        return state

    def load_state_dict(self, state):
        """Put back what :meth:`state_dict` returned; unknown names raise ``ValueError``."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(state) - names)
        if unknown:
            raise ValueError(f"not a TrainingPolicy state: unknown fields {unknown}; expected some of {sorted(names)}")
        for name, value in state.items():
            if name in self.ARRAYS and value is not None:
                value = np.asarray(value, dtype=bool if name == "previous_flags" else np.int64)
            setattr(self, name, value)
