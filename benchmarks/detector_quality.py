"""How well the detectors count and find mislabelled samples on real training-loss traces.

For every trace and every epoch, fits each detector on that epoch's per-sample losses and
scores it against the true noise mask:

- the estimated noise rate (``noise_rate_``) against the true one, and the fraction flagged by
  ``predict``;
- precision, recall and F1 of ``predict``, and the F1 of the top-k losses with the true k
  (what knowing the count would give);
- ROC-AUC and Brier score of p(noisy);
- where the trace has the softmax outputs: cleanlab's count from them
  (``cleanlab.count.estimate_joint``, noise rate = 1 - trace of the joint), the network's
  accuracy on its clean samples, and the share of wrong labels it has memorised (predicts as
  given).

Regimes, as the detector issue judges them: "fitted" where the accuracy on the clean samples
is at least 0.9 and fewer than half of the wrong labels are memorised; "weak" where at least a
third of the clean samples are misclassified; "low noise" for 3-22% of the labels wrong (5-20%
nominal, asymmetric 40% included: it flips 40% of half the classes); "high noise" for 35% or
more wrong.

Traces come from ``make_loss_traces.py`` (``losses``, ``noise_mask``, and ``probs``,
``noisy_labels``, ``true_labels`` for the softmax columns) or from the training callback's
``save_trace``; the digits example's MLP (``lnc_experiments.digits``) is added at 0, 5, 10, 20,
40 and 80% noise unless ``--no-digits``.

Run: ``python benchmarks/detector_quality.py [TRACE.npz ...]`` (default: every
``benchmarks/traces/*.npz``; ``--traces DIR`` for another folder)
"""

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from lnc_experiments.reference_bmm import reference_high_end_fix
from lnc_experiments.results import markdown_table, write_json, write_results
from lnc_sklearn import BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector

REPO = Path(__file__).resolve().parents[1]

PAPER_FIT = dict(max_iter=10, tol=0, anchored=False, rate_estimate="mixture")
DETECTORS = {
    "lnc default": lambda: BetaMixtureNoiseDetector(),
    "lnc default, given labels": lambda: BetaMixtureNoiseDetector(),
    "previous default": lambda: BetaMixtureNoiseDetector(rate_estimate="mixture"),
    "paper fit, monotone": lambda: BetaMixtureNoiseDetector(**PAPER_FIT),
    "reference posterior": lambda: BetaMixtureNoiseDetector(**PAPER_FIT, monotone=False),
    "Gaussian, log-odds rate": lambda: GaussianMixtureNoiseDetector(random_state=0),
    "Gaussian (DivideMix)": lambda: GaussianMixtureNoiseDetector(random_state=0, rate_estimate="mixture"),
}
DIGITS_RATES = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)


def f1_of(flags, mask):
    tp = float(np.sum(flags & mask))
    precision = tp / flags.sum() if flags.any() else float("nan")
    recall = tp / mask.sum() if mask.any() else float("nan")
    if not flags.any() and not mask.any():
        return float("nan"), float("nan"), 1.0  # nothing to find, nothing flagged
    f1 = 2 * tp / (flags.sum() + mask.sum())
    return precision, recall, f1


def cleanlab_rate(noisy_labels, probs):
    from cleanlab.count import estimate_joint

    probs = probs.astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joint = estimate_joint(labels=noisy_labels, pred_probs=probs)
    return 1.0 - float(np.trace(joint))


def evaluate_epoch(name, epoch, losses, mask, probs=None, noisy=None, true=None, have_cleanlab=True):
    losses = losses.astype(np.float64)
    mask = mask.astype(bool)
    true_rate = float(mask.mean())
    row = {"trace": name, "epoch": epoch, "true rate": true_rate}
    if probs is not None:
        pred = probs.argmax(axis=1)
        row["clean accuracy"] = float((pred[~mask] == true[~mask]).mean())
        row["memorised"] = float((pred[mask] == noisy[mask]).mean()) if mask.any() else 0.0
        if have_cleanlab:
            row["cleanlab rate"] = cleanlab_rate(noisy, probs)
    auc_ok = 0 < mask.sum() < mask.size
    row["AUC raw loss"] = roc_auc_score(mask, losses) if auc_ok else float("nan")
    k = int(mask.sum())
    top = np.zeros_like(mask)
    if k:
        top[np.argsort(-losses, kind="stable")[:k]] = True
    row["top-k F1"] = f1_of(top, mask)[2]
    for det_name, make in DETECTORS.items():
        with_labels = det_name.endswith("given labels")
        if with_labels and noisy is None:
            continue
        y = {"y": noisy} if with_labels else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detector = make().fit(losses, **y)
        if det_name == "reference posterior":
            p = reference_high_end_fix(detector, losses, nearest=False)
            flags = p > 0.5
            rate = float(p.mean())
        else:
            p = detector.predict_proba(losses, **y)[:, 1]
            flags = detector.predict(losses, **y).astype(bool)
            rate = detector.noise_rate_
        precision, recall, f1 = f1_of(flags, mask)
        row.update({
            f"rate {det_name}": rate,
            f"rate err {det_name}": abs(rate - true_rate),
            f"flagged {det_name}": float(flags.mean()),
            f"precision {det_name}": precision,
            f"recall {det_name}": recall,
            f"F1 {det_name}": f1,
            f"AUC {det_name}": roc_auc_score(mask, p) if auc_ok else float("nan"),
            f"Brier {det_name}": float(np.mean((p - mask) ** 2)),
        })
    return row


def trace_rows(path, have_cleanlab):
    trace = np.load(path, allow_pickle=False)
    losses = trace["losses"]
    mask = trace["noise_mask"] if "noise_mask" in trace.files else trace["changed"]  # the key's earlier name
    has_probs = {"probs", "noisy_labels", "true_labels"} <= set(trace.files)
    rows = []
    for epoch in range(losses.shape[0]):
        extra = {}
        if has_probs:
            extra = dict(probs=trace["probs"][epoch], noisy=trace["noisy_labels"], true=trace["true_labels"])
        rows.append(evaluate_epoch(path.stem, epoch + 1, losses[epoch], mask, have_cleanlab=have_cleanlab, **extra))
    return rows


def digits_rows(have_cleanlab):
    from lnc_experiments.digits import digits_training_losses

    rows = []
    for rate in DIGITS_RATES:
        losses, noisy, true, mask, probs = digits_training_losses(rate, 20)
        rows.append(evaluate_epoch(f"digits_mlp_sym{int(rate * 100)}", 20, losses, mask, probs, noisy, true, have_cleanlab))
    return rows


def noise_level(trace):
    """The nominal noise rate in a trace's name (``..._sym20_...`` -> 0.2)."""
    for part in trace.split("_"):
        for kind in ("asym", "sym"):
            if part.startswith(kind) and part[len(kind):].isdigit():
                return kind, int(part[len(kind):]) / 100
    return "?", float("nan")


def regime(row):
    if row.get("clean accuracy", np.nan) >= 0.9 and row.get("memorised", 1.0) < 0.5:
        return "fitted"
    if row.get("clean accuracy", np.nan) <= 2 / 3:
        return "weak"
    return "other"


def judged(table, d="lnc default"):
    """The issue's checks for detector ``d``, one line each, computed from the table (not asserted)."""
    lines = [f"**{d}**", ""]
    fitted = table[table.regime == "fitted"]
    clean = fitted[fitted["true rate"] == 0]
    if len(clean):
        lines.append(
            f"- fitted, no noise ({len(clean)} trace-epochs): largest estimated rate "
            f"{clean[f'rate {d}'].max():.4f} (limit 0.03), largest flagged fraction {clean[f'flagged {d}'].max():.4f} "
            f"(limit 0.03); previous default: {clean['rate previous default'].max():.4f} / "
            f"{clean['flagged previous default'].max():.4f}"
        )
    low = fitted[(fitted["true rate"] >= 0.03) & (fitted["true rate"] <= 0.22)]
    if len(low):
        gap = low[f"F1 {d}"] - low["top-k F1"]
        worst = low.loc[low[f"rate err {d}"].idxmax()]
        lines.append(
            f"- fitted, 3-22% wrong ({len(low)} trace-epochs): largest |rate error| {low[f'rate err {d}'].max():.4f} "
            f"({worst.trace} epoch {worst.epoch}; limit 0.03), share within 0.03 "
            f"{(low[f'rate err {d}'] <= 0.03).mean():.3f}; smallest F1 minus top-k F1 {gap.min():+.4f} (limit -0.05), "
            f"share within {(gap >= -0.05).mean():.3f}; previous default: largest error "
            f"{low['rate err previous default'].max():.4f}"
        )
    weak = table[(table.regime == "weak") & table["cleanlab rate"].notna()] if "cleanlab rate" in table else table.iloc[:0]
    if len(weak):
        for label, part in (("no noise", weak[weak["true rate"] == 0]),
                            ("9-17% noise", weak[(weak["true rate"] >= 0.09) & (weak["true rate"] <= 0.17)]),
                            ("any noise", weak)):
            if len(part):
                cl = (part["cleanlab rate"] - part["true rate"]).abs()
                lines.append(
                    f"- weak network, {label} ({len(part)} trace-epochs): mean |rate error| {part[f'rate err {d}'].mean():.4f} "
                    f"against cleanlab's {cl.mean():.4f}; no larger than cleanlab's in "
                    f"{(part[f'rate err {d}'] <= cl + 1e-12).mean():.3f} of them"
                )
    high = table[table["true rate"] >= 0.35]
    if len(high):
        auc_gap = (high[f"AUC {d}"] - high["AUC raw loss"])
        for metric in ("Brier", "rate err"):
            diff = high[f"{metric} {d}"] - high[f"{metric} previous default"]
            lines.append(
                f"- 35% wrong or more ({len(high)} trace-epochs), {metric}: mean {high[f'{metric} {d}'].mean():.4f} against the "
                f"previous default's {high[f'{metric} previous default'].mean():.4f}; per trace-epoch difference "
                f"worst {diff.max():+.4f}, within +0.005 in {(diff <= 0.005).mean():.3f}"
            )
        lines.append(f"- 35% wrong or more: AUC minus the raw loss's AUC, mean {auc_gap.mean():+.4f}, worst {auc_gap.min():+.4f}")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", help="trace .npz files (default: every .npz in --traces-dir)")
    parser.add_argument("--traces-dir", default=str(REPO / "benchmarks" / "traces"))
    parser.add_argument("--no-digits", action="store_true", help="leave out the digits example")
    parser.add_argument("--out-name", default="detector_quality")
    args = parser.parse_args()
    paths = [Path(p) for p in args.traces] or sorted(Path(args.traces_dir).glob("*.npz"))
    try:
        import cleanlab  # noqa: F401

        have_cleanlab = True
    except ImportError:
        have_cleanlab = False
        print("cleanlab is not installed: no cleanlab column (pip install cleanlab)")
    rows = [] if args.no_digits else digits_rows(have_cleanlab)
    for path in paths:
        print(f"{path.stem} ...", flush=True)
        rows += trace_rows(path, have_cleanlab)
    if not rows:
        raise SystemExit("no traces: run benchmarks/make_loss_traces.py first, or drop --no-digits")
    table = pd.DataFrame(rows)
    kinds = table["trace"].map(noise_level)
    table.insert(1, "noise", kinds.map(lambda t: t[0]))
    table.insert(2, "nominal", kinds.map(lambda t: t[1]))
    table.insert(3, "regime", table.apply(regime, axis=1))

    names = list(DETECTORS)
    summary = []
    for (kind, nominal, reg), part in table.groupby(["noise", "nominal", "regime"]):
        entry = {"noise": kind, "nominal": nominal, "regime": reg, "trace-epochs": len(part),
                 "true rate": part["true rate"].mean()}
        if "cleanlab rate" in part and part["cleanlab rate"].notna().any():
            entry["cleanlab rate err"] = (part["cleanlab rate"] - part["true rate"]).abs().mean()
        for n in ("lnc default", "lnc default, given labels", "previous default", "Gaussian (DivideMix)"):
            if f"rate err {n}" in part:
                entry[f"rate err {n}"] = part[f"rate err {n}"].mean()
        entry["F1 lnc default"] = part["F1 lnc default"].mean()
        if "F1 lnc default, given labels" in part:
            entry["F1 lnc default, given labels"] = part["F1 lnc default, given labels"].mean()
        entry["top-k F1"] = part["top-k F1"].mean()
        entry["Brier lnc default"] = part["Brier lnc default"].mean()
        entry["Brier previous default"] = part["Brier previous default"].mean()
        summary.append(entry)
    summary = pd.DataFrame(summary)

    overall = []
    for metric in ("rate err", "flagged", "F1", "AUC", "Brier"):
        for n in names:
            if f"{metric} {n}" not in table:
                continue
            col = table[f"{metric} {n}"]
            overall.append({"metric": metric, "detector": n, "mean": col.mean(),
                            "worst": col.min() if metric in ("AUC", "F1") else col.max()})
    overall = pd.DataFrame(overall)

    checks = judged(table) + [""] + (judged(table, "lnc default, given labels")
                                     if "rate lnc default, given labels" in table else [])
    lines = [
        "Traces (not committed; `benchmarks/make_loss_traces.py` makes them):",
        "",
        "- `mnist_cnn_*`, `fashion_mnist_cnn_*`: first 10,000 training images, a small CNN, SGD lr 0.02, "
        "8 epochs, seeds 0 and 1; `symR`: R% of the labels moved to another class; `asymR`: R% of some "
        "classes flipped to a similar one (fewer than R% of all labels wrong). Commands: `python "
        "benchmarks/make_loss_traces.py --dataset mnist --type sym --noise 0 0.05 0.1 0.2 0.4 0.8 --n-train 10000 "
        "--epochs 8 --seed 0 1`, the same with `--type asym --noise 0.1 0.2 0.4`, and both for `fashion_mnist`.",
        "- `cifar10_resnet_*`: first 5,000 CIFAR-10 training images, PreAct ResNet-18 width 16, 8 epochs, seed 0 "
        "(`--dataset cifar10 --model resnet --n-train 5000 --epochs 8 --seed 0`, sym 0/10/20/40/80 and asym 20/40).",
        "- `digits_mlp_symR`: the digits example's MLP after 20 epochs (`examples/detect_digits.py --noise R`; the "
        "paper's convention, so 0.9 R of the labels are wrong).",
        "",
        "Detectors: 'lnc default' is `BetaMixtureNoiseDetector()` (noise rate from the log-odds, "
        "`rate_estimate=\"log-odds\"`) fitted on the losses alone; 'lnc default, given labels' the same "
        "fitted with the given labels (`fit(losses, y=labels)`: the count within each label, and `predict(losses, "
        "y=labels)`); 'previous default' the same fit with the noise rate read off the mixture "
        "(`rate_estimate=\"mixture\"`, the default before); 'paper fit' `max_iter=10, tol=0, anchored=False, "
        "rate_estimate=\"mixture\"`, and 'reference posterior' that fit read through the reference code's "
        "table; the Gaussian mixture with either rate. rate err = |estimated rate - true rate|; flagged = share "
        "of `predict` (p > 0.5 for the reference posterior).",
        "",
        "## The detector issue's checks",
        "",
        *checks,
        "",
        "## By noise and regime (means over trace-epochs)",
        "",
        markdown_table(summary),
        "",
        "## Over all trace-epochs",
        "",
        markdown_table(overall),
        "",
        "## Per trace and epoch",
        "",
    ]
    cols = ["trace", "epoch", "regime", "true rate", "rate lnc default", "rate lnc default, given labels",
            "rate previous default"]
    cols += [c for c in ("cleanlab rate", "clean accuracy", "memorised") if c in table]
    cols += ["flagged lnc default", "F1 lnc default", "F1 lnc default, given labels", "top-k F1", "AUC raw loss",
             "AUC lnc default", "Brier lnc default", "Brier previous default"]
    cols = [c for c in cols if c in table]
    lines += [markdown_table(table[cols]), "", "The JSON file has these and every detector's rate, flagged share, "
              "F1, AUC and Brier score per trace-epoch, and precision and recall of `predict` for the two lnc "
              "defaults and the previous default (rounded to 4 decimals).", ""]
    path = write_results(f"{args.out_name}.md", "Detector quality on real loss traces", lines)
    main_detectors = ("lnc default", "lnc default, given labels", "previous default")
    kept = [c for c in table.columns if not c.startswith("rate err ")
            and not (c.startswith(("precision ", "recall ")) and c.split(" ", 1)[1] not in main_detectors)]
    write_json(f"{args.out_name}.json", {"table": json.loads(table[kept].round(4).to_json(orient="split", index=False))})
    print("\n".join(lines[: lines.index("## Over all trace-epochs")]))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
