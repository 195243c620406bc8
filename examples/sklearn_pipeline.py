"""The detectors as ordinary scikit-learn estimators: in a Pipeline, given the labels and a
model's predicted probabilities through scikit-learn's metadata routing, and tuned by
GridSearchCV, which picks the parameters with the best held-out ``score`` (mean
log-likelihood). The score compares fits of one normalisation, so the grid varies the EM
settings and keeps ``percentiles`` fixed. Run: ``python examples/sklearn_pipeline.py``.
"""

import numpy as np
import sklearn
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from lnc_experiments.digits import digits_training_losses
from lnc_sklearn import BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector


def confidence_to_loss(confidences):
    """Cross-entropy from the probability given to the label."""
    return -np.log(confidences)


def main():
    losses, noisy, _, changed, probs = digits_training_losses()
    confidences = np.exp(-losses)  # the probability given to the label: higher = cleaner

    # A Pipeline: a transformer that turns a column of confidences (the probability given to
    # each label) into cross-entropy losses, then the detector. The pipeline has predict_proba,
    # score, bic... like the detector. (The default noise count reads the values as
    # cross-entropy, so a transformer in front of it must keep them so.)
    pipeline = make_pipeline(
        FunctionTransformer(confidence_to_loss, feature_names_out="one-to-one"),
        BetaMixtureNoiseDetector(),
    )
    pipeline.fit(confidences[:, None])
    flagged = pipeline.predict(confidences[:, None]).astype(bool)
    print(f"Pipeline(-log, Beta mixture): {pipeline[-1].noise_rate_:.3f} estimated noise, flagged "
          f"{flagged.sum()}, of which {changed[flagged].mean():.1%} truly mislabelled")

    # The labels go in as y; the predicted probabilities as metadata, which a Pipeline routes to
    # the steps that ask for them (scikit-learn's metadata routing, switched on here).
    with sklearn.config_context(enable_metadata_routing=True):
        routed = make_pipeline(
            FunctionTransformer(confidence_to_loss, feature_names_out="one-to-one"),
            BetaMixtureNoiseDetector().set_fit_request(pred_probs=True),
        )
        routed.fit(confidences[:, None], noisy, pred_probs=probs)
        count = routed[-1].noise_count_
        print(f"Pipeline with labels and pred_probs: {count.rate:.3f} estimated noise (90% interval "
              f"{count.interval[0]:.3f}-{count.interval[1]:.3f}, {count.source}; true {changed.mean():.3f})")

    # GridSearchCV over the EM settings, scored by held-out log-likelihood. Every candidate
    # shares the default normalisation (percentiles), which the score cannot compare across.
    search = GridSearchCV(
        BetaMixtureNoiseDetector(),
        {"init_params": ["fixed", "kmeans"], "anchored": [True, False], "max_iter": [10, 100]},
        cv=3,
    )
    search.fit(losses)
    print("GridSearchCV best:", search.best_params_, f"score {search.best_score_:.3f}")

    search = GridSearchCV(
        GaussianMixtureNoiseDetector(random_state=0, input_type="confidence"),
        {"max_iter": [10, 100], "reg_covar": [5e-4, 1e-3]},
        cv=3,
    )
    search.fit(confidences[:, None])
    print("GridSearchCV (Gaussian, confidences):", search.best_params_)


if __name__ == "__main__":
    main()
