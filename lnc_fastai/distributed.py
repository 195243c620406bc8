"""The per-epoch loss pass under ``torch.distributed``: every rank ends with the whole training
set's losses in dataset order.

fastai's ``DistributedDL`` hands each rank a contiguous block of a padded index list, and
gathering batches interleaves the ranks, so gathered losses are not in dataset order unless the
sample indices travel with them. Here each rank computes the losses of its own block of
``0 .. n - 1`` (padded like fastai's, with the padding marked), and the losses are gathered
together with their indices; the padding is dropped and the values are put in their places.
The gather checks that every sample arrived exactly once: no rank can fit the detector on a
partial or mis-ordered array.

The detector is then fitted on every rank from the same array. The fit is deterministic
(NumPy, no randomness in the default detector), so every rank gets the same detector without
sending it around; the tests check that the ranks agree.
"""

import math

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["world", "rank_share", "gather_in_dataset_order", "unwrap"]


def world():
    """``(rank, world_size)``: ``(0, 1)`` outside a distributed run."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_share(n, rank, world_size):
    """The sample indices ``rank`` computes, and which of them are real (not padding).

    ``0 .. n - 1`` is padded to a multiple of ``world_size`` by repeating its first indices, as
    fastai's ``DistributedDL`` does, so that every rank runs the same number of samples; each
    rank takes a contiguous block.

    >>> rank_share(5, 1, 2)
    (array([3, 4, 0]), array([ True,  True, False]))
    """
    per_rank = math.ceil(n / world_size)
    positions = np.arange(rank * per_rank, (rank + 1) * per_rank)
    return positions % n, positions < n


def gather_in_dataset_order(values, indices, real, n):
    """Gather each rank's ``values`` (a dict of equal-length tensors) with their sample
    ``indices``; return NumPy arrays of length ``n`` in dataset order, the same on every rank.

    Raises ``RuntimeError`` unless every index in ``0 .. n - 1`` arrived exactly once.
    """
    _, world_size = world()
    device = indices.device

    def all_gather(tensor):
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts).cpu().numpy()

    all_indices = all_gather(indices)
    keep = all_gather(real.to(device=device, dtype=torch.uint8)).astype(bool)
    placed = all_indices[keep]
    counts = np.bincount(placed, minlength=n)
    if placed.size != n or counts.size != n or not np.all(counts == 1):
        raise RuntimeError(
            f"the gathered per-sample losses do not cover the {n} training samples exactly once "
            f"({placed.size} arrived, {int(np.sum(counts == 0))} missing): refusing to fit on them"
        )
    ordered = {}
    for name, tensor in values.items():
        # gloo cannot gather every dtype (float16); gather in a wide one, then cast back
        wide = tensor.to(torch.float32) if tensor.is_floating_point() else tensor.to(torch.int64)
        gathered = all_gather(wide)[keep]
        out = np.empty((n, *gathered.shape[1:]), dtype=gathered.dtype)
        out[placed] = gathered
        ordered[name] = out.astype(np.float16) if tensor.dtype == torch.float16 else out
    return ordered


def unwrap(model):
    """The module inside ``DistributedDataParallel`` (or ``DataParallel``); ``model`` otherwise.

    The callback's own forwards (the per-epoch pass, the per-batch eval forward) use it, so they
    start no collective operation: ranks may run them a different number of times."""
    return model.module if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)) else model
