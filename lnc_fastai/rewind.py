"""lnc mode under heavy noise: training resumes at the memorisation call from the best weights of
the wait.

From the warm-up floor until the network is seen to memorise, lnc's mode trains on the given
labels without mixup, so that a short or augmented schedule that never memorises scores as
cross-entropy does. Where the network does memorise, the call comes only once its validation
accuracy has stopped rising (:func:`lnc_fastai.adaptive.still_improving`): by then it has fitted
part of the wrong labels, those samples' losses are low, the detector no longer flags them and
bootstrapping keeps them. So while it waits the callback keeps a host copy of the weights (model
and optimizer state) of the epoch whose validation accuracy was highest, with that epoch's
p(noisy) and softmax averages, and at the call training goes on from them: the same idea as
early stopping's checkpoint, taken up again with bootstrapping and strong mixup instead of
stopping. The learning-rate schedule is not rewound.
"""

import torch
from fastai.torch_core import apply, to_device

__all__ = ["host_copy", "RewindMixin"]


def host_copy(value):
    """A copy of ``value`` with every tensor detached and copied to host memory (nested dicts,
    lists and tuples followed, as fastai's ``apply`` does); other leaves are kept as they are.
    A copy even on a CPU, where ``to("cpu")`` alone would return the tensor the optimizer goes
    on updating in place."""
    return apply(lambda o: o.detach().to("cpu", copy=True) if torch.is_tensor(o) else o, value)


class RewindMixin:
    """Keeps the wait's best weights (``after_validate``) and goes back to them at the call
    (``before_train`` of the call's epoch). The copy lives in host memory only while lnc mode
    waits under heavy noise; it is dropped at the call, at the end of the fit, and never saved
    with the callback's state or an exported learner."""

    def _waiting_under_heavy_noise(self):
        """lnc mode under heavy noise, from the warm-up floor until the call (or any bootstrapping):
        the epochs that train unmixed with ``unmixed_until_memorising``, and the rewind's candidates."""
        return (self.mode == "lnc" and self.noise_regime_ == "heavy" and self.memorising_since_ is None
                and self.bootstrap_since_ is None and self.epoch >= self.warmup_epochs)

    def _keep_if_best(self):
        """After validation: keep this epoch's weights if the wait has seen no higher validation
        accuracy (the accuracy of the epoch just trained, whose pass made ``p_noisy_``)."""
        if not (self.rewind and self.valid_fits_ and self._waiting_under_heavy_noise()):
            return
        score = self.valid_fits_[-1]
        best = self._rewind_point["valid_fit"] if self._rewind_point is not None else -1.0
        if not score > best:
            return
        opt = getattr(self.learn, "opt", None)
        self._rewind_point = {
            "epoch": self.epoch, "valid_fit": float(score),
            "model": host_copy(self.learn.model.state_dict()),
            "opt": host_copy(opt.state_dict()) if opt is not None and hasattr(opt, "state_dict") else None,
            "p_noisy": None if self.p_noisy_ is None else self.p_noisy_.copy(),
            "targets": None if self.target_average_ is None else self.target_average_.copy(),
        }

    def _rewind_at_call(self):
        """Before the call's first epoch trains: the kept weights, p(noisy) and targets back."""
        point = self._rewind_point
        if point is None or self.memorising_since_ != self.epoch:
            return
        self._rewind_point = None
        device = next(self.model.parameters(), torch.empty(0)).device
        self.learn.model.load_state_dict(point["model"])
        if point["opt"] is not None:
            self.learn.opt.load_state_dict(to_device(point["opt"], device))
        if point["p_noisy"] is not None and self.p_noisy_ is not None and point["p_noisy"].shape == self.p_noisy_.shape:
            self.p_noisy_ = point["p_noisy"]
        if point["targets"] is not None and self.target_average_ is not None and point["targets"].shape == self.target_average_.shape:
            self.target_average_ = point["targets"]
        self._per_sample = None  # the device copies are made again from the arrays
        self.rewound_to_ = point["epoch"]
