"""Arazo et al.'s CIFAR-10 experiments with fastai: PreAct ResNet-18 under label noise.

Cross-entropy, fastai's MixUp, M-DYR-H, M-DYR-S, MD-DYR-SH or the callback's default, with the
paper's schedule or a one-cycle one, on symmetric, asymmetric or your own noisy labels. Every
option, and what the schedules do: ``python examples/cifar10.py --help`` (the code lives in
``lnc_experiments/cifar10.py``, which the benchmarks and tests share).

Run (full paper schedule, GPU):  ``python examples/cifar10.py --method m-dyr-h --noise 0.8``
Short schedule:  ``python examples/cifar10.py --schedule one-cycle --epochs 30 --method m-dyr-h --noise 0.8``
Small CPU run:  ``python examples/cifar10.py --schedule one-cycle --epochs 2 --n-train 2000 --n-test 1000 --width 16``
"""

from lnc_experiments.cifar10 import main

if __name__ == "__main__":
    main()
