"""Find the mislabelled digits: the main job on data that ships with scikit-learn.

Injects 40% symmetric label noise into scikit-learn's digits, trains a small MLP with
cross-entropy for a few epochs (long enough to fit the clean labels, not yet to memorise
the wrong ones), and asks lnc how many samples are mislabelled and which: from the losses
alone, with the given labels, and with the labels and the MLP's predicted probabilities; beside
them the mixture's own rate (the paper's reading) and the Gaussian baseline. Each count comes
with a 90% interval and a verdict. With ``--noise 0 --epochs 60`` (an MLP that fits its labels)
the verdict is "little or no noise"; after 20 epochs it still disbelieves a tenth of the clean
labels, and the verdict is "cannot tell". Run:
``python examples/detect_digits.py [--noise 0.4] [--epochs 20]``.
"""

import argparse

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from lnc_experiments.digits import digits_training_losses
from lnc_sklearn import BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector, noise_report, noise_summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=0.4, help="symmetric noise rate")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--top", type=int, default=10, help="suspects to list")
    args = parser.parse_args()

    losses, noisy, true, changed, probs = digits_training_losses(args.noise, args.epochs)
    print(f"{len(losses)} digits, {changed.sum()} labels wrong ({changed.mean():.1%})\n")

    evidence = {"losses": {}, "labels": {"y": noisy}, "labels, probabilities": {"y": noisy, "pred_probs": probs}}
    detectors = {
        f"lnc default ({given})": (BetaMixtureNoiseDetector(), inputs) for given, inputs in evidence.items()
    }
    detectors["the mixture's own rate"] = (BetaMixtureNoiseDetector(rate_estimate="mixture"), {})
    detectors["Gaussian mixture (DivideMix)"] = (GaussianMixtureNoiseDetector(random_state=0, rate_estimate="mixture"), {})
    has_noise = 0 < changed.sum() < changed.size
    rows = []
    for name, (detector, inputs) in detectors.items():
        detector.fit(losses, **inputs)
        p_noisy = detector.predict_proba(losses, **inputs)[:, 1]
        flagged = detector.predict(losses, **inputs).astype(bool)
        count = detector.noise_count_
        rows.append(
            {
                "detector": name,
                "estimated noise": detector.noise_rate_,
                "90% interval": "-" if count is None else "{:.3f}-{:.3f}".format(*count.interval),
                "verdict": "-" if count is None else count.verdict,
                "flagged": int(flagged.sum()),
                "precision": changed[flagged].mean() if flagged.any() else np.nan,
                "recall": flagged[changed].mean() if changed.any() else np.nan,
                "ROC-AUC": roc_auc_score(changed, p_noisy) if has_noise else np.nan,
            }
        )
    if has_noise:
        rows.append({"detector": "raw loss ranking", "ROC-AUC": roc_auc_score(changed, losses)})
    table = pd.DataFrame(rows).astype({"flagged": "Int64"})
    print(table.to_string(index=False, float_format="{:.3f}".format, na_rep="-"))

    detector = detectors["lnc default (labels, probabilities)"][0]
    report = noise_report(losses, detector, labels=noisy, pred_probs=probs, noise_mask=changed)
    print()
    print(noise_summary(report, top=5))
    suspects = report.sort_values("rank").head(args.top)
    print(f"\nTop {args.top} suspects:")
    print(suspects[["given_label", "predicted_label", "loss", "p_noisy", "is_noisy", "noise_mask"]].to_string(
        float_format="{:.3f}".format))


if __name__ == "__main__":
    main()
