"""lnc mode's training policy, driven over pass histories without a Learner or torch."""

import json

import numpy as np
import pytest

from lnc_fastai.policy import PassStats, TrainingPolicy

N, K = 300, 10


def stats(rate, heavy=False, fit=0.9, spread=True):
    """One pass: ``fit`` of the labels predicted as given, no samples flagged."""
    labels = np.arange(N) % K
    predictions = labels.copy()
    wrong = np.arange(N) >= int(fit * N)
    predictions[wrong] = (labels[wrong] + 1) % K
    if not spread:
        predictions[:] = 0
    return PassStats(labels, predictions, np.zeros(N, dtype=bool), rate, heavy, K)


def heavy_pass(memorised_share, heavy=True):
    """The last half of the samples flagged; ``memorised_share`` of them predicted as their
    label, the others as the next class (as one pass before)."""
    labels = np.arange(N) % K
    flagged = np.arange(N) >= N // 2
    predictions = labels.copy()
    moved = flagged & (np.arange(N) >= N // 2 + int(memorised_share * N / 2))
    predictions[moved] = (labels[moved] + 1) % K
    return PassStats(labels, predictions, flagged, 0.5, heavy, K)


def test_without_heavy_noise_it_is_mixup_throughout():
    policy = TrainingPolicy()
    plan = policy.start(10)
    assert "no call before epoch 1" in plan.reason and policy.warmup_epochs == 1
    for epoch, rate in enumerate([0.0, 0.05, 0.3, 0.0, 0.2, 0.1, 0.0, 0.0, 0.4, 0.0]):
        plan = policy.update(epoch, stats(rate), valid_history=[0.5] * (epoch + 1))
        assert policy.regime == ("light" if rate else "none")
    assert [plan.at(e).phase for e in range(10)] == ["warm-up"] + ["mixup"] * 9
    assert all(plan.at(e).alpha == 0.4 and plan.at(e).bootstrap_scale == 0 for e in range(10))
    assert plan.reason.startswith("epoch 9: the count reads 0% (none noise)")


def test_heavy_noise_calls_once_memorising_under_a_stalled_validation_then_bootstraps_to_the_end():
    policy = TrainingPolicy(warmup=1, ramp=2)
    policy.start(10)
    history = [0.2]
    plan = policy.update(0, heavy_pass(0.0), history)
    assert plan.at(1).phase == "mixup" and "not seen memorising" in plan.reason
    history.append(0.3)
    policy.update(1, heavy_pass(0.0), history)
    history.append(0.35)
    plan = policy.update(2, heavy_pass(0.5), history)  # memorising, but the validation accuracy still rises
    assert policy.still_learning and policy.memorising_since is None and "still rises" in plan.reason
    for epoch, accuracy in ((3, 0.34), (4, 0.33)):
        history.append(accuracy)
        policy.update(epoch, heavy_pass(0.0), history)
    history.append(0.32)
    plan = policy.update(5, heavy_pass(0.5), history)  # stalled for three epochs: the call
    assert policy.memorising_since == 6 and "bootstrapping from epoch 6" in plan.reason
    # memorised: 50% of the flagged, less the 1 in K - 1 of the moves that chance puts on the label
    assert policy.memorisation == pytest.approx(0.5 - 0.5 / (K - 1))
    assert [round(plan.at(e).bootstrap_scale, 3) for e in (5, 6, 7, 8, 9)] == [0.0, 0.333, 0.667, 1.0, 1.0]
    assert [plan.at(e).phase for e in (5, 6, 9)] == ["mixup", "bootstrapping", "bootstrapping"]
    assert plan.at(6).fresh_targets and plan.at(6).alpha == 0.4 and not plan.at(5).fresh_targets
    # once called, bootstrapping goes on whatever later counts say
    plan = policy.update(6, stats(0.0), history)
    assert plan.at(9).phase == "bootstrapping"
    # the collapse guard: predictions crowding into one class hold the weights back
    plan = policy.update(7, stats(0.2, spread=False), history)
    assert policy.collapse_guard == 0.0 and plan.at(9).bootstrap_scale == 0.0


def test_without_validation_the_call_needs_no_stall_and_not_under_light_noise():
    policy = TrainingPolicy(warmup=1)
    policy.start(8)
    policy.update(1, heavy_pass(0.0), [])
    plan = policy.update(2, heavy_pass(0.5), [])
    assert policy.memorising_since == 3 and "(no validation set)" in plan.reason
    light = TrainingPolicy(warmup=1)
    light.start(8)
    light.update(1, heavy_pass(0.0, heavy=False), [])
    light.update(2, heavy_pass(0.5, heavy=False), [])
    assert light.memorising_since is None and light.memorisation > 0.3  # the same signal: no call


def test_memorisation_before_the_warmup_floor_is_not_read():
    policy = TrainingPolicy(warmup=3)
    policy.start(8)
    policy.update(0, heavy_pass(0.0), [])
    policy.update(1, heavy_pass(0.9), [])  # flags taken before the floor: learning looks like memorising
    assert policy.memorising_since is None and np.isnan(policy.memorisation)


def test_the_state_round_trips_through_json_and_bad_states_and_constants_are_refused():
    policy = TrainingPolicy(warmup=1)
    policy.start(8)
    policy.update(1, heavy_pass(0.0), [])
    policy.update(2, heavy_pass(0.5), [])
    state = json.loads(json.dumps(policy.state_dict()))
    other = TrainingPolicy()
    other.load_state_dict(state)
    assert other.regime == "heavy" and other.n_epochs == 8 and other.previous_flags.dtype == bool
    assert [other._epoch_plan(e) for e in range(8)] == [policy._epoch_plan(e) for e in range(8)]
    with pytest.raises(ValueError, match="unknown fields"):
        other.load_state_dict({"regimen": "heavy"})
    for bad in ({"alpha": 0}, {"alpha": True}, {"memorisation_threshold": 1.5}, {"memorisation_threshold": float("nan")},
                {"warmup": -1}, {"ramp": 2.0}):
        with pytest.raises(ValueError):
            TrainingPolicy(**bad)


def test_start_forgets_the_last_run_and_set_length_keeps_it():
    policy = TrainingPolicy(warmup=1)
    policy.start(8)
    policy.update(1, heavy_pass(0.0), [])
    policy.update(2, heavy_pass(0.5), [])
    policy.set_length(16)  # a run resumed from a checkpoint with another length
    assert policy.memorising_since == 3 and policy.ramp_epochs == 2  # ramp=0.1 of 16 epochs
    policy.start(8)
    assert policy.memorising_since is None and policy.regime == "none" and policy.previous_flags is None


def test_a_recorded_history_replays_to_the_same_plans():
    """A history as a run records it (the counts and the validation accuracies), fed twice."""
    rng = np.random.default_rng(0)
    passes = [heavy_pass(share, heavy=share < 0.6) for share in rng.uniform(0, 0.8, 12)]
    history = list(np.r_[np.linspace(0.2, 0.5, 5), np.full(7, 0.45)])
    plans = []
    for run in range(2):
        policy = TrainingPolicy(warmup=2)
        policy.start(12)
        plans.append([(policy.update(e, s, history[: e + 1]).reason, policy._epoch_plan(e + 1)) for e, s in enumerate(passes)])
    assert plans[0] == plans[1] and any(plan.phase == "bootstrapping" for _, plan in plans[0])


def test_the_docs_transition_table_names_the_phases_the_policy_plans():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    table = text.split("### Phases and transitions", 1)[1].split("\n\n", 2)[1]
    documented = {re.match(r"\| `([a-z-]+)`", line).group(1) for line in table.splitlines() if line.startswith("| `")}
    policy = TrainingPolicy(warmup=2, ramp=0)
    policy.start(6)
    policy.update(2, heavy_pass(0.0), [])
    plan = policy.update(3, heavy_pass(0.5), [])
    planned = {plan.at(e).phase for e in range(6)}
    assert documented == planned == {"warm-up", "mixup", "bootstrapping"}
