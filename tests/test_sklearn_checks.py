"""scikit-learn's own estimator checks, run twice: as scikit-learn runs them (the detectors
declare 1-D input, so the checks hand them ``X[:, 0]``), and on ``(n, 1)`` columns, the other
input the detectors take. Then the properties those checks cannot reach.

Twelve checks go on to index the 1-D ``X`` they built as 2-D (``X[:, 0]``, ``X.shape[1]``) or
turn a 1-D sparse array into LIL, which scipy refuses: they fail inside scikit-learn before
reaching the estimator, so they run on columns only (and a test asserts that on 1-D input they
still break in scikit-learn's code). Three checks fail for a reason inherent to an estimator of
one value per sample; each asserts its own failure
(``test_checks_that_cannot_pass_for_one_value_per_sample``).
"""

from functools import partial

import numpy as np
import pandas as pd
import pytest
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import estimator_checks_generator

from lnc_sklearn import BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector

ESTIMATORS = [BetaMixtureNoiseDetector(), GaussianMixtureNoiseDetector(random_state=0)]
ONLY_ON_COLUMNS = {
    "check_dont_overwrite_parameters", "check_n_features_in_after_fitting", "check_dtype_object",
    "check_estimator_sparse_array", "check_f_contiguous_array_estimator", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_fit2d_1sample", "check_fit2d_1feature", "check_dict_unchanged",
    "check_n_features_in", "check_fit2d_predict1d",
}
# check name -> (the exception the check raises on a column, what it says, why it cannot pass)
INHERENT = {
    "check_fit1d": (AssertionError, "Did not raise", "it demands that 1-D X be refused; 1-D losses are the primary input"),
    "check_fit2d_predict1d": (AssertionError, "Did not raise", "it demands that predict refuse 1-D X after a 2-D fit; both are accepted"),
    "check_n_features_in_after_fitting": (IndexError, "index 1 is out of bounds", "it drops a second feature that one column lacks"),
}


def _name(check):
    while isinstance(check, partial):
        check = check.func
    return check.__name__


def _as_column(estimator, X, X_test=None, kernel=None):
    """scikit-learn's ``_enforce_estimator_tags_X`` for these detectors, giving an (n, 1) column
    instead of the 1-D ``X[:, 0]``."""
    column = lambda a: a[:, :1] if getattr(a, "ndim", 1) == 2 else a  # noqa: E731
    return column(X) if X_test is None else (column(X), column(X_test))


def _cases(columns):
    for estimator in ESTIMATORS:
        for est, check in estimator_checks_generator(estimator, legacy=True, mark=None):
            name = _name(check)
            if name in INHERENT or (not columns and name in ONLY_ON_COLUMNS):  # asserted below
                continue
            yield pytest.param(est, check, id=f"{type(est).__name__}-{name}")


@pytest.mark.parametrize("estimator, check", list(_cases(columns=False)))
def test_sklearn_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator, check", list(_cases(columns=True)))
def test_sklearn_checks_on_columns(estimator, check, monkeypatch):
    monkeypatch.setattr(estimator_checks, "_enforce_estimator_tags_X", _as_column)
    check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("name", sorted(ONLY_ON_COLUMNS))
def test_checks_left_to_the_column_run_fail_inside_scikit_learn_on_1d_input(estimator, name):
    """On the 1-D ``X`` they build, these checks break in scikit-learn's (or scipy's) own code,
    before the estimator could answer. Should scikit-learn fix one, this fails: move it back."""
    check = next(c for _, c in estimator_checks_generator(estimator, legacy=True, mark=None) if _name(c) == name)
    with pytest.raises((IndexError, ValueError)) as raised:
        check(estimator)
    innermost = raised.traceback[-1].path
    assert "lnc_sklearn" not in str(innermost), f"{name} failed in lnc's own code: {innermost}"


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("name", sorted(INHERENT))
def test_checks_that_cannot_pass_for_one_value_per_sample(estimator, name, monkeypatch):
    monkeypatch.setattr(estimator_checks, "_enforce_estimator_tags_X", _as_column)
    check = next(c for _, c in estimator_checks_generator(estimator, legacy=True, mark=None) if _name(c) == name)
    error, message, _why = INHERENT[name]
    with pytest.raises(error, match=message):
        check(estimator)


def _column(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.gamma(1.0, 0.3, n - n // 4), rng.normal(3, 0.5, n // 4)])[:, None]


@pytest.fixture(params=ESTIMATORS, ids=lambda e: type(e).__name__)
def detector(request):
    from sklearn.base import clone

    return clone(request.param)


def test_sample_order_and_subset_invariance(detector):
    X = _column()
    detector.fit(X)
    perm = np.random.default_rng(1).permutation(len(X))
    for method in ["predict", "predict_proba", "score_samples"]:
        full = getattr(detector, method)(X)
        np.testing.assert_allclose(getattr(detector, method)(X[perm]), full[perm])
        np.testing.assert_allclose(getattr(detector, method)(X[:10]), full[:10])


def test_n_features_in_and_feature_names(detector):
    X = _column()
    assert detector.fit(X).n_features_in_ == 1
    frame = pd.DataFrame({"loss": X[:, 0]})
    detector.fit(frame)
    assert list(detector.feature_names_in_) == ["loss"]
    # fitted on a column, predicts on a 1-D array as well
    np.testing.assert_allclose(detector.predict_proba(X[:, 0]), detector.predict_proba(frame))


def test_fit_does_not_change_its_input_or_params(detector):
    X = _column()
    X_before, params_before = X.copy(), detector.get_params()
    detector.fit(X)
    np.testing.assert_array_equal(X, X_before)
    assert detector.get_params() == params_before
    state = {k: np.copy(v) for k, v in vars(detector).items() if isinstance(v, np.ndarray)}
    detector.predict_proba(X)
    for key, value in state.items():
        np.testing.assert_array_equal(getattr(detector, key), value)


def test_f_contiguous_and_float32_input(detector):
    X = _column()
    expected = detector.fit(X).predict_proba(X)
    np.testing.assert_allclose(detector.fit(np.asfortranarray(X)).predict_proba(X), expected)
    np.testing.assert_allclose(
        detector.fit(X.astype(np.float32)).predict_proba(X), expected, atol=1e-5
    )


@pytest.mark.parametrize("n", [1, 4])
def test_too_few_samples_is_a_clear_error(detector, n):
    with pytest.raises(ValueError, match=f"{n} sample"):
        detector.fit(_column()[:n])


def test_several_columns_is_a_clear_error(detector):
    with pytest.raises(ValueError, match=r"one value per sample .* shape \(200, 2\)"):
        detector.fit(np.hstack([_column(), _column()]))
    detector.fit(_column())
    with pytest.raises(ValueError, match="1 features"):
        detector.predict(np.hstack([_column(), _column()]))


def test_object_and_string_input_is_a_clear_error(detector):
    with pytest.raises((ValueError, TypeError)):
        detector.fit(np.array([{"a": 1}] * 10, dtype=object))
    with pytest.raises(ValueError, match="could not convert|convert"):
        detector.fit(["a"] * 10)


def test_sparse_input_is_rejected(detector):
    from scipy import sparse

    with pytest.raises(TypeError, match="[Ss]parse"):
        detector.fit(sparse.csr_matrix(_column()))
