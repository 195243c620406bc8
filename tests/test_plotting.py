"""The plots render headless, draw what they claim, and save whole files."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lnc_sklearn import BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector  # noqa: E402
from lnc_sklearn.plotting import plot_history, plot_loss_mixture, plot_posterior  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def losses_and_mask(digits_loss_trace):
    losses_by_epoch, changed = digits_loss_trace
    return losses_by_epoch[1], changed


def _lines(fig):
    return {line.get_label(): line.get_data() for line in fig.axes[0].get_lines()}


@pytest.mark.parametrize(
    "detector", [BetaMixtureNoiseDetector(), GaussianMixtureNoiseDetector(random_state=0)], ids=["beta", "gaussian"]
)
def test_drawn_densities_integrate_to_the_fitted_weights(losses_and_mask, detector):
    losses, changed = losses_and_mask
    detector.fit(losses)
    fig = plot_loss_mixture(detector, losses, noise_mask=changed)
    lines = _lines(fig)
    areas = {name: np.trapezoid(y, x) for name, (x, y) in lines.items()}
    assert areas["clean component"] == pytest.approx(detector.weights_[0], abs=1e-3)
    assert areas["noisy component"] == pytest.approx(detector.weights_[1], abs=1e-3)
    assert areas["mixture"] == pytest.approx(1.0, abs=1e-3)
    # The bars (stacked: the top layer's heights are the totals) have area 1 as well.
    bars = [patch for patch in fig.axes[0].patches]
    tops = {}
    for bar in bars:
        tops[bar.get_x()] = max(tops.get(bar.get_x(), 0.0), bar.get_y() + bar.get_height())
    width = bars[0].get_width()
    assert sum(tops.values()) * width == pytest.approx(1.0, abs=1e-9)


def test_histogram_without_mask_and_into_given_axes(losses_and_mask):
    losses, _ = losses_and_mask
    detector = BetaMixtureNoiseDetector().fit(losses)
    fig, ax = plt.subplots()
    assert plot_loss_mixture(detector, losses, ax=ax) is fig
    heights = [bar.get_height() for bar in ax.patches]
    assert sum(heights) * ax.patches[0].get_width() == pytest.approx(1.0)


def test_posterior_curve_is_the_detectors(losses_and_mask, tmp_path):
    losses, _ = losses_and_mask
    detector = BetaMixtureNoiseDetector().fit(losses)
    fig = plot_posterior(detector, losses, path=tmp_path / "posterior.png")
    x, y = _lines(fig)["p(noisy)"]
    np.testing.assert_allclose(y, detector.predict_proba(x)[:, 1])
    assert np.all(np.diff(y) >= 0)
    raw_x, raw_y = _lines(fig)["raw mixture posterior"]
    raw = BetaMixtureNoiseDetector(monotone=False).fit(losses)
    np.testing.assert_allclose(raw_y, raw.predict_proba(raw_x)[:, 1])
    assert (tmp_path / "posterior.png").read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in tmp_path.iterdir()] == ["posterior.png"]  # no temporary left behind


def test_history_plot_and_its_errors(tmp_path):
    history = pd.DataFrame({"epoch": [0, 1, 2], "noise_fraction": [0.5, 0.45, 0.41], "auc": [0.8, 0.9, 0.93]})
    fig = plot_history(history, true_noise_fraction=0.4, path=tmp_path / "history.png")
    lines = _lines(fig)
    np.testing.assert_array_equal(lines["estimated noise fraction"][1], history["noise_fraction"])
    np.testing.assert_array_equal(lines["ROC-AUC (true mask)"][1], history["auc"])
    assert (tmp_path / "history.png").read_bytes()[:8] == PNG_MAGIC
    counted = history.assign(noise_rate=[0.3, 0.38, 0.4])
    lines = _lines(plot_history(counted))
    np.testing.assert_array_equal(lines["estimated noise rate"][1], counted["noise_rate"])
    np.testing.assert_array_equal(lines["mean p(noisy) (training weights)"][1], counted["noise_fraction"])
    with pytest.raises(ValueError, match="missing \\['noise_fraction'\\]"):
        plot_history(pd.DataFrame({"epoch": [0]}))
    with pytest.raises(ValueError, match="empty"):
        plot_history(history.iloc[:0])


def test_a_failed_save_leaves_no_file(losses_and_mask, tmp_path):
    losses, _ = losses_and_mask
    detector = BetaMixtureNoiseDetector().fit(losses)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_posterior(detector, path=tmp_path / "missing" / "p.png")
    with pytest.raises(ValueError):  # matplotlib cannot write this format
        plot_posterior(detector, path=tmp_path / "p.unknownformat")
    assert list(tmp_path.iterdir()) == []
