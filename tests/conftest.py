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


@pytest.fixture(scope="session")
def random_image_learner():
    """A factory for a small fastai ``Learner`` on random images: ``make(cb, n_channels, side,
    model)``, where ``model()`` builds the network (called with torch's seed set to 0) and
    ``image_type`` (e.g. fastai's ``TensorImage``) wraps each image. 96 training and 32
    validation images; three classes read off two pixel patches of the first channel, 40% of the
    training labels moved to the next class; batches of 16, the last partial one dropped."""

    def make(cb, n_channels, side, model, image_type=None, n_train=96, n_valid=32):
        import torch
        from fastai.basics import CrossEntropyLossFlat, Datasets, Learner, TensorCategory

        generator = torch.Generator().manual_seed(0)
        n = n_train + n_valid
        x = torch.randn(n, n_channels, side, side, generator=generator)
        labels = (x[:, 0, :2, :2].sum((1, 2)) > 0).long() + (x[:, 0, 2:4, 2:4].sum((1, 2)) > 0).long()
        flip = torch.rand(n, generator=generator) < 0.4
        flip[n_train:] = False
        labels[flip] = (labels[flip] + 1) % 3
        wrap = image_type if image_type is not None else (lambda image: image)
        splits = [list(range(n_train)), list(range(n_train, n))]
        datasets = Datasets(range(n), tfms=[[lambda i: wrap(x[i])], [lambda i: TensorCategory(labels[i])]], splits=splits)
        dls = datasets.dataloaders(bs=16, val_bs=16, drop_last=True)
        torch.manual_seed(0)
        return Learner(dls, model(), loss_func=CrossEntropyLossFlat(), cbs=cb)

    return make
