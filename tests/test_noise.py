import numpy as np
import pytest

from lnc_sklearn import CIFAR10_ASYMMETRIC, asymmetric_noise, symmetric_noise

Y = np.repeat(np.arange(10), 2000)  # 20,000 labels, 10 balanced classes


def test_symmetric_paper_convention_rate():
    # Picked with probability r, relabelled among all C classes: r (C - 1) / C wrong.
    noisy, changed = symmetric_noise(Y, 0.8, random_state=0)
    assert changed.mean() == pytest.approx(0.8 * 9 / 10, abs=0.01)
    np.testing.assert_array_equal(changed, noisy != Y)


def test_symmetric_excluding_true_class_exact_count():
    noisy, changed = symmetric_noise(Y, 0.5, include_true_class=False, exact=True, random_state=0)
    assert changed.sum() == 10000
    # the new labels are spread evenly over the nine other classes
    for c in range(10):
        counts = np.bincount(noisy[changed & (Y == c)], minlength=10)
        assert counts[c] == 0
        assert counts[np.arange(10) != c].min() > 0.7 * counts.sum() / 9


def test_symmetric_exact_including_true_class():
    noisy, changed = symmetric_noise(Y, 0.5, exact=True, random_state=0)
    # exactly 10,000 picked; about a tenth of them drew their own class again
    assert 10000 * 0.85 < changed.sum() < 10000


def test_symmetric_per_sample_excluding_true_class():
    noisy, changed = symmetric_noise(Y, 0.3, include_true_class=False, random_state=0)
    assert changed.mean() == pytest.approx(0.3, abs=0.01)


def test_seeded_and_input_untouched():
    y = Y.copy()
    a = symmetric_noise(y, 0.4, random_state=3)
    b = symmetric_noise(y, 0.4, random_state=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(y, Y)
    assert not np.array_equal(a[0], symmetric_noise(y, 0.4, random_state=4)[0])


def test_zero_and_full_rates():
    noisy, changed = symmetric_noise(Y, 0.0, random_state=0)
    assert not changed.any()
    noisy, changed = symmetric_noise(Y, 1.0, include_true_class=False, random_state=0)
    assert changed.all()


def test_asymmetric_cifar10_pairs():
    noisy, changed = asymmetric_noise(Y, 0.4, CIFAR10_ASYMMETRIC, random_state=0)
    for source, target in CIFAR10_ASYMMETRIC.items():
        members = Y == source
        assert set(noisy[members & changed]) == {target}
        assert changed[members].mean() == pytest.approx(0.4, abs=0.04)
    untouched = ~np.isin(Y, list(CIFAR10_ASYMMETRIC))
    assert not changed[untouched].any()


def test_asymmetric_exact_per_class():
    noisy, changed = asymmetric_noise(Y, 0.25, {0: 1}, exact=True, random_state=0)
    assert changed.sum() == 500 and (noisy[changed] == 1).all()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: symmetric_noise(Y, 1.5), "rate"),
        (lambda: symmetric_noise(Y.astype(float), 0.2), "integer class indices"),
        (lambda: symmetric_noise(-Y - 1, 0.2), "non-negative"),
        (lambda: symmetric_noise(Y, 0.2, n_classes=5), "out of range"),
        (lambda: symmetric_noise(np.zeros(10, int), 0.2, n_classes=1), "two classes"),
        (lambda: asymmetric_noise(Y, -0.1, CIFAR10_ASYMMETRIC), "rate"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
