"""One process of the distributed test (``tests/test_distributed.py``), or the whole run alone.

Trains a tiny model for two epochs with ``DynamicBootstrapMixUp`` under ``learn.distrib_ctx()``
when started by ``torchrun`` (plain ``learn.fit`` otherwise) and writes what the callback ended
with to ``--out``: ``rank<r>.npz`` (per-sample arrays and the detector's parameters per epoch)
and ``report<r>.csv``.

The learning rate is 0, so the model is the same in a one-process and a two-process run: with
several processes, DDP averages gradients over differently composed half-batches and the
trajectories would part. Everything else runs for real: DDP and fastai's ``DistributedDL``, the
per-batch bootstrapping forward after warm-up, the per-epoch loss pass on each rank's share,
the gather, the refit and the report. Comparing the two runs then tests exactly that every rank
fits on the whole training set in dataset order.
"""

import argparse
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from fastai.basics import CrossEntropyLossFlat, Datasets, Learner, TensorBase, TensorCategory
from fastai.distributed import DistributedTrainer  # noqa: F401  (adds Learner.distrib_ctx, as fastai's docs import it)
from fastai.torch_core import set_seed
from torch import nn

from lnc_fastai import DynamicBootstrapMixUp, GlooBroadcast

N_TRAIN, N_VALID, N_FEATURES, N_CLASSES = 203, 40, 6, 3  # 203: odd, so the ranks' shares need padding
PARAMETERS = ["alphas_0", "alphas_1", "betas_0", "betas_1", "weights_0", "weights_1", "bounds_0", "bounds_1"]


class Features(TensorBase):
    pass


def learner():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VALID, N_FEATURES, generator=generator)
    labels = x[:, :N_CLASSES].argmax(dim=1)
    flip = torch.rand(N_TRAIN + N_VALID, generator=generator) < 0.3
    labels[flip] = (labels[flip] + 1) % N_CLASSES
    datasets = Datasets(
        range(N_TRAIN + N_VALID),
        tfms=[[lambda i: Features(x[i])], [lambda i: TensorCategory(labels[i])]],
        splits=[list(range(N_TRAIN)), list(range(N_TRAIN, N_TRAIN + N_VALID))],
    )
    dls = datasets.dataloaders(bs=16, num_workers=0, device="cpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(N_FEATURES, 16), nn.ReLU(), nn.Linear(16, N_CLASSES))
    cb = DynamicBootstrapMixUp(mode="paper", warmup=1, noise_mask=flip[:N_TRAIN].numpy())
    # GlooBroadcast: fastai's DistributedDL broadcasts on CUDA, which gloo on a CPU cannot.
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), cbs=[cb, GlooBroadcast()]), cb


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(0)
    learn, cb = learner()
    rank = int(os.environ.get("RANK", "0"))
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            with learn.distrib_ctx(cpu=not torch.cuda.is_available()):
                learn.fit(2, lr=0.0)
        else:
            learn.fit(2, lr=0.0)
    np.savez(
        out / f"rank{rank}.npz",
        losses=cb.losses_,
        labels=cb.labels_,
        predictions=cb.predictions_,
        p_noisy=cb.p_noisy_,
        parameters=cb.history[PARAMETERS].to_numpy(float),
        epochs=cb.history["epoch"].to_numpy(),
    )
    cb.report().to_csv(out / f"report{rank}.csv")


if __name__ == "__main__":
    main()
