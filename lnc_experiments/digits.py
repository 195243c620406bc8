"""Per-sample training losses from a real network on real data that ships with scikit-learn:
an MLP trained with cross-entropy on the digits with injected label noise."""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

from lnc_sklearn import symmetric_noise


def digits_training_losses(noise_rate=0.4, epochs=20, seed=0):
    """Return ``(losses, noisy_labels, true_labels, changed, pred_probs)`` after ``epochs``."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    noisy, changed = symmetric_noise(y, noise_rate, random_state=seed)
    model = MLPClassifier(hidden_layer_sizes=(64,), random_state=seed)
    for _ in range(epochs):
        model.partial_fit(X, noisy, classes=np.arange(10))
    probs = model.predict_proba(X)
    losses = -np.log(np.clip(probs[np.arange(len(noisy)), noisy], 1e-12, None))
    return losses, noisy, y, changed, probs
