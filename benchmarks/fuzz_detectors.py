"""A long property-based run of the detectors' contract, with the counts recorded.

The same strategies and check as ``tests/test_fuzz.py`` (``lnc_experiments.properties``),
with many more generated cases: each detector is fitted on a generated array and read out on
it and on a second one, and must give finite, valid output or a ``ValueError`` that says what
was wrong. Writes ``benchmarks/results/fuzz_detectors.md``.

Run: ``python benchmarks/fuzz_detectors.py --examples 5000``
"""

import argparse
import time
from collections import Counter

import pandas as pd
from hypothesis import HealthCheck, given, settings

from lnc_experiments.properties import DETECTORS, check_contract, values
from lnc_experiments.results import markdown_table, write_results


def run(name, examples):
    tally = Counter()

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(fit_values=values(), new_values=values())
    def contract(fit_values, new_values):
        tally["cases"] += 1
        check_contract(DETECTORS[name], fit_values, new_values, tally)

    start = time.perf_counter()
    contract()
    return tally, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000, help="generated cases per detector")
    args = parser.parse_args()
    rows = []
    for name in DETECTORS:
        tally, seconds = run(name, args.examples)
        rows.append([name, tally["cases"], tally["fitted"], tally["refused at fit"], tally["refused at read-out"], "0", f"{seconds:.0f}"])
        print(name, dict(tally), f"{seconds:.0f} s", flush=True)
    table = markdown_table(pd.DataFrame(
        rows, columns=["detector", "cases run", "fitted", "ValueError at fit", "ValueError at read-out", "contract failures", "seconds"]
    ))
    write_results(
        "fuzz_detectors.md",
        "Property-based fuzzing of the detectors",
        [
            "Each case: a generated array (length 0 to 80; float16/32/64; NumPy array, (n, 1) column, list "
            "or pandas Series; any floats including NaN, +-inf, negatives, subnormals and the largest "
            "values, or all-equal, two distinct values, realistic losses, or realistic losses scaled by "
            "10^-300 to 10^300) to fit on, and a second one to read out on. Passing means: the fit and each "
            "read-out either raise a ValueError whose message names what was wrong, or return finite "
            "probabilities in [0, 1] summing to 1, `predict` equal to `p_noisy > 0.5`, finite "
            "`score_samples` and `score`, and finite weights and bounds. A case that breaks the contract "
            "stops the run with hypothesis's minimal failing example, so a finished run has 0 failures.",
            "",
            "Read-outs are counted per array (two per fitted case).",
            "",
            table,
        ],
    )


if __name__ == "__main__":
    main()
