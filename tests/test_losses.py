"""The bootstrapping losses against values worked out by hand (natural logs, 7 digits)."""

import math

import pytest
import torch

from lnc_fastai.losses import (
    bootstrap_targets,
    bootstrapping_loss,
    class_balance_regulariser,
    detector_mixing_weights,
    mixup_bootstrapping_loss,
    sharpening_temperature,
    static_bootstrapping_loss,
)

# Logits whose softmax is exactly these probabilities.
PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]], dtype=torch.float64)
LOGITS = PROBS.log()
LABELS = torch.tensor([1, 0])
# By hand: -log p(label) = (1.6094379, 1.3862944); -log p(argmax) = (0.3566749, 0.6931472);
# cross-entropy of each softmax with itself (entropy) = (0.8018186, 1.0397208).


def close(actual, expected):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), rtol=0, atol=1e-6)


def test_targets_are_constant_one_hot_or_softmax():
    logits = LOGITS.clone().requires_grad_()
    hard, soft = bootstrap_targets(logits, "hard"), bootstrap_targets(logits, "soft")
    close(hard, [[1.0, 0, 0], [0, 0, 1.0]])
    close(soft, PROBS)
    assert not hard.requires_grad and not soft.requires_grad
    # Sharpening towards 0 temperature tends to the hard target.
    close(bootstrap_targets(LOGITS, "soft", temperature=1e-3), [[1.0, 0, 0], [0, 0, 1.0]])


def test_dynamic_bootstrapping_by_hand():
    weight = torch.tensor([0.5, 0.1])
    # 0.5 * 1.6094379 + 0.5 * 0.3566749 ; 0.9 * 1.3862944 + 0.1 * 0.6931472
    close(bootstrapping_loss(LOGITS, LABELS, weight, "hard"), [0.9830564, 1.3169797])
    # 0.5 * 1.6094379 + 0.5 * 0.8018186 ; 0.9 * 1.3862944 + 0.1 * 1.0397208
    close(bootstrapping_loss(LOGITS, LABELS, weight, "soft"), [1.2056283, 1.3516371])
    # Weight 0 is plain cross-entropy.
    close(bootstrapping_loss(LOGITS, LABELS, 0.0), [1.6094379, 1.3862944])


def test_static_bootstrapping_uses_reeds_weights():
    # hard: 0.8 * 1.6094379 + 0.2 * 0.3566749 ; soft: 0.95 * 1.6094379 + 0.05 * 0.8018186
    close(static_bootstrapping_loss(LOGITS, LABELS, "hard")[:1], [1.3588853])
    close(static_bootstrapping_loss(LOGITS, LABELS, "soft")[:1], [1.5690569])


def test_gradient_does_not_flow_through_targets():
    # Soft bootstrapping with weight 1 is the prediction's cross-entropy with a *constant* copy of
    # itself: its gradient with respect to the logits is softmax - softmax = 0.
    logits = LOGITS.clone().requires_grad_()
    bootstrapping_loss(logits, LABELS, 1.0, "soft").sum().backward()
    close(logits.grad, torch.zeros_like(PROBS))
    # Hard with weight 1: softmax - one_hot(argmax).
    logits.grad = None
    bootstrapping_loss(logits, LABELS, 1.0, "hard").sum().backward()
    close(logits.grad, PROBS - torch.tensor([[1.0, 0, 0], [0, 0, 1.0]], dtype=torch.float64))


def test_mixup_bootstrapping_by_hand():
    mixed = torch.tensor([[0.6, 0.3, 0.1]], dtype=torch.float64).log()
    targets_a = torch.tensor([[0.0, 1.0, 0.0]])
    targets_b = torch.tensor([[0.5, 0.5, 0.0]])
    loss = mixup_bootstrapping_loss(
        mixed, torch.tensor([0]), torch.tensor([2]), targets_a, targets_b, torch.tensor([0.25]), torch.tensor([0.5]), 0.7
    )
    # a: 0.75 * 0.5108256 + 0.25 * 1.2039728 = 0.6841124
    # b: 0.5 * 2.3025851 + 0.5 * (0.5 * 0.5108256 + 0.5 * 1.2039728) = 1.5799921
    # 0.7 * a + 0.3 * b
    close(loss, [0.9528763])
    # With both weights 0 it is plain mixup: 0.7 * 0.5108256 + 0.3 * 2.3025851.
    zero = torch.zeros(1)
    plain = mixup_bootstrapping_loss(mixed, torch.tensor([0]), torch.tensor([2]), targets_a, targets_b, zero, zero, 0.7)
    close(plain, [0.7 * 0.5108256 + 0.3 * 2.3025851])


def test_class_balance_regulariser_by_hand():
    # mean softmax (0.475, 0.225, 0.3); R = sum_c (1/3) log((1/3) / hbar_c)
    expected = sum(math.log((1 / 3) / h) for h in (0.475, 0.225, 0.3)) / 3
    close(class_balance_regulariser(LOGITS), expected)
    assert abs(expected - 0.0480771) < 1e-6
    # Zero when the batch's mean prediction is the prior; a prior with a zero class skips it.
    close(class_balance_regulariser(torch.zeros(4, 3)), 0.0)
    prior = torch.tensor([0.5, 0.5, 0.0])
    close(class_balance_regulariser(LOGITS, prior), 0.5 * math.log(0.5 / 0.475) + 0.5 * math.log(0.5 / 0.225))


def test_half_precision_logits_are_computed_in_float32():
    loss = bootstrapping_loss(LOGITS.half(), LABELS, 0.0)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, torch.tensor([1.6094379, 1.3862944]), rtol=0, atol=2e-3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: bootstrap_targets(LOGITS, "medium"), "bootstrap must be one of"),
        (lambda: bootstrap_targets(LOGITS, "soft", temperature=0), "temperature must be > 0"),
        (lambda: class_balance_regulariser(LOGITS, [0.5, 0.6, 0.0]), "summing to 1"),
        (lambda: class_balance_regulariser(LOGITS, [0.5, 0.5]), "3 non-negative class probabilities"),
    ],
)
def test_bad_arguments_say_what_is_accepted(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_detector_mixing_weights_by_hand():
    # Clean shares 0.9 and 0.3: a takes 0.9 / 1.2 = 0.75 of the pair; two surely noisy partners mix evenly.
    weights = detector_mixing_weights(torch.tensor([0.1, 1.0, 0.7]), torch.tensor([0.7, 1.0, 0.1]))
    close(weights, [0.75, 0.5, 0.25])
    assert torch.isfinite(weights).all()


def test_sharpening_temperature_falls_linearly_from_one():
    # The reference's 1 -> 0.001 between epochs 111 and 200.
    assert sharpening_temperature(50, 110, 200) == 1.0
    assert sharpening_temperature(110, 110, 200) == 1.0
    assert math.isclose(sharpening_temperature(155, 110, 200), 1 + (0.001 - 1) * 0.5)
    assert sharpening_temperature(200, 110, 200) == sharpening_temperature(299, 110, 200) == 0.001
    # A temperature near 0 turns the soft target into the hard one.
    logits = torch.tensor([[2.0, 1.0, 0.5]])
    close(bootstrap_targets(logits, "soft", sharpening_temperature(250, 110, 200)), bootstrap_targets(logits, "hard"))
    with pytest.raises(ValueError, match="end after it starts"):
        sharpening_temperature(1, 5, 2)
