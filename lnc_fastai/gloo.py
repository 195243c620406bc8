"""An opt-in fix for fastai's distributed data loading on CPUs (the gloo backend).

fastai's ``DistributedDL`` broadcasts each epoch's sample order from rank 0 on a CUDA device,
as NCCL needs; with gloo on a machine without a GPU that fails. :class:`GlooBroadcast` makes
the learner's own ``DistributedDL`` objects broadcast on the backend's device instead. Nothing
changes for any other learner, and nothing changes at import.
"""

import functools

import torch
import torch.distributed as dist
from fastai.callback.core import Callback

__all__ = ["GlooBroadcast", "broadcast_on_the_backends_device"]


def broadcast_on_the_backends_device(dl, t, rank):
    """``DistributedDL._broadcast`` on CUDA for NCCL and on the CPU for any other backend."""
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.as_tensor(t, dtype=torch.long, device=device)
    dist.broadcast(t, rank)
    return t.cpu().tolist()


class GlooBroadcast(Callback):
    """Add to a learner trained with ``learn.distrib_ctx(cpu=True)`` (gloo): its distributed
    DataLoaders broadcast their sample order on the CPU. Runs after fastai's
    ``DistributedTrainer`` (order 11) has wrapped them."""

    order = 12

    def before_fit(self):
        self._fix()

    def before_train(self):
        self._fix()

    def before_validate(self):
        self._fix()

    def _fix(self):
        for dl in [*self.learn.dls.loaders, getattr(self.learn, "dl", None)]:
            if dl is not None and hasattr(dl, "world_size") and hasattr(dl, "_broadcast"):
                dl._broadcast = functools.partial(broadcast_on_the_backends_device, dl)
