"""Arazo et al.'s CIFAR-10 experiments with fastai: PreAct ResNet-18 under label noise.

Methods: plain cross-entropy (``ce``), fastai's ``MixUp`` (``mixup``), and
``DynamicBootstrapMixUp`` as M-DYR-H (``m-dyr-h``), M-DYR-S (``m-dyr-s``), MD-DYR-SH
(``md-dyr-sh``: mixing weights from the detector, soft targets sharpened towards hard ones; the
paper's choice at 90% noise) and with no arguments at all (``default``: whatever
``DynamicBootstrapMixUp()`` does, with its own warm-up fraction in either schedule). Noise: symmetric (paper convention: a fraction r of the samples gets
a uniformly random label, its true class included) or asymmetric (truck -> automobile, bird ->
airplane, deer -> horse, cat <-> dog), or a label array of your own (``--labels file.npy``, one
int per training image in the official order; it replaces the injected noise and is compared with
the official labels to measure detection).

Schedules:
  paper      SGD (momentum 0.9, weight decay 1e-4 on every parameter), batch 128, lr 0.1 divided
             by 10 at 1/3 and 5/6 of the run (epochs 100 and 250 of 300); plain mixup until
             epoch 105 of 300, bootstrapping from epoch 106; MD-DYR-SH mixes by the detector
             from epoch 106, bootstraps from 111 and sharpens over 111-199 (1-based, as the
             reference code).
             Every epoch figure scales with ``--epochs`` (300 by default).
  one-cycle  ``fit_one_cycle(--epochs, --lr)`` with the same SGD (fastai cycles its momentum),
             weight decay 5e-4; warm-up 35% of the run.

Data stay on the training device as uint8; each batch is indexed out of them, augmented there
(random crop after 4-pixel zero padding, horizontal flip) and normalised, so a GPU never waits
for the CPU. On CUDA, mixed precision and channels-last memory are on by default.

Data: ``--data-dir``, else ``$LNC_DATA_DIR`` (a folder holding ``cifar10_jpeg.npz``); with
neither, fastai's ``untar_data(URLs.CIFAR)`` (network needed).

Run (full paper schedule, GPU):  ``python examples/cifar10.py --method m-dyr-h --noise 0.8``
Short schedule:  ``python examples/cifar10.py --schedule one-cycle --epochs 30 --method m-dyr-h --noise 0.8``
Small CPU run:  ``python examples/cifar10.py --schedule one-cycle --epochs 2 --n-train 2000 --n-test 1000 --width 16``
"""

from lnc_experiments.cifar10 import main

if __name__ == "__main__":
    main()
