"""What every noise detector must do on any input, as hypothesis strategies and one check.

Shared by ``tests/test_fuzz.py`` (a bounded run in CI) and ``benchmarks/fuzz_detectors.py``
(thousands of cases, recorded). The contract: each call either returns finite, valid output
(probabilities in [0, 1] whose rows sum to 1, ``predict`` agreeing with ``predict_proba > 0.5``
or, for the count, flags that take every value at least as noisy as one flagged, a noise rate in
[0, 1], finite log-densities) or raises a ``ValueError`` whose message says what was wrong.
"""

import warnings
from collections import Counter

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from lnc_sklearn import BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector

DETECTORS = {
    "beta": lambda: BetaMixtureNoiseDetector(),
    "beta-converged-kmeans": lambda: BetaMixtureNoiseDetector(max_iter=200, tol=1e-6, init_params="kmeans", anchored=False),
    "beta-confidence": lambda: BetaMixtureNoiseDetector(input_type="confidence", percentiles=(0, 100)),
    "gaussian": lambda: GaussianMixtureNoiseDetector(random_state=0),
}
DTYPES = (np.float16, np.float32, np.float64)
# Words a useful error message names: what was wrong.
EXPLAINS = ("value", "sample", "shape", "finite", "NaN", "infinity", "equal", "array", "dtype", "column", "range")


def _floats(dtype):
    width = {np.float16: 16, np.float32: 32, np.float64: 64}[dtype]
    return st.floats(width=width, allow_nan=True, allow_infinity=True)


@st.composite
def values(draw):
    """A 1-D input of any length (0 up), dtype and container, with the awkward cases weighted in."""
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, 80))
    shape = draw(st.sampled_from(["any", "any", "equal", "two", "bimodal", "scaled"]))
    if shape == "any":  # NaN, +-inf, negatives, subnormals, the largest floats
        data = draw(st.lists(_floats(dtype), min_size=n, max_size=n))
    elif shape == "equal":
        data = [draw(_floats(dtype))] * n
    elif shape == "two":
        a, b = draw(_floats(dtype)), draw(_floats(dtype))
        data = [a if draw(st.booleans()) else b for _ in range(n)]
    else:  # realistic losses, optionally at a huge or tiny scale
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        k = rng.integers(0, n + 1)
        data = np.concatenate([rng.gamma(1.0, 0.2, n - k), rng.normal(2.5, 0.4, k)])
        if shape == "scaled":
            data = data * 10.0 ** draw(st.integers(-300, 300))
        data = list(data)
    array = np.asarray(data, dtype=np.float64)
    with np.errstate(over="ignore"):
        array = array.astype(dtype)
    container = draw(st.sampled_from(["array", "column", "list", "series"]))
    if container == "column":
        return array.reshape(-1, 1)
    if container == "list":
        return array.tolist()
    if container == "series":
        return pd.Series(array)
    return array


def _explains(error):
    message = str(error)
    return len(message) > 20 and any(word.lower() in message.lower() for word in EXPLAINS)


def check_contract(make_detector, fit_values, new_values, tally=None):
    """Fit on ``fit_values`` and read out on both arrays; assert the contract. ``tally`` (a
    Counter) counts what happened: fitted, refused at fit, refused at read-out."""
    tally = tally if tally is not None else Counter()
    detector = make_detector()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate-fit and convergence warnings are allowed
        try:
            detector.fit(fit_values)
        except ValueError as error:
            assert _explains(error), f"unhelpful error from fit: {error!r}"
            tally["refused at fit"] += 1
            return tally
        tally["fitted"] += 1
        for values_ in (fit_values, new_values):
            try:
                proba = detector.predict_proba(values_)
            except ValueError as error:
                assert _explains(error), f"unhelpful error from predict_proba: {error!r}"
                tally["refused at read-out"] += 1
                continue
            n = len(values_)
            assert proba.shape == (n, 2)
            assert np.all(np.isfinite(proba)), f"non-finite probabilities for {values_!r}"
            assert np.all((proba >= 0) & (proba <= 1))
            np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
            flags = detector.predict(values_)
            if detector.noise_count_ is None:  # the mixture's reading
                np.testing.assert_array_equal(flags, (proba[:, 1] > 0.5).astype(int))
            else:  # the count: a flagged value's noisier neighbours are flagged too
                x = np.asarray(values_, dtype=np.float64).ravel()
                noisiness = x if detector.input_type == "loss" else -x
                if flags.any():
                    np.testing.assert_array_equal(flags, (noisiness >= noisiness[flags.astype(bool)].min()).astype(int))
            assert np.all(np.isfinite(detector.score_samples(values_))), "non-finite log-density"
            assert np.isfinite(detector.score(values_))
            assert 0 <= detector.noise_rate_ <= 1, f"noise_rate_ {detector.noise_rate_!r}"
            for name in ("weights_", "bounds_"):
                assert np.all(np.isfinite(getattr(detector, name))), f"non-finite {name}"
    return tally
