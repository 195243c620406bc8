"""The pandas report and its summary: columns, order, ranks, and clear errors."""

import numpy as np
import pandas as pd
import pytest

from lnc_sklearn import BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector
from lnc_sklearn.report import noise_report, report_from_probabilities
from lnc_sklearn.summary import noise_summary


@pytest.fixture
def digits(digits_loss_trace):
    losses_by_epoch, changed = digits_loss_trace
    losses = losses_by_epoch[1]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, losses.size)
    probs = rng.dirichlet(np.ones(10), losses.size)
    return losses, labels, probs, changed


def test_rows_follow_the_input_order_with_cleanlabs_columns(digits):
    losses, labels, probs, changed = digits
    detector = BetaMixtureNoiseDetector().fit(losses)
    report = noise_report(losses, detector, labels=labels, pred_probs=probs, noise_mask=changed)
    assert list(report.index) == list(range(losses.size))
    np.testing.assert_array_equal(report["loss"], losses)
    np.testing.assert_array_equal(report["given_label"], labels)
    np.testing.assert_array_equal(report["predicted_label"], probs.argmax(axis=1))
    np.testing.assert_array_equal(report["given_label_probability"], probs[np.arange(losses.size), labels])
    np.testing.assert_allclose(report["p_noisy"], detector.predict_proba(losses)[:, 1])
    np.testing.assert_allclose(report["label_quality"], 1 - report["p_noisy"])
    assert (report["is_label_issue"] == report["is_noisy"]).all()
    # is_noisy is the detector's count: the noise_rate_ share of samples with the highest losses
    np.testing.assert_array_equal(report["is_noisy"], detector.predict(losses).astype(bool))
    assert report["is_noisy"].sum() == round(detector.noise_rate_ * losses.size) > 0
    assert report.loc[report["is_noisy"], "loss"].min() > report.loc[~report["is_noisy"], "loss"].max()
    assert report.attrs["noise_count"].rate == detector.noise_rate_
    with_threshold = noise_report(losses, detector, threshold=0.5)
    assert (with_threshold["is_noisy"] == (with_threshold["p_noisy"] > 0.5)).all()
    np.testing.assert_array_equal(report["noise_mask"], changed)


def test_rank_is_by_p_noisy_then_loss():
    values = np.array([0.1, 3.0, 2.0, 5.0, 0.2, 2.5])
    p_noisy = np.array([0.1, 0.9, 0.9, 0.3, 0.1, 0.9])  # ties broken by the loss, then position
    report = report_from_probabilities(values, p_noisy)
    np.testing.assert_array_equal(report["rank"], [6, 1, 3, 4, 5, 2])
    sorted_report = report_from_probabilities(values, p_noisy, sort=True)
    assert list(sorted_report.index) == [1, 5, 2, 3, 4, 0]  # positions in the input are kept
    np.testing.assert_array_equal(sorted_report["rank"], np.arange(1, 7))


def test_with_a_monotone_posterior_ranks_follow_the_loss(digits):
    losses = digits[0]
    report = noise_report(losses)
    # Values beyond the fit's bounds are clamped and share one p_noisy; the loss breaks the ties.
    assert report["p_noisy"].duplicated().sum() > 100
    np.testing.assert_array_equal(np.argsort(report["rank"].to_numpy()), np.argsort(-losses, kind="stable"))


def test_exact_ties_keep_the_input_order():
    report = report_from_probabilities(np.ones(4), np.full(4, 0.7))
    np.testing.assert_array_equal(report["rank"], [1, 2, 3, 4])


def test_missing_probabilities_are_not_flagged_and_rank_last():
    report = report_from_probabilities(np.array([1.0, np.inf, 0.5]), np.array([0.6, np.nan, 0.2]))
    np.testing.assert_array_equal(report["rank"], [1, 3, 2])
    np.testing.assert_array_equal(report["is_noisy"], [True, False, False])


def test_an_unfitted_detector_is_fitted_on_a_copy(digits):
    losses = digits[0]
    detector = GaussianMixtureNoiseDetector(random_state=0)
    report = noise_report(losses, detector)
    assert not hasattr(detector, "weights_")
    expected = GaussianMixtureNoiseDetector(random_state=0).fit(losses).predict_proba(losses)[:, 1]
    np.testing.assert_allclose(report["p_noisy"], expected)


def test_confidences_rank_low_confidence_first_and_give_a_loss():
    rng = np.random.default_rng(1)
    confidence = np.concatenate([rng.beta(8, 1, 300), rng.beta(1, 6, 100)])
    detector = BetaMixtureNoiseDetector(input_type="confidence").fit(confidence)
    report = noise_report(confidence, detector)
    np.testing.assert_allclose(report["loss"], -np.log(confidence))
    np.testing.assert_array_equal(report["confidence"], confidence)
    assert report.loc[report["rank"] == 1, "confidence"].item() == confidence.min()


def test_class_names_items_and_history():
    values = np.array([0.1, 2.0, 0.3, 1.5, 0.2])
    history = np.array([[0.1, 0.9, 0.2, 0.4, 0.1], [0.2, 0.7, 0.1, 0.8, 0.3]])
    report = report_from_probabilities(
        values,
        history[-1],
        labels=[0, 1, 0, 2, 1],
        predicted_labels=[0, 0, 0, 1, 1],
        items=["a.png", "b.png", "c.png", "d.png", "e.png"],
        class_names=["cat", "dog", "eel"],
        p_noisy_history=history,
    )
    assert list(report.columns[:5]) == ["item", "given_label", "given_class", "predicted_label", "predicted_class"]
    assert list(report["given_class"]) == ["cat", "dog", "cat", "eel", "dog"]
    np.testing.assert_allclose(report["mean_p_noisy"], history.mean(axis=0))
    np.testing.assert_allclose(report["epochs_flagged"], [0, 1, 0, 0.5, 0])


def test_without_labels_the_columns_are_there_and_missing():
    report = report_from_probabilities(np.array([0.1, 0.2]), np.array([0.3, 0.4]))
    assert report["given_label"].isna().all() and report["predicted_label"].isna().all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"values": [0.1, np.nan, 0.3, 0.2, 0.5, 0.4]}, "NaN or infinite"),
        ({"labels": [0, 1]}, "labels has 2 entries but there are 6 samples"),
        ({"pred_probs": np.ones((6,))}, "pred_probs must have shape"),
        ({"labels": [0.5, 1, 0, 1, 0, 1]}, "class indices or names"),
        ({"values": np.ones((6, 2))}, "one value per sample"),
        ({"values": ["a"] * 6}, "must be numeric"),
        ({"p_noisy_history": np.ones((2, 5))}, "p_noisy_history must have shape"),
        ({"class_names": ["a"], "labels": [0, 1, 0, 1, 0, 1]}, "there are 1 class names"),
    ],
)
def test_bad_input_says_what_was_wrong(kwargs, message):
    arguments = {"values": [0.1, 0.2, 0.3, 2.0, 2.5, 0.15], **kwargs}
    with pytest.raises(ValueError, match=message):
        noise_report(arguments.pop("values"), BetaMixtureNoiseDetector(percentiles=(0, 100)), **arguments)


def test_summary_counts_by_class_and_confused_pairs():
    report = report_from_probabilities(
        np.array([3.0, 2.5, 2.8, 0.1, 0.2, 2.9, 0.3]),
        np.array([0.9, 0.8, 0.95, 0.1, 0.2, 0.7, 0.6]),
        labels=[0, 0, 1, 1, 2, 0, 2],
        predicted_labels=[1, 1, 0, 1, 2, 2, 2],
        class_names=["cat", "dog", "eel"],
        noise_mask=[1, 1, 1, 0, 0, 0, 0],
    )
    summary = noise_summary(report)
    assert summary.n_samples == 7 and summary.n_flagged == 5
    assert summary.noise_fraction == pytest.approx(np.mean([0.9, 0.8, 0.95, 0.1, 0.2, 0.7, 0.6]))
    assert summary.true_noise_fraction == pytest.approx(3 / 7)
    assert list(summary.per_class["n_samples"]) == [3, 2, 2]
    assert list(summary.per_class["n_flagged"]) == [3, 1, 1]
    assert summary.per_class.loc[0, "noise_fraction"] == pytest.approx(0.8)
    # flagged with prediction != label: (0->1) twice, (1->0) once, (0->2) once; (2->2) is not a confusion
    pairs = summary.confused_pairs
    assert list(zip(pairs["given_label"], pairs["predicted_label"], pairs["n_suspects"])) == [(0, 1, 2), (1, 0, 1), (0, 2, 1)]
    assert list(pairs["given_class"]) == ["cat", "dog", "cat"] and list(pairs["predicted_class"]) == ["dog", "cat", "eel"]
    text = str(summary)
    assert "estimated noise fraction 0.607 (true 0.429); 5 flagged" in text and "most confused pairs" in text


def test_summary_needs_a_report():
    with pytest.raises(ValueError, match="lacks the column"):
        noise_summary(pd.DataFrame({"loss": [1.0]}))
