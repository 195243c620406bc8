"""Fit time and peak memory of the detectors against the reference algorithm.

Fits the same loss arrays (N = 5e4, 1e6, 1e7) with
  (a) a straightforward re-implementation of the reference (``reference_bmm.py``:
      ``scipy.stats.beta.pdf`` in the E-step, 10 iterations),
  (b) ``BetaMixtureNoiseDetector(max_iter=10, tol=0, anchored=False, rate_estimate="mixture")``,
  (c0) ``BetaMixtureNoiseDetector(rate_estimate="mixture")`` (the default before the log-odds
      noise count: (b)'s start and schedule, anchored M-steps),
  (c) ``BetaMixtureNoiseDetector()`` (the default: (c0) and the log-odds noise count),
  (d) ``GaussianMixtureNoiseDetector(rate_estimate="mixture")`` (DivideMix's settings),
  (e) ``BetaMixtureNoiseDetector(max_iter=1000, tol=1e-6)`` (EM to convergence),
all in one process, and reports seconds (best of ``--repeats``), peak memory traced during
the fit in multiples of the input's size, and the speed ratio against (a). It also checks
that (b) gives the reference's parameters, and gives the default's time as a multiple of
(c0)'s (what the noise count costs).

Run: ``python benchmarks/detector_speed.py [--sizes 50000 1000000 10000000] [--repeats 3]``
"""

import argparse
import time
import tracemalloc
import warnings

import numpy as np

from lnc_experiments.reference_bmm import reference_bmm_fit
from lnc_experiments.results import write_results
from lnc_sklearn import BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector  # noqa: E402


def synthetic_losses(n, noise=0.4, seed=0):
    """Cross-entropy-like losses: a clean mode piled up near zero, a broad noisy mode."""
    rng = np.random.default_rng(seed)
    n_noisy = int(noise * n)
    clean = rng.gamma(0.7, 0.25, n - n_noisy)
    noisy = rng.gamma(6.0, 0.45, n_noisy)
    return rng.permutation(np.concatenate([clean, noisy]))


METHODS = {
    "(a) reference (scipy.stats, 10 it.)": lambda x: reference_bmm_fit(x),
    "(b) lnc, paper configuration": lambda x: BetaMixtureNoiseDetector(
        max_iter=10, tol=0, anchored=False, rate_estimate="mixture"
    ).fit(x),
    "(c0) lnc, default before the noise count": lambda x: BetaMixtureNoiseDetector(rate_estimate="mixture").fit(x),
    "(c) lnc, default": lambda x: BetaMixtureNoiseDetector().fit(x),
    "(d) Gaussian mixture (DivideMix)": lambda x: GaussianMixtureNoiseDetector(
        random_state=0, rate_estimate="mixture"
    ).fit(x),
    "(e) lnc, EM to convergence": lambda x: BetaMixtureNoiseDetector(
        max_iter=1000, tol=1e-6
    ).fit(x),
}


def measure(fit, x, repeats):
    """Best-of-``repeats`` seconds of ``fit(x)`` without tracing, then one traced fit for the
    peak memory (tracemalloc slows every allocation, so it would distort the times)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit(x)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return min(times), peak, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rows = [
        "| N | method | seconds | peak memory (x input) | speed-up vs (a) | iterations |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    mismatch, count_cost = [], []
    for n in args.sizes:
        x = synthetic_losses(n)
        repeats = args.repeats if n <= 1_000_000 else 1
        baseline = None
        for name, fit in METHODS.items():
            seconds, peak, result = measure(fit, x, repeats)
            if name.startswith("(c0)"):
                before = seconds
            if name.startswith("(c)"):
                count_cost.append((n, seconds / before))
            if baseline is None:
                baseline, reference = seconds, result
                iterations = 10
            else:
                iterations = result.n_iter_
            if name.startswith("(b)"):
                alphas, betas, weights, _ = reference
                order = np.argsort(alphas / (alphas + betas))
                ours = np.r_[result.alphas_, result.betas_, result.weights_]
                theirs = np.r_[alphas[order], betas[order], weights[order]]
                mismatch.append((n, float(np.max(np.abs(ours - theirs) / np.abs(theirs)))))
            line = (
                f"| {n:.0e} | {name} | {seconds:.3f} | {peak / x.nbytes:.1f} | "
                f"{baseline / seconds:.1f}x | {iterations} |"
            )
            rows.append(line)
            print(line, flush=True)
    notes = [
        "",
        "Losses: synthetic cross-entropy-like values (60% Gamma(0.7, 0.25) clean, 40% "
        "Gamma(6, 0.45) noisy), the same array for every method. Seconds: best of "
        f"{args.repeats} fits (one fit at N > 1e6), timed without tracing. Peak memory: the most memory "
        "numpy and Python allocated during one more fit (tracemalloc, which would slow the timed fits), "
        "divided by the input array's size (8 bytes a value).",
        "",
        "Largest relative difference of (b)'s parameters from (a)'s: "
        + ", ".join(f"N={n:.0e}: {d:.1e}" for n, d in mismatch),
        "",
        "The default's fit time as a multiple of (c0)'s (the cost of the log-odds noise count, "
        "measured in the same process): " + ", ".join(f"N={n:.0e}: {r:.2f}x" for n, r in count_cost),
    ]
    path = write_results("detector_speed.md", "Detector fit speed and memory", rows + notes)
    print("\n".join(notes))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
