import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits_loss_trace():
    """Real training losses: an MLP trained with cross-entropy on digits with 40% noise.

    Returns ``(losses_by_epoch, changed)``: per-sample losses against the noisy labels after
    epochs 5, 10, ..., 30, and the mask of mislabelled samples.
    """
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    from lnc_sklearn import symmetric_noise

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    noisy, changed = symmetric_noise(y, 0.4, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(64,), random_state=0)
    losses = []
    for epoch in range(1, 31):
        clf.partial_fit(X, noisy, classes=np.arange(10))
        if epoch % 5 == 0:
            p = clf.predict_proba(X)[np.arange(len(noisy)), noisy]
            losses.append(-np.log(np.clip(p, 1e-12, None)))
    return losses, changed
