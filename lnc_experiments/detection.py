"""Scoring detectors against the true noise mask, epoch by epoch: lnc's Beta and Gaussian
mixtures, the paper's fit read out as the reference code does, the raw loss and cleanlab's
scores (cleanlab is imported when scoring)."""

import warnings

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from lnc_sklearn import BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector

from .reference_bmm import reference_high_end_fix

CLEANLAB_SCORES = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


def load_trace(path):
    """A trace file's arrays, its true mask as ``noise_mask`` (traces written before the key's
    rename call it ``changed``)."""
    with np.load(path, allow_pickle=False) as trace:
        arrays = {("noise_mask" if key == "changed" else key): trace[key] for key in trace.files}
        missing = [key for key in ("losses", "probs", "noisy_labels", "noise_mask") if key not in arrays]
        if missing:
            raise SystemExit(f"{path} lacks {missing}: save it with DynamicBootstrapMixUp(keep_trace=True, "
                             "trace_probs=True, noise_mask=...).save_trace(...)")
        return arrays


PAPER_BETA = "Beta, paper (reference read-out)"
LNC_BETA = "Beta, lnc default (monotone)"
RAW_GAUSSIAN = "Gaussian, DivideMix (raw posterior)"
LNC_GAUSSIAN = "Gaussian, lnc monotone"


def _mixture_scores(losses):
    """p(noisy) from the mixtures; non-finite losses (if any) score as the most suspect."""
    finite = np.isfinite(losses)
    values = losses[finite]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paper = BetaMixtureNoiseDetector(max_iter=10, tol=0, anchored=False, rate_estimate="mixture").fit(values)
        beta = BetaMixtureNoiseDetector().fit(values)
        gaussian = GaussianMixtureNoiseDetector(random_state=0).fit(values)
        raw_gaussian = GaussianMixtureNoiseDetector(random_state=0, monotone=False).fit(values)
        scores = {
            PAPER_BETA: reference_high_end_fix(paper, values),
            LNC_BETA: beta.predict_proba(values)[:, 1],
            RAW_GAUSSIAN: raw_gaussian.predict_proba(values)[:, 1],
            LNC_GAUSSIAN: gaussian.predict_proba(values)[:, 1],
        }
    full = {}
    for name, p in scores.items():
        out = np.ones(losses.size)
        out[finite] = p
        full[name] = out
    return full


MIXTURES = (PAPER_BETA, LNC_BETA, RAW_GAUSSIAN, LNC_GAUSSIAN)


def evaluate_epoch(losses, probs, labels, changed):
    """One row per method: AUC, AP and, for flagging methods, precision/recall/flagged."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probs = np.clip(probs.astype(np.float64), 1e-12, None)
    probs /= probs.sum(axis=1, keepdims=True)  # float16 rows do not sum to 1 exactly
    suspicion = _mixture_scores(losses)
    flagged = {name: p > 0.5 for name, p in suspicion.items()}
    suspicion["raw loss"] = np.nan_to_num(losses, nan=np.inf)
    for method in CLEANLAB_SCORES:
        quality = get_label_quality_scores(labels, probs, method=method)
        suspicion[f"cleanlab {method}"] = -quality  # low quality = suspect
    issues = find_label_issues(labels, probs, filter_by="prune_by_noise_rate")
    flagged["cleanlab find_label_issues"] = issues
    suspicion["cleanlab find_label_issues"] = issues.astype(float)
    rows = []
    for name, score in suspicion.items():
        score = np.nan_to_num(score, posinf=np.finfo(float).max)
        row = {"method": name, "AUC": roc_auc_score(changed, score), "AP": average_precision_score(changed, score)}
        if name in MIXTURES:
            row.update(brier=float(np.mean((score - changed) ** 2)), rate_error=float(abs(score.mean() - changed.mean())))
        if name in flagged:
            chosen = flagged[name]
            row.update(
                flagged=int(chosen.sum()),
                precision=float(changed[chosen].mean()) if chosen.any() else np.nan,
                recall=float(chosen[changed].mean()),
            )
        rows.append(row)
    return rows
