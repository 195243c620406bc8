"""Fit time and peak memory of the detectors against the reference algorithm.

Fits the same loss arrays (N = 5e4, 1e6, 1e7; 10 classes, 20% of the labels wrong) with
  (a) a straightforward re-implementation of the reference (``reference_bmm.py``:
      ``scipy.stats.beta.pdf`` in the E-step, 10 iterations),
  (b) ``BetaMixtureNoiseDetector(max_iter=10, tol=0, anchored=False, rate_estimate="mixture")``,
  (b0) the same with lnc as it was before the count gained its interval (``--before``),
  (c0) ``BetaMixtureNoiseDetector()`` before (the default as users had it, losses only),
  (c) ``BetaMixtureNoiseDetector()`` now, on the losses alone,
  (c1) the same with the labels (``fit(losses, y=labels)``),
  (c2) the same with the labels and the predicted probabilities (``pred_probs``, 10 columns),
  (d) ``GaussianMixtureNoiseDetector(rate_estimate="mixture")`` (DivideMix's settings),
  (e) ``BetaMixtureNoiseDetector(max_iter=1000, tol=1e-6)`` (EM to convergence),
all in one process (the version before imported from git beside today's), and reports
seconds (best of ``--repeats``), peak memory traced during the fit in multiples of the
losses' size, and the speed ratio against (a). It checks that (b) gives the reference's
parameters, and gives (c), (c1) and (c2) as multiples of (c0)'s time.

Run: ``python benchmarks/detector_speed.py [--sizes 50000 1000000 10000000] [--repeats 3]``
"""

import argparse
import time
import tracemalloc
import warnings

import numpy as np

from lnc_experiments.before import load_before
from lnc_experiments.reference_bmm import reference_bmm_fit
from lnc_experiments.results import write_results
from lnc_sklearn import BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector  # noqa: E402

PAPER = dict(max_iter=10, tol=0, anchored=False, rate_estimate="mixture")


def synthetic_case(n, n_classes=10, noise=0.2, seed=0):
    """A model's predicted probabilities for ``n`` samples (its true class favoured, by a random
    margin), labels with ``noise`` of them moved to another class, and the labels' losses."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, n_classes, n)
    logits = rng.normal(0, 1, (n, n_classes)).astype(np.float32)
    logits[np.arange(n), true] += rng.gamma(4.0, 1.0, n).astype(np.float32)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    labels = true.copy()
    wrong = rng.random(n) < noise
    labels[wrong] = (true[wrong] + rng.integers(1, n_classes, int(wrong.sum()))) % n_classes
    losses = -np.log(np.maximum(probs[np.arange(n), labels].astype(np.float64), 1e-12))
    return losses, labels, probs


def methods(before):
    return {
        "(a) reference (scipy.stats, 10 it.)": lambda x, y, p: reference_bmm_fit(x),
        "(b) lnc, paper configuration": lambda x, y, p: BetaMixtureNoiseDetector(**PAPER).fit(x),
        "(b0) lnc before, paper configuration": lambda x, y, p: before.BetaMixtureNoiseDetector(**PAPER).fit(x),
        "(c0) lnc before, default (losses)": lambda x, y, p: before.BetaMixtureNoiseDetector().fit(x),
        "(c) lnc, default (losses)": lambda x, y, p: BetaMixtureNoiseDetector().fit(x),
        "(c1) lnc, default (losses, labels)": lambda x, y, p: BetaMixtureNoiseDetector().fit(x, y),
        "(c2) lnc, default (losses, labels, pred_probs)": lambda x, y, p: BetaMixtureNoiseDetector().fit(
            x, y, pred_probs=p),
        "(d) Gaussian mixture (DivideMix)": lambda x, y, p: GaussianMixtureNoiseDetector(
            random_state=0, rate_estimate="mixture").fit(x),
        "(e) lnc, EM to convergence": lambda x, y, p: BetaMixtureNoiseDetector(max_iter=1000, tol=1e-6).fit(x),
    }


def measure(fit, case, repeats):
    """Best-of-``repeats`` seconds of ``fit(*case)`` without tracing, then one traced fit for the
    peak memory (tracemalloc slows every allocation, so it would distort the times)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit(*case)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(*case)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return min(times), peak, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default="08d510d", help="the git revision of lnc to compare with")
    args = parser.parse_args()

    rows = [
        "| N | method | seconds | peak memory (x losses) | speed-up vs (a) | iterations |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    mismatch, count_cost = [], []
    for n in args.sizes:
        case = synthetic_case(n)
        x = case[0]
        repeats = args.repeats if n <= 1_000_000 else 1
        baseline = None
        for name, fit in methods(load_before(args.before)).items():
            seconds, peak, result = measure(fit, case, repeats)
            if name.startswith("(c0)"):
                before = seconds
            if name.startswith(("(c)", "(c1)", "(c2)")):
                count_cost.append((n, name.split(" ")[0], seconds / before))
            if baseline is None:
                baseline, reference = seconds, result
                iterations = 10
            else:
                iterations = result.n_iter_
            if name.startswith("(b) "):
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
        "Data: `synthetic_case` (10 classes, the true class favoured by a Gamma(4, 1) margin in logits, 20% of "
        "the labels moved to another class), the same arrays for every method; probabilities float32, losses "
        "float64. Seconds: best of "
        f"{args.repeats} fits (one fit at N > 1e6), timed without tracing. Peak memory: the most memory "
        "numpy and Python allocated during one more fit (tracemalloc, which would slow the timed fits), "
        "divided by the losses' size (8 bytes a value); the probabilities are 40 bytes a sample more.",
        "",
        "Largest relative difference of (b)'s parameters from (a)'s: "
        + ", ".join(f"N={n:.0e}: {d:.1e}" for n, d in mismatch),
        "",
        "Today's default as a multiple of the default before (c0), in the same process: "
        + ", ".join(f"N={n:.0e} {which} {r:.2f}x" for n, which, r in count_cost),
    ]
    path = write_results("detector_speed.md", "Detector fit speed and memory", rows + notes)
    print("\n".join(notes))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
