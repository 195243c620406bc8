"""Property-based tests: the detectors never return garbage, whatever array they are given.

A bounded number of generated cases per detector keeps this fast in CI
(``LNC_FUZZ_EXAMPLES``, default 150); ``benchmarks/fuzz_detectors.py`` runs thousands and
records the counts.
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings

from detector_properties import DETECTORS, check_contract, values

EXAMPLES = int(os.environ.get("LNC_FUZZ_EXAMPLES", "150"))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_valid_output_or_clear_value_error(name):
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(fit_values=values(), new_values=values())
    def contract(fit_values, new_values):
        check_contract(DETECTORS[name], fit_values, new_values)

    contract()
