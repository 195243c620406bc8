"""How well the detectors count and find mislabelled samples, on the development or the test cases.

The cases (``benchmarks/results/evaluation_split.md``): per-sample losses and softmax outputs of
networks during training (``make_loss_traces.py``, every epoch), and out-of-fold predicted
probabilities of scikit-learn models (``lnc_experiments.noise_cases``), each also given as
confidences. Per case, lnc's detector (``BetaMixtureNoiseDetector()``) is fitted three ways:
on the losses alone, with the given labels, and with the labels and the predicted
probabilities; the version before this count (``--before``, imported from git) on the losses
alone and with the labels; cleanlab on the same probabilities (``estimate_joint``,
``find_label_issues``, ``get_label_quality_scores``). Scored against the true noise mask: the
rate's error, whether the 90% interval holds the truth and its width, the verdict, F1 of
``predict`` and ROC-AUC of p(noisy), beside the F1 of flagging the true number of highest
losses. The noise-count issue's targets are then checked group by group (kind, noise, nominal
rate). ``--set dev`` also re-scores the mixture readings this issue leaves alone (the paper's
fit, the reference's posterior, the mixture's rate, the Gaussian mixture) with both versions.

Run: ``python benchmarks/detector_quality.py --set dev`` (or ``--set test``); traces from
``benchmarks/traces`` (``--traces-dir``), out-of-fold cases computed (minutes) and cached in
``benchmarks/traces/oof``. Needs cleanlab (a benchmark dependency only).
"""

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from lnc_experiments.before import load_before
from lnc_experiments.noise_cases import out_of_fold_case
from lnc_experiments.reference_bmm import reference_high_end_fix
from lnc_experiments.results import markdown_table, write_json, write_results
from lnc_sklearn import BetaMixtureNoiseDetector

REPO = Path(__file__).resolve().parents[1]
SETS = {
    "dev": {
        "traces": ["mnist_cnn_sym*_s[01]", "mnist_cnn_asym*_s[01]", "fashion_mnist_cnn_sym*_s[01]",
                   "fashion_mnist_cnn_asym*_s[01]", "cifar10_resnet_sym*_s0", "cifar10_resnet_asym*_s0"],
        "digits": (0.0, 0.05, 0.1, 0.2, 0.4, 0.8),
        "oof": {"datasets": ["breast_cancer", "digits", "mnist"], "models": ["logistic", "forest"],
                "noise": [("sym", r) for r in (0, 0.1, 0.2, 0.3, 0.4)] + [("flip", r) for r in (0.1, 0.2, 0.4)],
                "seeds": [0, 1, 2]},
    },
    "test": {
        "traces": ["fashion_mnist_cnn_o30000_*_s[23]", "mnist_mlp_o30000_*_s2", "cifar10_resnet_o20000_*_s1"],
        "digits": (),
        "oof": {"datasets": ["wine", "synthetic2", "synthetic4", "fashion_mnist", "cifar10"],
                "models": ["logistic", "forest", "knn", "mlp", "boosting"],
                "noise": [("sym", r) for r in (0, 0.1, 0.2, 0.4)] + [("pair", r) for r in (0.2, 0.4)],
                "seeds": [0, 1]},
    },
}
BEFORE = "08d510d"  # the last commit before this count: today's default, as users have it
FITTED, WEAK = "fitted", "weak"


def f1_of(flags, mask):
    if not flags.any() and not mask.any():
        return 1.0  # nothing to find, nothing flagged
    return float(2 * np.sum(flags & mask) / (flags.sum() + mask.sum()))


def auc(mask, score):
    return float(roc_auc_score(mask, score)) if 0 < mask.sum() < mask.size else float("nan")


def _lnc(row, name, detector, values, mask, true_rate, fit_kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector.fit(values, **fit_kw)
    p = detector.predict_proba(values, **fit_kw)[:, 1]
    flags = detector.predict(values, **fit_kw).astype(bool)
    rate = float(detector.noise_rate_)
    row.update({f"rate {name}": rate, f"err {name}": abs(rate - true_rate), f"F1 {name}": f1_of(flags, mask),
                f"flagged {name}": float(flags.mean()), f"AUC {name}": auc(mask, p)})
    count = getattr(detector, "noise_count_", None)
    if count is not None:  # today's count
        low, high = count.interval
        row.update({f"low {name}": low, f"high {name}": high, f"covered {name}": low - 1e-12 <= true_rate <= high + 1e-12,
                    f"width {name}": high - low, f"verdict {name}": count.verdict, f"source {name}": count.source})
    else:  # the version before: "little or no noise" was a rate of 0 from the count
        said_none = getattr(detector, "rate_estimate_used_", None) == "log-odds" and rate == 0
        row[f"verdict {name}"] = "little or no noise" if said_none else "noise"


def score_case(name, kind, losses, noisy, true, mask, probs, before, mixtures=False):
    """One row of scores (see the module's docstring)."""
    losses = losses.astype(np.float64)
    mask = mask.astype(bool)
    probs = probs.astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)
    true_rate = float(mask.mean())
    pred = probs.argmax(axis=1)
    row = {"case": name, "kind": kind, "true rate": true_rate, "n": losses.size,
           "clean accuracy": float((pred[~mask] == true[~mask]).mean()),
           "memorised": float((pred[mask] == noisy[mask]).mean()) if mask.any() else 0.0}
    k = int(mask.sum())
    top = np.zeros_like(mask)
    top[np.argsort(-losses, kind="stable")[:k]] = True
    row["top-k F1"] = f1_of(top, mask)
    row["AUC loss"] = auc(mask, losses)
    if kind == "confidences":
        values, new = np.exp(-losses), lambda: BetaMixtureNoiseDetector(input_type="confidence")
        old = lambda: before.BetaMixtureNoiseDetector(input_type="confidence")  # noqa: E731
    else:
        values, new, old = losses, BetaMixtureNoiseDetector, before.BetaMixtureNoiseDetector
    _lnc(row, "losses", new(), values, mask, true_rate, {})
    _lnc(row, "labels", new(), values, mask, true_rate, {"y": noisy})
    _lnc(row, "before, losses", old(), values, mask, true_rate, {})
    _lnc(row, "before, labels", old(), values, mask, true_rate, {"y": noisy})
    if kind == "confidences":
        return row
    _lnc(row, "probabilities", BetaMixtureNoiseDetector(), losses, mask, true_rate, {"y": noisy, "pred_probs": probs})
    _cleanlab(row, noisy, probs, mask, true_rate)
    if mixtures:
        _mixtures(row, losses, mask, before)
    return row


def _cleanlab(row, noisy, probs, mask, true_rate):
    from cleanlab.count import estimate_joint
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rate = 1.0 - float(np.trace(estimate_joint(labels=noisy, pred_probs=probs)))
        flags = find_label_issues(noisy, probs)
        scores = {m: -get_label_quality_scores(noisy, probs, method=m)
                  for m in ("self_confidence", "normalized_margin", "confidence_weighted_entropy")}
    row.update({"rate cleanlab": rate, "err cleanlab": abs(rate - true_rate), "F1 cleanlab": f1_of(flags, mask),
                "flagged cleanlab": float(flags.mean())})
    for method, score in scores.items():
        row[f"AUC cleanlab {method}"] = auc(mask, score)


MIXTURES = {  # the readings this issue leaves alone, in both versions
    "mixture's rate": lambda m: m.BetaMixtureNoiseDetector(rate_estimate="mixture"),
    "paper fit": lambda m: m.BetaMixtureNoiseDetector(max_iter=10, tol=0, anchored=False, rate_estimate="mixture"),
    "Gaussian (DivideMix)": lambda m: m.GaussianMixtureNoiseDetector(random_state=0, rate_estimate="mixture"),
}


def _mixtures(row, losses, mask, before):
    import lnc_sklearn

    for name, make in MIXTURES.items():
        for version, module in (("now", lnc_sklearn), ("before", before)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                detector = make(module).fit(losses)
            p = detector.predict_proba(losses)[:, 1]
            flags = detector.predict(losses).astype(bool)
            row.update({f"{name} {version} rate": float(detector.noise_rate_), f"{name} {version} AUC": auc(mask, p),
                        f"{name} {version} Brier": float(np.mean((p - mask) ** 2)),
                        f"{name} {version} F1": f1_of(flags, mask)})
            if name == "paper fit":
                reference = reference_high_end_fix(detector, losses, nearest=False)
                row[f"reference posterior {version} AUC"] = auc(mask, reference)
                row[f"reference posterior {version} Brier"] = float(np.mean((reference - mask) ** 2))


def case_rows(spec, traces_dir, before, mixtures):
    """Every case of a set, scored, as ``(name, kind, arrays)`` turned into rows."""
    rows = []
    paths = sorted({p for pattern in spec["traces"] for p in traces_dir.glob(f"{pattern}.npz")})
    for path in paths:
        print(f"{path.stem} ...", flush=True)
        with np.load(path) as trace:
            arrays = {k: trace[k] for k in trace.files}
        for epoch in range(arrays["losses"].shape[0]):
            for kind in ("in-training", "confidences"):
                rows.append(score_case(f"{path.stem} epoch {epoch + 1}", kind, arrays["losses"][epoch],
                                       arrays["noisy_labels"], arrays["true_labels"], arrays["noise_mask"],
                                       arrays["probs"][epoch], before, mixtures and kind == "in-training"))
    if spec["digits"]:
        from lnc_experiments.digits import digits_training_losses

        for rate in spec["digits"]:
            losses, noisy, true, mask, probs = digits_training_losses(rate, 20)
            for kind in ("in-training", "confidences"):
                rows.append(score_case(f"digits_mlp_sym{int(rate * 100)} epoch 20", kind, losses, noisy, true, mask,
                                       probs, before, mixtures and kind == "in-training"))
    oof = spec["oof"]
    for dataset in oof["datasets"]:
        for model in oof["models"]:
            for noise, rate in oof["noise"]:
                for seed in oof["seeds"]:
                    case = out_of_fold_case(dataset, model, noise, rate, seed, cache=traces_dir / "oof")
                    print(case["name"], flush=True)
                    for kind in ("out-of-fold", "confidences"):
                        rows.append(score_case(case["name"], kind, case["losses"], case["noisy_labels"],
                                               case["true_labels"], case["noise_mask"], case["probs"], before))
    return rows


def describe(table):
    """Noise type, nominal rate and regime columns from the case names and scores."""
    kinds = table["case"].str.extract(r"_(sym|asym|flip|pair)(\d+)(?:_| |$)")
    table.insert(2, "noise", kinds[0].replace({"asym": "flip"}))
    table.insert(3, "nominal", kinds[1].astype(int) / 100)
    regime = np.where((table["clean accuracy"] >= 0.9) & (table["memorised"] < 0.5), FITTED,
                      np.where(table["clean accuracy"] <= 2 / 3, WEAK, "other"))
    table.insert(4, "regime", regime)
    return table


def best_cleanlab_auc(part):
    return max(part[c].mean() for c in part.columns if c.startswith("AUC cleanlab "))


def targets(table):
    """The noise-count issue's targets, one line each, computed from the table (met or not)."""
    lines, groups = [], ["kind", "noise", "nominal"]
    probs = table[table["kind"] != "confidences"]
    missed = {"probabilities, rate": [], "probabilities, F1": [], "probabilities, AUC": []}
    for key, part in probs.groupby(groups):
        ours, theirs = part["err probabilities"].mean(), part["err cleanlab"].mean()
        limit = theirs + 0.01 if theirs > 0.03 else min(theirs + 0.01, 0.03)
        if ours > limit + 1e-12:
            missed["probabilities, rate"].append(f"{_name(key)} {ours:.3f} > {limit:.3f}")
        if part["F1 probabilities"].mean() < part["F1 cleanlab"].mean() - 0.01 - 1e-12:
            missed["probabilities, F1"].append(f"{_name(key)} {part['F1 probabilities'].mean():.3f} < "
                                               f"{part['F1 cleanlab'].mean():.3f} - 0.01")
        with_noise = part[part["true rate"] > 0]
        if len(with_noise):
            bar = max(with_noise["AUC loss"].mean(), best_cleanlab_auc(with_noise)) - 0.005
            if with_noise["AUC probabilities"].mean() < bar - 1e-12:
                missed["probabilities, AUC"].append(f"{_name(key)} {with_noise['AUC probabilities'].mean():.4f} < "
                                                    f"{bar:.4f}")
    n_groups = probs.groupby(groups).ngroups
    for target, misses in missed.items():
        lines.append(_verdict_line(target, n_groups, misses))
    for method in ("losses", "labels"):
        said = table[(table["true rate"] >= 0.1) & (table[f"verdict {method}"] == "little or no noise")]
        lines.append(_verdict_line(f"{method}: never 'little or no noise' at 10% or more wrong",
                                   int((table["true rate"] >= 0.1).sum()),
                                   [f"{case} ({kind})" for case, kind in zip(said["case"], said["kind"])]))
        worse, over = [], []
        for key, part in table.groupby(groups):
            if part[f"err {method}"].mean() > part[f"err before, {method}"].mean() + 1e-12:
                worse.append(f"{_name(key)} {part[f'err {method}'].mean():.3f} > {part[f'err before, {method}'].mean():.3f}")
            fitted = part[part["regime"] == FITTED]
            if len(fitted) and fitted[f"err {method}"].mean() > 0.03:
                over.append(f"{_name(key)} {fitted[f'err {method}'].mean():.3f}")
        lines.append(_verdict_line(f"{method}: mean |rate error| no worse than before, per group",
                                   table.groupby(groups).ngroups, worse))
        lines.append(_verdict_line(f"{method}: mean |rate error| at most 0.03 where the model fits, per group",
                                   table[table["regime"] == FITTED].groupby(groups).ngroups, over))
        clean = table[(table["true rate"] == 0) & (table["regime"] == FITTED)]
        over_3 = clean[clean[f"flagged {method}"] > 0.03]
        lines.append(_verdict_line(f"{method}: 0% noise, at most 3% flagged where the model fits", len(clean),
                                   [f"{case} ({kind}) {flagged:.3f}" for case, kind, flagged
                                    in zip(over_3["case"], over_3["kind"], over_3[f"flagged {method}"])]))
        low_f1 = []
        for key, part in table[table["true rate"] > 0].groupby(groups):
            if part[f"F1 {method}"].mean() < part["top-k F1"].mean() - 0.05:
                low_f1.append(f"{_name(key)} {part[f'F1 {method}'].mean():.3f} < {part['top-k F1'].mean():.3f} - 0.05")
        lines.append(_verdict_line(f"{method}: F1 at least the top-k losses' minus 0.05, per group",
                                   table[table["true rate"] > 0].groupby(groups).ngroups, low_f1))
    for method in ("losses", "labels", "probabilities"):
        fitted = table[(table["regime"] == FITTED) & table[f"covered {method}"].notna()]
        coverage = fitted[f"covered {method}"].astype(bool).mean()
        width = fitted[f"width {method}"].median()
        half = fitted[(fitted["true rate"] >= 0.1) & (fitted[f"rate {method}"] < fitted["true rate"] / 2)]
        lines.append(f"- {method}, interval where the model fits ({len(fitted)} cases): holds the truth in "
                     f"{coverage:.3f} (target 0.85), median width {width:.3f} (target 0.10): "
                     f"{'met' if coverage >= 0.85 and width <= 0.10 else 'MISSED'}")
        lines.append(_verdict_line(f"{method}: never under half the truth at 10% or more wrong where the model fits",
                                   len(fitted[fitted['true rate'] >= 0.1]),
                                   [f"{case} ({kind})" for case, kind in zip(half["case"], half["kind"])]))
    return lines


def _name(key):
    kind, noise, nominal = key
    return f"{kind} {noise} {nominal:.0%}"


def _verdict_line(target, n, misses):
    status = "met" if not misses else f"MISSED in {len(misses)}"
    shown = "; ".join(misses[:6]) + (" ..." if len(misses) > 6 else "")
    return f"- {target} ({n} checked): {status}" + (f": {shown}" if misses else "")


def group_table(table, fitted_only=False):
    part = table[table["regime"] == FITTED] if fitted_only else table
    columns = {"cases": ("true rate", "size"), "true rate": ("true rate", "mean")}
    for method in ("losses", "labels", "probabilities", "before, losses", "before, labels", "cleanlab"):
        columns[f"err {method}"] = (f"err {method}", "mean")
    for method in ("labels", "probabilities", "cleanlab"):
        columns[f"F1 {method}"] = (f"F1 {method}", "mean")
    columns["top-k F1"] = ("top-k F1", "mean")
    for method in ("labels", "probabilities"):
        columns[f"covered {method}"] = (f"covered {method}", lambda s: s.dropna().astype(float).mean())
    columns["AUC loss"] = ("AUC loss", "mean")
    columns["AUC probabilities"] = ("AUC probabilities", "mean")
    present = {k: v for k, v in columns.items() if v[0] in part}
    out = part.groupby(["kind", "noise", "nominal"]).agg(**present).reset_index()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(SETS), required=True)
    parser.add_argument("--traces-dir", default=str(REPO / "benchmarks" / "traces"))
    parser.add_argument("--traces", nargs="+", default=None, metavar="NAME",
                        help="score only these traces of --traces-dir (file names without .npz, glob patterns "
                             "allowed) instead of the set's cases, with no out-of-fold cases: a quick check")
    parser.add_argument("--before", default=BEFORE, help="the git revision of the version to compare with")
    parser.add_argument("--out-name", default=None)
    args = parser.parse_args()
    before = load_before(args.before)
    mixtures = args.set == "dev"
    spec = SETS[args.set]
    if args.traces:
        spec = {"traces": args.traces, "digits": [], "oof": {"datasets": [], "models": [], "noise": [], "seeds": []}}
    rows = case_rows(spec, Path(args.traces_dir), before, mixtures)
    table = describe(pd.DataFrame(rows))
    name = args.out_name or ("detector_quality" if args.set == "dev" else "detector_quality_test")
    checks = targets(table)
    by_kind = table.groupby("kind").size().to_dict()
    lines = [
        f"Cases: the **{args.set}** set of `benchmarks/results/evaluation_split.md` ({len(table)} rows: "
        + ", ".join(f"{k} {v}" for k, v in by_kind.items()) + "; one row per trace epoch or out-of-fold case).",
        "",
        "Methods: 'losses' is `BetaMixtureNoiseDetector()` fitted on the losses alone; 'labels' with the given "
        "labels (`fit(losses, y=labels)`); 'probabilities' with the labels and the predicted probabilities "
        "(`fit(losses, y=labels, pred_probs=probs)`); 'before, ...' the same fits with lnc at "
        f"{args.before} (the count before this one); 'cleanlab': `1 - trace(estimate_joint)`, `find_label_issues` "
        "and `get_label_quality_scores` on the same probabilities. err = |estimated - true share of wrong labels|; "
        "covered = the 90% interval holds the true share; F1 of `predict`; top-k F1 flags the true number of "
        "highest losses. Regime 'fitted': the model classifies at least 90% of its clean samples as their true "
        "class and has memorised fewer than half of the wrong labels.",
        "",
        "## The noise-count issue's targets",
        "",
        *checks,
        "",
        "## By kind, noise and nominal rate (means over cases)",
        "",
        markdown_table(group_table(table)),
        "",
        "## The same where the model fits its clean labels",
        "",
        markdown_table(group_table(table, fitted_only=True)),
        "",
    ]
    if mixtures:
        lines += ["## The mixture readings this issue leaves alone, before and now (in-training cases)", ""]
        part = table[table["kind"] == "in-training"]
        diffs = []
        for column in [c for c in part.columns if c.endswith((" now rate", " now AUC", " now Brier", " now F1"))]:
            other = column.replace(" now ", " before ")
            diff = (part[column] - part[other]).abs()
            diffs.append({"reading": column.replace(" now", ""), "mean": part[column].mean(),
                          "largest difference from before": diff.max()})
        lines += [markdown_table(pd.DataFrame(diffs)), ""]
    path = write_results(f"{name}.md", f"Detector quality: the {args.set} cases", lines)
    write_json(f"{name}.json", {"table": json.loads(table.round(4).to_json(orient="split", index=False))}, indent=None)
    print("\n".join(lines[lines.index("## The noise-count issue's targets"):]))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
