"""Fitted detectors to and from plain JSON-able dicts: no pickle, nothing executed on load.

A pickle can run code when it is loaded, so a detector saved by someone else (or a
checkpoint) is stored as its class name, its constructor parameters and its fitted
attributes, and rebuilt only for the classes listed in ``KNOWN_CLASSES``. Floats survive a JSON
round trip exactly (Python writes the shortest repr that reads back to the same double).
"""

import json
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.mixture import GaussianMixture

from ._atomic import atomic_path
from ._readout import migrate_state
from .beta_mixture import BetaMixtureNoiseDetector
from .gaussian_mixture import GaussianMixtureNoiseDetector
from .noise_count import NoiseCount

__all__ = ["detector_to_dict", "detector_from_dict", "save_detector", "load_detector", "KNOWN_CLASSES"]

KNOWN_CLASSES = {
    "lnc_sklearn.BetaMixtureNoiseDetector": BetaMixtureNoiseDetector,
    "lnc_sklearn.GaussianMixtureNoiseDetector": GaussianMixtureNoiseDetector,
    "sklearn.mixture.GaussianMixture": GaussianMixture,
}
_NAMES = {cls: name for name, cls in KNOWN_CLASSES.items()}
FORMAT = "lnc-detector/1"
#: Private fitted attributes that the read-outs need, saved beside the public ones.
PRIVATE_FITTED = ("_readout", "_gaussian_mixture")
_DETECTORS = (BetaMixtureNoiseDetector, GaussianMixtureNoiseDetector)


def _encode(value, where):
    if isinstance(value, BaseEstimator):
        name = _NAMES.get(type(value))
        if name is None:
            raise TypeError(
                f"{where}: cannot save a {type(value).__name__} without pickle; known classes: {sorted(KNOWN_CLASSES)}"
            )
        params = {k: _encode(v, f"{where}.{k}") for k, v in value.get_params(deep=False).items()}
        fitted = {
            k: _encode(v, f"{where}.{k}")
            for k, v in vars(value).items()
            if (k.endswith("_") and not k.startswith("_")) or k in PRIVATE_FITTED
        }
        return {"estimator": name, "params": params, "fitted": fitted}
    if isinstance(value, NoiseCount):
        fields = {k: getattr(value, k) for k in ("rate", "interval", "verdict", "source", "classes", "class_rates",
                                                 "noise_matrix", "separation", "most_disbelieved")}
        return {"noise_count": {k: _encode(v, f"{where}.{k}") for k, v in fields.items()}}
    if isinstance(value, dict):
        return {"dict": {str(k): _encode(v, f"{where}.{k}") for k, v in value.items()}}
    if isinstance(value, np.ndarray):
        if value.dtype == object and all(isinstance(v, str) for v in value.ravel()):
            value = value.astype(str)  # class names from pandas
        if value.dtype.kind not in "biufU":
            raise TypeError(f"{where}: cannot save an array of dtype {value.dtype}")
        return {"ndarray": value.ravel().tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return {"tuple" if isinstance(value, tuple) else "list": [_encode(v, where) for v in value]}
    raise TypeError(f"{where}: cannot save a value of type {type(value).__name__} without pickle")


def _decode(value, where):
    if not isinstance(value, dict):
        return value
    if "estimator" in value:
        cls = KNOWN_CLASSES.get(value["estimator"])
        if cls is None:
            raise ValueError(f"{where}: unknown estimator {value['estimator']!r}; known: {sorted(KNOWN_CLASSES)}")
        params = {k: _decode(v, f"{where}.{k}") for k, v in value["params"].items()}
        fitted = {k: _decode(v, f"{where}.{k}") for k, v in value["fitted"].items()}
        if cls.__name__ == "BetaMixtureNoiseDetector" and "anchored" not in params:
            # saved before anchoring had a parameter of its own: only "anchored" anchored
            params["anchored"] = params.get("init_params") == "anchored"
            params["init_params"] = {"paper": "fixed", "anchored": "fixed"}.get(params.get("init_params"), params.get("init_params"))
        if "lower_bound_" in fitted:  # saved before the attribute was renamed
            fitted["log_likelihood_"] = fitted.pop("lower_bound_")
        if cls in _DETECTORS:  # saved by an earlier version: today's parameters and fitted attributes
            state = migrate_state(cls.__name__, {**params, **fitted})
            params = {k: state.pop(k) for k in list(state) if k in cls().get_params()}
            fitted = state
        estimator = cls(**params)
        for k, v in fitted.items():
            setattr(estimator, k, v)
        return estimator
    if "noise_count" in value:
        return NoiseCount(**{k: _decode(v, f"{where}.{k}") for k, v in value["noise_count"].items()})
    if "dict" in value:
        return {k: _decode(v, f"{where}.{k}") for k, v in value["dict"].items()}
    if "ndarray" in value:
        dtype = np.dtype(value["dtype"])
        if dtype.kind not in "biufU":
            raise ValueError(f"{where}: arrays of dtype {dtype} are not accepted")
        return np.asarray(value["ndarray"], dtype=dtype).reshape(value["shape"])
    if "tuple" in value:
        return tuple(_decode(v, where) for v in value["tuple"])
    if "list" in value:
        return [_decode(v, where) for v in value["list"]]
    raise ValueError(f"{where}: unrecognised entry {sorted(value)}")


def detector_to_dict(detector):
    """A JSON-able description of ``detector`` (fitted or not) that :func:`detector_from_dict`
    turns back into an equal detector. Raises ``TypeError`` for classes it cannot rebuild."""
    return {"format": FORMAT, "detector": _encode(detector, "detector")}


def detector_from_dict(state):
    """The detector described by :func:`detector_to_dict`'s output; ``ValueError`` if it is not one.

    >>> import numpy as np
    >>> losses = np.random.default_rng(0).gamma(1.0, 0.3, 500)
    >>> fitted = BetaMixtureNoiseDetector().fit(losses)
    >>> copy = detector_from_dict(json.loads(json.dumps(detector_to_dict(fitted))))
    >>> bool(np.array_equal(copy.predict_proba(losses), fitted.predict_proba(losses)))
    True
    """
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"not a saved lnc detector (expected a dict with format {FORMAT!r})")
    return _decode(state["detector"], "detector")


def save_detector(detector, path):
    """Write ``detector`` to ``path`` as JSON, whole or not at all."""
    text = json.dumps(detector_to_dict(detector))
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def load_detector(path):
    """Read a detector written by :func:`save_detector`; ``ValueError`` if the file is not one."""
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a saved lnc detector (not JSON: {error})") from None
    return detector_from_dict(state)
