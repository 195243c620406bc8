"""The paper's methods (M-DYR-H, M-DYR-S, MD-DYR-SH) inside :class:`DynamicBootstrapMixUp`:
their options, phases and per-batch weights, as Arazo et al. (2019) and their reference code
train. A mixin over the callback; lnc's own mode does not use it."""

import torch.nn.functional as F

from .batches import WEIGHT_CLIP, plain
from .losses import bootstrap_targets, class_balance_regulariser, detector_mixing_weights, sharpening_temperature
from .schedule import PAPER_MIXING_ONLY, check_sharpening, epochs_of, phase_end, sharpening_epochs

__all__ = ["PaperMode", "PAPER_OPTIONS", "BOOTSTRAPS"]

# "soft-to-hard" is MD-DYR-SH's soft bootstrapping with targets sharpened towards hard ones.
BOOTSTRAPS = ("hard", "soft", "soft-to-hard")
# The paper's options and their defaults (``mode="paper"`` and the presets; ``bootstrap`` and
# ``reg_weight`` also in lnc mode).
PAPER_OPTIONS = {"bootstrap": None, "reg_weight": 1.0, "detector_mixing": False, "mixing_only": PAPER_MIXING_ONLY,
                 "sharpening": None, "augmented_tracking": False, "table_size": 4096}


class PaperMode:
    """The paper's options (checked), its phases and the per-batch weights from one forward of
    the un-mixed batch through the posterior table."""

    def _set_paper_options(self, bootstrap, reg_weight, detector_mixing, mixing_only, sharpening, augmented_tracking,
                           table_size):
        if bootstrap not in BOOTSTRAPS:
            raise ValueError(f"bootstrap must be one of {BOOTSTRAPS}, got {bootstrap!r}")
        if self.mode == "lnc" and (bootstrap == "soft-to-hard" or detector_mixing or sharpening is not None):
            raise ValueError("bootstrap='soft-to-hard', detector_mixing and sharpening are MD-DYR-SH's, a paper method: "
                             "use DynamicBootstrapMixUp.preset('md-dyr-sh') or mode='paper'")
        if not reg_weight >= 0:
            raise ValueError(f"reg_weight must be >= 0, got {reg_weight!r}")
        epochs_of(mixing_only, 1, "mixing_only")  # validates
        self.bootstrap, self.reg_weight, self.detector_mixing = bootstrap, float(reg_weight), bool(detector_mixing)
        self.mixing_only, self.sharpening = mixing_only, check_sharpening(sharpening)
        self.augmented_tracking, self.table_size = bool(augmented_tracking), int(table_size)

    def _start_paper_phases(self):
        self.bootstrap_epoch = self.warmup_epochs
        if self.detector_mixing:
            self.bootstrap_epoch = phase_end(self.warmup, self.mixing_only, self.n_epoch, "mixing_only")
        self.sharpening_epochs = sharpening_epochs(self.sharpening, self.bootstrap_epoch, self.n_epoch)

    @property
    def temperature(self):
        """This epoch's temperature of the bootstrapping targets (1 except for "soft-to-hard")."""
        if self.bootstrap != "soft-to-hard":
            return 1.0
        return sharpening_temperature(self.epoch, *self.sharpening_epochs)

    def noise_weights_and_targets(self, xb, labels):
        """p(noisy) and bootstrapping targets of the un-mixed batch, from ONE forward pass without
        gradients in eval mode (so BatchNorm's running statistics do not move), all on the device
        (also lnc mode's, where a batch's sample indices are not known)."""
        logits = self.unmixed_logits(xb)
        losses = F.cross_entropy(logits, plain(labels), reduction="none")
        self.table.to(losses.device)
        kind = "soft" if self.bootstrap == "soft-to-hard" else self.bootstrap
        weights = self.table(losses).clamp_(*WEIGHT_CLIP)
        return weights, bootstrap_targets(logits, kind, self.temperature)

    def paper_batch(self, labels, partner, phase):
        """``(input_lam, loss_lam, weights, targets)`` of a paper-mode batch: one ``lam`` per batch
        (detector mixing's per-sample shares after the warm-up), weights and targets from the
        un-mixed forward once bootstrapping (none in the mixing-only epochs)."""
        lam = float(self.distrib.sample())
        input_lam = loss_lam = lam
        weights = targets = None
        if phase != "mixup":
            weights, targets = self.noise_weights_and_targets(self.xb, labels)
            if self.detector_mixing:
                input_lam = detector_mixing_weights(weights, weights[partner])
                if phase == "bootstrap":  # the reference weighs the partners' loss terms half and half
                    loss_lam = 0.5
            if phase == "mixing":  # the loss is plain mixup's, with the fresh draw
                weights = targets = None
        return input_lam, loss_lam, weights, targets

    def paper_regulariser(self, pred):
        return self.reg_weight * class_balance_regulariser(pred)
