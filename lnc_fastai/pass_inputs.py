"""The loss pass's input batches, kept from one pass to the next. Plain PyTorch, no fastai.

The pass runs the training set through the model in dataset order with validation transforms:
the same batches every time, which the data pipeline builds again item by item each time (on a
CPU that cost about as much as the model's forward itself, ``benchmarks/callback_overhead.py``).
:class:`PassInputs` keeps the batches of one pass and, once a second pass has built exactly the
same tensors again, hands them out instead of the pipeline's, so that later passes cost the
model's forward and one batch of the pipeline: the first batch is still built, compared with the
kept one, and makes the pipeline draw from the random generators as a whole pass would, so that
keeping the batches leaves the rest of the run as it was. Where the second pass differs (random validation transforms, data that
changed) or the batches would outgrow the memory limit, the pipeline is used for the rest of the
fit; the first pass with a different loader or batch size starts over.
"""

import torch

__all__ = ["PassInputs", "DEFAULT_LIMIT_BYTES", "batch_bytes", "same_batch"]

DEFAULT_LIMIT_BYTES = 2 * 2**30  # host memory for the kept batches (CIFAR-10's 50,000 images take 0.6 GiB)


def batch_bytes(batch):
    """Bytes of the tensors in ``batch`` (a tuple of tensors)."""
    return sum(t.numel() * t.element_size() for t in batch if torch.is_tensor(t))


def same_batch(a, b):
    """Whether two batches hold the same tensors: same count, shapes, dtypes and values."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if not (torch.is_tensor(x) and torch.is_tensor(y)):
            return False
        x, y = x.as_subclass(torch.Tensor), y.as_subclass(torch.Tensor)
        if x.shape != y.shape or x.dtype != y.dtype or not torch.equal(x, y.to(x.device)):
            return False
    return True


class PassInputs:
    """The batches of the loss pass, kept on the host between passes.

    ``batches(key, pipeline, device)`` yields the pass's batches on ``device``: from ``pipeline``
    (an iterable of tuples of tensors) while the batches are being kept or checked, from memory
    once a second pass has matched the first. ``key`` names what the pass reads (loader, sample
    share, batch size); another key starts over. ``state`` is ``"keeping"``, ``"checking"``,
    ``"kept"`` or ``"off"`` (the pipeline from now on: ``limit_bytes`` exceeded, or a pass that did
    not match)."""

    def __init__(self, limit_bytes=DEFAULT_LIMIT_BYTES):
        if isinstance(limit_bytes, bool) or not isinstance(limit_bytes, int) or limit_bytes < 0:
            raise ValueError(f"limit_bytes must be an int >= 0, got {limit_bytes!r}")
        self.limit_bytes = limit_bytes
        self.key, self.state, self.kept, self.why_off = None, "keeping", [], None

    def _off(self, why):
        self.state, self.kept, self.why_off = "off", [], why

    def batches(self, key, pipeline, device):
        if key != self.key:
            self.key, self.state, self.kept, self.why_off = key, "keeping", [], None
            if self.limit_bytes == 0:
                self._off("no memory allowed")
        if self.state == "kept":
            # The pipeline still builds the first batch: starting it draws from the random
            # generators as a whole pass does (PyTorch's DataLoader draws its seed), so a run makes
            # the same draws with the kept batches as without; and the batch is compared again.
            batches = iter(pipeline)
            first = next(batches, None)
            if first is not None and same_batch(self.kept[0], first):
                close = getattr(batches, "close", None)
                if close is not None:
                    close()
                yield first
                for batch in self.kept[1:]:
                    yield tuple(t.to(device, non_blocking=True) for t in batch)
                return
            self._off("a pass built another first batch than the kept one (random transforms or changed data)")
            if first is not None:
                yield first
                yield from batches
            return
        if self.state == "off":
            yield from pipeline
            return
        if self.state == "keeping":
            kept, size = [], 0
            for batch in pipeline:
                if kept is not None:
                    size += batch_bytes(batch)
                    if size > self.limit_bytes or not all(torch.is_tensor(t) for t in batch):
                        kept = None
                    else:
                        kept.append(tuple(t.detach().to("cpu", copy=t.device.type == "cpu") for t in batch))
                yield batch
            if kept is None:
                self._off(f"the batches exceed {self.limit_bytes} bytes or are not all tensors")
            else:
                self.state, self.kept = "checking", kept
            return
        # checking: this pass runs the pipeline and compares its batches with the kept ones
        matched, i = True, 0
        for batch in pipeline:
            if matched and (i >= len(self.kept) or not same_batch(self.kept[i], batch)):
                matched = False
            i += 1
            yield batch
        if matched and i == len(self.kept):
            self.state = "kept"
        else:
            self._off("a pass built other batches than the one before (random transforms or changed data)")
