"""lnc_fastai: training through label noise with fastai (dynamic-bootstrapping mixup).

The callback lands with its own issue; this package already depends on ``lnc_sklearn``
(never the other way round) for the noise detectors.
"""
