"""What :class:`DynamicBootstrapMixUp` reads from fastai's loop: each training batch's sample
indices (from fastai's ``DataLoader``), the forward of an un-mixed batch, and how often the
network predicts the validation set's given labels (counted as fastai validates)."""

import warnings

import torch

from .batches import channels_last, class_indices, eval_mode, plain
from .distributed import unwrap, world
from .tracking import epoch_indices

__all__ = ["BatchReading"]


class BatchReading:
    """A mixin over the callback: sample indices, the un-mixed forward, the validation count."""

    def _stop_using_indices(self, why):
        self._use_indices, self._epoch_idxs = False, None
        warnings.warn(f"{why}; the bootstrapping weights and targets now come from a forward of each batch",
                      RuntimeWarning, stacklevel=3)

    def unmixed_logits(self, xb):
        """The un-mixed batch's logits from one forward without gradients in eval mode (BatchNorm's
        statistics stay), in channels-last order where ``channels_last_`` says so (the inputs as
        they are, with a warning, if the model fails on them), else with max pooling in that order."""
        model = unwrap(self.model)  # this rank's copy: no collective operation per batch
        with torch.no_grad(), eval_mode(model):
            if self.channels_last_:
                try:
                    return plain(model(*channels_last(xb))).float()
                except RuntimeError as error:  # e.g. a model that views its input as it is laid out
                    self.channels_last_ = False
                    logits = plain(model(*xb)).float()  # raises again where the order was not the cause
                    warnings.warn(f"the model's forward failed on channels-last inputs ({error}); this fit's "
                                  "forwards of the un-mixed batches use the inputs as they are", RuntimeWarning, stacklevel=2)
                    return logits
            return plain(self._forward(model, xb)).float()

    def _batch_index(self, plan, labels):
        """This batch's dataset indices on the device, or None (then never again this run) where
        they are unknown or do not fit; the labels they point at are compared with the batch's on
        the device, checked on the first batch and after the epoch."""
        if not self._use_indices or self.p_noisy_ is None:
            return None
        n, device = labels.shape[0], labels.device
        if self.iter == 0 or self._epoch_idxs is None:
            idxs = epoch_indices(self.dl)
            if idxs is None:
                self._use_indices = False  # e.g. a plain PyTorch DataLoader: the forward per batch
                return None
            self._epoch_idxs = torch.as_tensor(idxs, dtype=torch.long).to(device, non_blocking=True)
            self._mismatch = torch.zeros((), dtype=torch.long, device=device)
        start = self.iter * (getattr(self.dl, "bs", None) or n)
        idx = self._epoch_idxs[start : start + n]
        if idx.numel() != n:
            self._stop_using_indices(f"epoch {self.epoch}, batch {self.iter}: the DataLoader's indices do not cover the batch")
            return None
        self._mismatch += (self.correction.device_arrays(plan, device)["labels"][idx] != labels).sum()
        if self.iter == 0 and int(self._mismatch):
            self._mismatch = None
            self._stop_using_indices(f"epoch {self.epoch}: the first batch's labels differ from those its indices point at")
            return None
        return idx

    def before_validate(self):
        self._valid_hits = None
        if self.mode == "lnc" and self._fitting:
            device = next(self.model.parameters(), torch.empty(0)).device
            self._valid_hits = torch.zeros(2, dtype=torch.long, device=device)

    def after_pred(self):
        if self.training or self._valid_hits is None:
            return
        pred = plain(self.pred)
        if not class_indices(self.yb) or pred.ndim != 2 or self.yb[0].shape[0] != pred.shape[0]:
            self._valid_hits = None  # not class indices: this epoch is not counted
            return
        y = self.yb[0]
        self._valid_hits[0] += (pred.argmax(dim=1) == y.to(pred.device)).sum()
        self._valid_hits[1] += y.shape[0]

    def after_validate(self):
        hits, self._valid_hits = self._valid_hits, None
        if hits is None:
            return
        if world()[1] > 1:
            torch.distributed.all_reduce(hits)
        matched, seen = (int(v) for v in hits.cpu())
        if seen:
            self.valid_fits_.append(matched / seen)
