"""The paper's experimental setup, shared by lnc's examples, benchmarks and tests.

- :mod:`lnc_experiments.data`: MNIST, Fashion-MNIST and CIFAR-10 in their official order from
  ``.npz`` files (``--data-dir`` or ``$LNC_DATA_DIR``), scikit-learn's digits, synthetic images,
  as fastai DataLoaders (per sample, or whole tensors kept on the GPU).
- :mod:`lnc_experiments.models`: PreAct ResNet-18 (the paper's network) and a small CNN.
- :mod:`lnc_experiments.cifar10`: Arazo et al.'s CIFAR-10 runs (``examples/cifar10.py``).
- :mod:`lnc_experiments.digits`: an MLP's training losses on the digits with injected noise.
- :mod:`lnc_experiments.reference_bmm`: the reference code's Beta-mixture fit and read-out,
  re-implemented as they behave, to compare lnc's detector with.
- :mod:`lnc_experiments.detection`: scoring detectors against the true noise mask.
- :mod:`lnc_experiments.properties`: the detectors' contract as property checks (hypothesis).
- :mod:`lnc_experiments.results`: benchmark result files with command, machine, date, versions.

Not part of lnc's stable interface. Importing this package imports nothing; each module imports
what it needs (fastai for the data, models and CIFAR-10 runs; hypothesis for the properties).
"""
