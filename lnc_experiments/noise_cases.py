"""Out-of-fold predicted probabilities on noisy labels: the cases of the noise-count benchmark.

One case is a data set, a scikit-learn model, a kind of noise, a rate and a seed. Its labels are
noised, the model's class probabilities come from 5-fold cross-validation on the noisy labels
(each sample scored by a model that never saw it, as cleanlab's users make them), and the case
keeps the noisy and true labels, the noise mask and the probabilities. Which cases are
development and which test is declared in ``benchmarks/results/evaluation_split.md``.

Image data (``mnist.npz``, ``fashion_mnist.npz``, ``cifar10_jpeg.npz``) is read from the folder
given, else ``$LNC_DATA_DIR``. No torch is needed.
"""

import io
import os
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_wine, make_classification
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lnc_sklearn import asymmetric_noise, symmetric_noise

__all__ = ["DATASETS", "MODELS", "FLIPS", "load_dataset", "inject_noise", "out_of_fold_case"]

#: Development's class-conditional noise: each source class flips to a fixed similar class.
FLIPS = {
    "digits": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},
    "mnist": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},
    "fashion_mnist": {0: 6, 2: 4, 5: 7, 9: 7},
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    "breast_cancer": {0: 1},
}

MODELS = {
    "logistic": lambda seed: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    "forest": lambda seed: RandomForestClassifier(200, random_state=seed, n_jobs=1),
    "knn": lambda seed: make_pipeline(StandardScaler(), KNeighborsClassifier(15)),
    "mlp": lambda seed: make_pipeline(StandardScaler(), MLPClassifier((100,), early_stopping=True, max_iter=300,
                                                                      random_state=seed)),
    "boosting": lambda seed: HistGradientBoostingClassifier(random_state=seed),
}


def _image_file(name, data_dir):
    folder = data_dir or os.environ.get("LNC_DATA_DIR")
    if not folder:
        raise SystemExit(f"the {name} cases need its .npz: give --data-dir or set LNC_DATA_DIR")
    return np.load(Path(folder) / {"cifar10": "cifar10_jpeg.npz"}.get(name, f"{name}.npz"))


def _images(name, start, stop, data_dir):
    """Training images ``start:stop`` as float rows in [0, 1], and their labels."""
    arrays = _image_file(name, data_dir)
    labels = np.asarray(arrays["y_train"][start:stop], dtype=np.int64)
    if name != "cifar10":
        return arrays["x_train"][start:stop].reshape(stop - start, -1) / 255.0, labels
    from PIL import Image

    jpeg, offsets = arrays["train_jpeg"], arrays["train_offsets"]
    pixels = np.stack([
        np.asarray(Image.open(io.BytesIO(jpeg[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
        for i in range(start, stop)
    ])
    return pixels.reshape(stop - start, -1) / 255.0, labels


def _image_features(name, start, stop, n_components, data_dir):
    """Training images ``start:stop`` as ``n_components`` principal components of their pixels."""
    pixels, labels = _images(name, start, stop, data_dir)
    return PCA(n_components, random_state=0).fit_transform(pixels), labels


DATASETS = {
    "breast_cancer": lambda d: load_breast_cancer(return_X_y=True),
    "digits": lambda d: load_digits(return_X_y=True),
    "wine": lambda d: load_wine(return_X_y=True),
    "synthetic2": lambda d: make_classification(2000, 20, n_informative=5, n_classes=2, flip_y=0, random_state=0),
    "synthetic4": lambda d: make_classification(3000, 20, n_informative=8, n_classes=4, flip_y=0, random_state=0),
    "mnist": lambda d: _image_features("mnist", 0, 5000, 50, d),
    "fashion_mnist": lambda d: _image_features("fashion_mnist", 40000, 45000, 50, d),
    "cifar10": lambda d: _image_features("cifar10", 30000, 35000, 100, d),
}


def load_dataset(name, data_dir=None):
    """``(X, y)`` of a benchmark data set (see ``DATASETS``)."""
    X, y = DATASETS[name](data_dir)
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)


def inject_noise(labels, kind, rate, seed, dataset):
    """``(noisy_labels, noise_mask)``: ``kind`` is ``"sym"`` (that share moved to another class,
    uniformly), ``"flip"`` (``FLIPS[dataset]``) or ``"pair"`` (every class to the next one; for two
    classes, class 1 to 0)."""
    n_classes = int(labels.max()) + 1
    if kind == "sym":
        return symmetric_noise(labels, rate, n_classes=n_classes, include_true_class=False, random_state=seed)
    if kind == "flip":
        return asymmetric_noise(labels, rate, FLIPS[dataset], random_state=seed)
    if kind == "pair":
        mapping = {1: 0} if n_classes == 2 else {c: (c + 1) % n_classes for c in range(n_classes)}
        return asymmetric_noise(labels, rate, mapping, random_state=seed)
    raise ValueError(f"unknown noise kind {kind!r}; use 'sym', 'flip' or 'pair'")


def out_of_fold_case(dataset, model, kind, rate, seed, data_dir=None, cache=None):
    """One case as a dict of arrays: ``probs`` (out-of-fold), ``noisy_labels``, ``true_labels``,
    ``noise_mask`` and ``losses`` (``-log`` of the given label's probability, clipped at 1e-12).
    With ``cache`` (a folder) the case is read from, or written to, an ``.npz`` there."""
    name = f"oof_{dataset}_{model}_{kind}{round(rate * 100)}_s{seed}"
    path = None if cache is None else Path(cache) / f"{name}.npz"
    if path is not None and path.exists():
        with np.load(path) as stored:
            return {"name": name, **{key: stored[key] for key in stored.files}}
    X, y = load_dataset(dataset, data_dir)
    noisy, mask = inject_noise(y, kind, rate, seed, dataset)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    probs = cross_val_predict(MODELS[model](seed), X, noisy, cv=folds, method="predict_proba")
    probs = probs / probs.sum(axis=1, keepdims=True)
    losses = -np.log(np.clip(probs[np.arange(y.size), noisy], 1e-12, None))
    case = {"probs": probs, "noisy_labels": noisy, "true_labels": y, "noise_mask": mask, "losses": losses}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez_compressed(tmp, **case)
        tmp.replace(path)
    return {"name": name, **case}
