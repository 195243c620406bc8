"""Property-based tests: the detectors never return garbage, whatever array they are given.

A bounded number of generated cases per detector keeps this fast in CI
(``LNC_FUZZ_EXAMPLES``, default 150); ``benchmarks/fuzz_detectors.py`` runs thousands and
records the counts.
"""

import os

import numpy as np

import pytest
from hypothesis import HealthCheck, given, settings

from lnc_experiments.properties import DETECTORS, check_contract, values

EXAMPLES = int(os.environ.get("LNC_FUZZ_EXAMPLES", "150"))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_valid_output_or_clear_value_error(name):
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(fit_values=values(), new_values=values())
    def contract(fit_values, new_values):
        check_contract(DETECTORS[name], fit_values, new_values)

    contract()


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_cases_fuzzing_found(name):
    """Arrays that once broke the contract: a spread that overflows a double, and a read-out far
    outside the fit's tiny bounds (both gave NaN probabilities before the normalisation fix)."""
    tiny = np.array([2.4471580e-25, 2.7561691e-25, 2.5419601e-25, 2.2857324e-25, 2.6446379e-25], dtype=np.float32)
    check_contract(DETECTORS[name], tiny, np.array([0.0, 1.0000000000000001e300, 1.79e308, -1.79e308]))
    huge = np.array([0.0] * 19 + [1.7976931348623157e308, -9.97920155e291])
    check_contract(DETECTORS[name], huge, huge[::-1])
