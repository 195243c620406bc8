"""Max pooling in channels-last memory order for the callback's own forwards, with the same values
as in the usual order. Plain PyTorch, no fastai.

On a CPU, PyTorch's max pooling over images in the usual (NCHW) memory order is slow: for the
small CNN of the examples it took most of an eval-mode forward, and about a ninth of that in
channels-last order (``docs/training.md``). A maximum is the same number whichever order its
candidates are read in, so copying a pooling layer's input into channels-last order and its
output back changes no value and no layout that a later layer sees: the forward's results are
those of the model as it is, to the last bit. Convolutions are left alone (their sums, in another
order, would differ in the last digits).
"""

import warnings
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["MAX_POOLING", "pooling_modules", "max_pooling_channels_last", "PoolingForward"]

# The pooling modules taken over. Adaptive max pooling to one value per channel (fastai's
# AdaptiveConcatPool2d) took as long in either order on this project's CPU, so the copy would
# only add to it; it is left out.
MAX_POOLING = (nn.MaxPool2d,)


def _plain_strided_images(x):
    """A 4-D floating-point tensor that is not already in channels-last order."""
    return torch.is_tensor(x) and x.ndim == 4 and torch.is_floating_point(x) and x.stride(1) != 1


def pooling_modules(model):
    """The modules of ``model`` that :func:`max_pooling_channels_last` takes over."""
    return [module for module in model.modules() if isinstance(module, MAX_POOLING) and not module.return_indices]


@contextmanager
def max_pooling_channels_last(model, modules=None):
    """Within the block, every ``nn.MaxPool2d`` of ``model`` (those that do not return indices)
    pools its images in channels-last order: its input is copied into that order, its output
    copied back to the usual one. Inputs already in channels-last order, and inputs that are not
    batches of floating-point images, pass as they are. Yields the number of pooling modules
    taken over; afterwards the model is as it was (its hooks are removed, also when the block
    raises). Meant for forwards without gradients. ``modules``: the model's
    :func:`pooling_modules`, where the caller has them already."""
    copied = {}

    def before(module, args):
        if args and _plain_strided_images(args[0]):
            copied[module] = True
            x = args[0]
            return (torch.empty_like(x, memory_format=torch.channels_last).copy_(x), *args[1:])
        copied[module] = False
        return None

    def after(module, args, output):
        if copied.pop(module, False) and torch.is_tensor(output):
            return output.contiguous()
        return None

    handles = []
    try:
        for module in pooling_modules(model) if modules is None else modules:
            handles.append(module.register_forward_pre_hook(before))
            # first of the module's forward hooks: one of the model's own sees the output in the usual order
            handles.append(module.register_forward_hook(after, prepend=True))
        yield len(handles) // 2
    finally:
        for handle in handles:
            handle.remove()


class PoolingForward:
    """``model(*xb)``, with max pooling in channels-last order (:func:`max_pooling_channels_last`)
    while ``on``. A forward that raises a ``RuntimeError`` with it runs again without it, and so
    does every later call, after one ``RuntimeWarning`` (an error that the pooling did not cause
    is raised by that second forward). The pooling modules are looked up once per model (the
    callback makes one of these for each fit), not at every batch; a model without any is called
    as it is."""

    def __init__(self, on=True):
        self.on = bool(on)
        self._model, self._modules = None, []

    def __getstate__(self):  # pickled and copied without the model it last ran
        return {"on": self.on}

    def __setstate__(self, state):
        self.__init__(state["on"])

    def __call__(self, model, xb):
        if self.on and model is not self._model:
            self._model, self._modules = model, pooling_modules(model)
        if self.on and self._modules:
            try:
                with max_pooling_channels_last(model, self._modules):
                    return model(*xb)
            except RuntimeError as error:
                self.on = False
                output = model(*xb)
                warnings.warn(f"the model's forward failed with its max pooling in channels-last order ({error}); the "
                              "callback's later forwards pool in the inputs' own order", RuntimeWarning, stacklevel=2)
                return output
        return model(*xb)
