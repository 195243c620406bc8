"""``DynamicBootstrapMixUp``: train through label noise with fastai: lnc's own mode (the default)
and the paper's M-DYR-H, M-DYR-S and MD-DYR-SH (``mode="paper"``, or the named presets).

Per training batch: mix the batch with a shuffled copy of itself (``lam ~ Beta(alpha, alpha)``,
one per batch as in the paper, or in lnc's mode one per sample as fastai's ``MixUp`` draws it)
and, once bootstrapping has started, bootstrap each partner
towards the network's own prediction in proportion to its probability of being mislabelled.
After every training epoch: one pass over the un-augmented training set gives each sample's
cross-entropy against its given label, in dataset order; the detector is refitted on it.

The paper's methods take each batch's weights and targets from an extra forward of the
un-mixed batch. lnc's mode takes them from the per-epoch pass, read by the batch's sample
indices: the weight is p(noisy) scaled to the detector's noise count (none found: plain mixup),
the target a running average of the sample's softmax over epochs (:mod:`lnc_fastai.adaptive`).

The callback swaps the learner's loss as fastai's ``MixHandler`` does. The maths lives in
:mod:`lnc_fastai.losses`, the phases in :mod:`lnc_fastai.schedule`, the per-epoch pass and refit
in :mod:`lnc_fastai.tracking`, the results in :mod:`lnc_fastai.results` and checkpoints in
:mod:`lnc_fastai.state`.
"""

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.distributions.beta import Beta
from fastai.torch_core import tensor
from fastai.callback.core import CancelBatchException
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.mixup import MixHandler
from fastai.learner import ValueMetric

from .adaptive import ramp
from .batch_outputs import BatchOutputs
from .batches import WEIGHT_CLIP, MixedBatch, channels_last, check_targets, class_indices, eval_mode, mix_inputs, plain
from .distributed import unwrap, world
from .losses import (
    bootstrap_targets,
    class_balance_regulariser,
    detector_mixing_weights,
    mixup_bootstrapping_loss,
    sharpening_temperature,
)
from .pass_inputs import DEFAULT_LIMIT_BYTES, PassInputs
from .pooling import PoolingForward
from .results import ResultsMixin
from .rewind import RewindMixin
from .schedule import PAPER_MIXING_ONLY, check_sharpening, epochs_of, phase_end, sharpening_epochs
from .state import StateMixin
from .tracking import TrackingMixin, epoch_indices

__all__ = ["DynamicBootstrapMixUp", "PRESETS", "MODES"]

MODES = ("lnc", "paper")
# Each mode's values for the arguments left at None.
MODE_DEFAULTS = {
    "lnc": {"bootstrap": "hard", "alpha": 0.4, "warmup": 0.1},
    "paper": {"bootstrap": "hard", "alpha": 32.0, "warmup": 0.35},
}
# lnc mode's pass every this many epochs on a CPU (benchmarks/results/callback_overhead_*_cpu.md)
AUTO_TRACKING_EVERY_CPU = 3
# The paper's methods, exactly as published (see the class docstring for their phases).
PRESETS = {
    "m-dyr-h": {"mode": "paper", "bootstrap": "hard"},
    "m-dyr-s": {"mode": "paper", "bootstrap": "soft"},
    "md-dyr-sh": {"mode": "paper", "bootstrap": "soft-to-hard", "detector_mixing": True},
}

# "soft-to-hard" is MD-DYR-SH's soft bootstrapping with targets sharpened towards hard ones.
BOOTSTRAPS = ("hard", "soft", "soft-to-hard")


class DynamicBootstrapMixUp(TrackingMixin, RewindMixin, ResultsMixin, StateMixin, MixHandler):
    """Mixup with dynamic bootstrapping (Arazo et al., 2019) as a fastai callback.

    ``DynamicBootstrapMixUp()`` is lnc's own mode (``mode="lnc"``), made for short schedules and
    unknown, often small, noise rates: it trains as plain mixup while the detector finds little
    or no noise, and bootstraps the wrong labels it counts towards a running average of their own
    predictions. Under heavy noise it trains on the given labels without mixup until the network
    starts to memorise them, then bootstraps with strong mixup towards its current predictions.
    A network that fits nearly every given label gets the strong mixup as well. The paper's
    methods are ``mode="paper"``, most simply through the presets
    ``DynamicBootstrapMixUp.preset("m-dyr-h" | "m-dyr-s" | "md-dyr-sh", **overrides)``.

    Parameters
    ----------
    bootstrap : {"hard", "soft", "soft-to-hard"}, optional
        Bootstrap towards the one-hot argmax (M-DYR-H) or the softmax (M-DYR-S) of the network's
        prediction, or (paper mode) towards the softmax at a temperature that falls from 1 to
        0.001 over ``sharpening`` (MD-DYR-SH's soft-to-hard targets). In paper mode the
        prediction is a forward of the un-mixed batch; in lnc mode it is the running average of
        each sample's softmax over epochs (``target_momentum``), or a forward of the un-mixed
        batch where ``fresh_targets`` says so. Default: "hard" in both modes.
    alpha : float, optional
        Mixup's ``Beta(alpha, alpha)``. Paper mode draws one mixing weight per batch, as the
        paper does, and its default is the paper's 32. lnc mode draws one per sample and keeps
        the larger share on the sample itself, ``max(lam, 1 - lam)``, as fastai's ``MixUp``
        does, and its default is fastai's 0.4 (measured in ``docs/training.md``: 32 costs
        accuracy in short schedules), so that without noise it trains as ``MixUp()`` (until
        ``fitted_share``).
    warmup : int or float, optional
        Epochs of plain mixup before bootstrapping may start (an int), or that fraction of the
        run (a float in [0, 1]). Paper mode: the switch, by default 0.35 (the paper's 105 of 300
        epochs). lnc mode: a floor, by default 0.1; after it, the weights follow the detector's
        count (0 while it finds no noise) and rise over ``ramp``. The detector is refitted after
        every tracked epoch, warm-up included.
    mode : {"lnc", "paper"}
        lnc's own mode (default) or the paper's (the arguments left at None take that mode's
        defaults).
    strong_alpha : float
        lnc mode: the mixup alpha once the network is seen to memorise under heavy noise (the
        paper's 32).
    memorisation_threshold : float
        lnc mode, heavy noise (the network disbelieves most labels): bootstrapping and
        ``strong_alpha`` start once more than this share of the samples the detector flagged one
        pass before (a pass after the warm-up floor) are predicted as their given label, and
        more of them than the network's churn between the two passes puts there by chance
        (by ``lnc_fastai.adaptive.CHANCE_MARGIN``, one point; :func:`lnc_fastai.adaptive.memorising`),
        and only once the accuracy on the validation
        set (against its given labels, counted as fastai validates) has stopped rising
        (:func:`lnc_fastai.adaptive.still_improving`). A network that still generalises better
        is learning the labels it disbelieved, not memorising them: this is what keeps a short
        CIFAR-10 run without noise, whose network fits a third of its labels in the first
        epochs, on plain mixup. Without a validation set that check is skipped. 0.05 since
        2026-11-30 (was 0.1): on MNIST-2000 at 80% noise the signal stayed at 0.06-0.10 for ten
        epochs while the unmixed network memorised, so the call came late; on MNIST-5000 with
        augmentation, which does not memorise, it stayed at or below 0.04. The share beyond
        chance is required since 2026-12-01: a network that has learnt little churns, and on
        CIFAR-10 at 80% noise with a validation split as noisy as the training labels, whose
        accuracy moves less than its counting noise, the churn alone made the call and the run
        collapsed (``docs/training.md``).
    light_noise_rate : float
        lnc mode, wrong labels among labels the network mostly believes: bootstrapping starts once
        the count (:mod:`lnc_sklearn.noise_count`, from the losses and the labels) puts at least
        this share of the samples as wrong (and then goes on).
        Below it the run stays plain mixup: an under-trained network's count also takes in clean
        samples it has not learnt yet, and bootstrapping them costs accuracy. Unless the network
        is seen to memorise the samples the count flagged (the heavy-noise call's test, with
        ``memorisation_threshold`` and the validation check, at a pass before the settling
        epochs; not without a validation set, where learning and memorising cannot be told
        apart): then bootstrapping starts below this rate too. A count of systematic flips that
        the network learns wanders under the rate while the network memorises them (the digits
        at 20% asymmetric noise, since 2026-12-01: ``docs/training.md``).
    target_momentum : float
        lnc mode: each epoch's softmax enters the running-average targets with weight
        ``1 - target_momentum``.
    ramp : int or float
        lnc mode: epochs (or a fraction of the run) over which the bootstrapping weights rise
        from the warm-up's end to their full value.
    settle : int or float
        lnc mode: the last epochs (an int) or that fraction of the run (a float) of a run that has
        not started bootstrapping train without mixup, on the given labels alone, unless the
        network is seen to memorise in them (then bootstrapping and mixup start). Mixup
        regularises early but costs accuracy at the end of a short schedule (CIFAR-10, 12
        one-cycle epochs: fastai's ``MixUp()`` ends below plain cross-entropy, see
        ``docs/training.md``); a run that found wrong labels and bootstraps keeps mixup to the
        end, as does one that ``fitted_share`` switched to strong mixup. 0 keeps mixup throughout.
    unmixed_until_memorising : bool
        lnc mode, heavy noise (the network disbelieves most labels): train without mixup, on the
        given labels, from the warm-up floor until the network is seen to memorise them (then
        bootstrapping and ``strong_alpha`` mixup start as always). Default True: where the
        network never memorises (a short augmented schedule) mixup only costs accuracy (MNIST,
        5,000 augmented images, 16 epochs, 80% noise, four seeds: 0.822 against 0.814 with light
        mixup, cross-entropy 0.832; ``benchmarks/results/training_matrix.md``). False: light
        mixup at ``alpha`` meanwhile. A network that has not learnt much yet also disbelieves
        most labels, so a run without noise can train unmixed early on.
    fitted_share : float or None
        lnc mode, outside heavy noise and before settling: once a pass finds the network
        predicting at least this share of the training samples as their given label, mixup
        takes ``strong_alpha`` from the next epoch (not before the warm-up floor) to the end of
        the run, and the run does not settle. A network that fits nearly every label it is given
        has learnt what it can from them and goes on to memorise the rest, which light mixup does
        not hold back and strong mixup does (digits, 20% asymmetric noise, where the count stays
        under ``light_noise_rate``: ``docs/training.md``). A network that underfits (a short or augmented schedule) never
        gets there and keeps light mixup. None: never.
    rewind : bool
        lnc mode, heavy noise: while the callback waits for the network to memorise (from the
        warm-up floor, unmixed), keep a host copy of the weights (model and optimizer state) of
        the epoch with the highest validation accuracy, with that epoch's p(noisy) and targets;
        at the memorisation call, training goes on from them (:mod:`lnc_fastai.rewind`). The call
        comes once the validation accuracy has stopped rising, when the network has already
        fitted some wrong labels, which the detector then no longer flags. Default True (since
        2026-12-01; digits at 80% / 90% noise, four seeds: 0.938 / 0.748 against 0.880 / 0.718
        without, ``docs/training.md``). Costs one copy of the model and optimizer state in host
        memory during the wait; nothing without a validation set. The copy is not saved with
        checkpoints: a run resumed during the wait goes on without it.
    memorising_gain : float
        lnc mode: once the network memorises under heavy noise, each sample's bootstrapping
        weight is ``min(1, memorising_gain * p(noisy))``. p(noisy) averages the detector's noise
        count, so a wrong label gets about 0.6 of the weight and keeps the rest of its pull,
        which the network slowly memorises. Default 1 (the weights as the detector gives them):
        1.5 gained 3-10 points on the digits at 80-90% noise but made one MNIST-2000 run at 90%
        collapse (8 classes, 0.44 against 0.73), where the detector separates poorly; 2 lost
        classes on the digits at 90% (``docs/training.md``).
    prediction_floor : bool
        lnc mode: once the network memorises under heavy noise, a sample that the last pass
        predicts as another class than its given label gets at least that prediction's softmax
        probability as its bootstrapping weight (:func:`lnc_fastai.adaptive.prediction_floor`).
        The mixture's p(noisy) ranks the wrong labels well but leaves many of them well below 1,
        and the network goes on to fit the pull they keep as the learning rate anneals. Default
        True (since 2026-12-01): on the digits at 80% noise, sixteen seeds, 0.953 against 0.924
        without it and M-DYR-H's 0.935; it cost MNIST-2000 at 90%, where the detector separates
        poorly, about 3 points (0.543 against 0.572; M-DYR-H 0.506; ``docs/training.md``, "The
        prediction floor"). False: the weights as the detector gives them.
    fresh_targets : {"heavy", True, False}
        lnc mode: where the bootstrapping targets come from a forward of the un-mixed batch
        (without gradients, in eval mode, as the paper's methods make it) instead of the running
        average of the per-epoch passes. "heavy" (the default): once the network is seen to
        memorise under heavy noise, where a network whose accuracy climbs from 50% to 90% within
        a few epochs needs its newest predictions (digits at 90% noise, four seeds: 0.79 against
        0.70 with the running average, ``docs/training.md``); this costs one forward per batch
        in those runs only. True: whenever it bootstraps; False: never (no extra forward). The
        weights are the per-epoch pass's p(noisy) either way.
    pass_from_batches : bool
        lnc mode: in an epoch whose batches each make a forward for their targets
        (``fresh_targets``), that forward's losses, softmax and predictions (eval mode, on the
        un-mixed training batch, just before its step) make the epoch's pass, so the model runs
        over the training set once more only for the samples no batch held (``drop_last``). The
        last epoch's pass is always a whole one. Default True: with the whole pass every epoch
        as well, the forward per batch cost 1.7-2.2 times a ``MixUp`` epoch on a CPU, and
        1.6 with this (``benchmarks/results/callback_overhead_fashion_mnist_cpu*.md``); it also
        changes results (each loss is taken before its batch's step; ``docs/training.md``,
        "Cheaper passes"). False makes the whole pass every epoch.
    channels_last : "auto", True or False
        Run the forward of each un-mixed batch (``fresh_targets``, and wherever the batch's
        sample indices are unknown) with the images copied into channels-last memory order; the
        model and the training forward are left as they are. On this project's CPU that forward
        took about half the time (small CNN: max pooling over plain-strided images is slow there;
        ``docs/training.md``, "The forward per batch in channels-last order"); its logits differ
        from the plain order's by about 1e-7. "auto" (the default): in lnc's mode with the model
        on a CPU (unmeasured on accelerators); the paper's presets keep their published numbers
        unless given True. A model whose forward fails on such inputs gets them as they are,
        with a warning.
    channels_last_pooling : "auto", True or False
        In the callback's own forwards (the per-epoch pass, and the forward of each un-mixed
        batch where it is not in channels-last order already), let every ``nn.MaxPool2d`` of the
        model pool in channels-last order: its input is copied into that order and its output
        back (:func:`lnc_fastai.pooling.max_pooling_channels_last`). A maximum does not depend on
        the order its values are read in, so the logits are those of the model as it is, to the
        last bit, in every mode. On this project's CPU a bare eval forward of the small CNN over
        its training set took 31-41% less time (``docs/training.md``, "Max pooling in
        channels-last order"). "auto" (the default): with the model on a CPU (unmeasured on
        accelerators). A model whose forward fails with it runs without it, with a warning.
    keep_pass_inputs : "auto", bool or int
        Keep the per-epoch pass's input batches in host memory within a fit, so that the data
        pipeline builds them once rather than at every pass (on a CPU, building them cost about
        as much as the model's forward, ``docs/training.md``). They are used once a second pass
        has built exactly the same tensors (validation transforms are deterministic), and each
        later pass still builds its first batch, checks it against the kept one and so draws
        from the random generators as a whole pass would; where a check fails (random
        transforms, data that changed) or the batches would take more than the limit, the
        pipeline serves every pass, as before. The run is the same either way. "auto" (the
        default): up to 2 GiB with the model on a CPU, never on an accelerator (the batches
        would go to the host and back each pass; not measured there); True: up to 2 GiB; an
        int: up to that many bytes; False or 0: never.
    tracking_every : int or "auto"
        Track (the per-epoch pass and refit) every this many epochs, always including the last;
        between passes the weights and targets of the last pass are used. 1 tracks every epoch.
        "auto" (the default) is 1 on a GPU and in paper mode; for lnc's mode on a CPU, where the
        pass costs a third to two thirds of a training epoch, it is 3, except under heavy noise,
        where it is 1: memorisation is judged against the flags of the epoch before (against
        flags three epochs old, learning looked like memorisation on MNIST at 80% noise and
        bootstrapping began too early: 0.68 test accuracy against 0.84), and bootstrapping needs
        fresh targets (digits at 80% noise, one seed, tracking every, every second and every
        third epoch: 0.95, 0.84 and 0.88).
    reg_weight : float
        Weight eta of the class-balance regulariser, applied with bootstrapping (as the reference
        does); 0 switches it off. In lnc mode its prior is the given labels' class frequencies
        (the paper's: uniform) and it is scaled with the bootstrapping weights.
    detector : estimator, optional
        Anything with ``fit`` and ``predict_proba`` over a column of per-sample values whose column
        1 is p(noisy); a detector with ``input_type="confidence"`` is given ``exp(-loss)``. None
        (the default) means, in lnc mode, ``BetaMixtureNoiseDetector()`` fitted with the given
        labels: p(noisy) scaled to its noise count within each label, so 0 where it finds no
        noise; in paper mode ``BetaMixtureNoiseDetector(rate_estimate="mixture")``, refitted
        from the paper's start (anchored M-steps) every epoch as the reference refits, its
        p(noisy) read off the mixture as the paper's methods use it. The argument is kept as
        given; the fitted copy is ``detector_``. A fit that raises keeps the previous fit and warns.
    detector_mixing : bool
        Paper mode only. After the warm-up, mix each pair in proportion to how clean the detector finds each
        partner, ``(1 - w_a) / ((1 - w_a) + (1 - w_b))``, instead of one ``Beta(alpha, alpha)``
        draw per batch (MD-DYR-SH, the paper's choice at 90% noise). As in the reference code,
        the first ``mixing_only`` epochs after the warm-up mix the inputs this way but train with
        plain mixup's loss (a fresh ``Beta(alpha, alpha)`` draw per batch weighs the two labels,
        no bootstrapping, no regulariser); bootstrapping starts after them, and its loss weighs
        the two partners' terms 0.5 / 0.5 whatever their share of the input, as the reference
        does. (Weighing them by their input share instead, lnc's earlier reading, trained worse:
        ``benchmarks/results/md_dyr_sh_variants_digits.md``.)
    mixing_only : int or float
        With ``detector_mixing``: epochs (an int) or fraction of the run (a float) of detector
        mixing before bootstrapping starts. The default is the reference's 5 of 300 epochs;
        with a fractional ``warmup`` the two fractions are added before rounding, so the phase
        ends where the paper's epoch 110 of 300 falls in a run of any length.
    sharpening : (start, end), optional
        Epochs (ints) or fractions of the run (floats) over which the "soft-to-hard" temperature
        falls linearly from 1 to 0.001 (one step per epoch). By default it starts with
        bootstrapping and falls over 88/300 of the run, as the reference's
        ``linspace(1, 0.001, 89)`` does from its epoch 111 to 199 (1-based) of 300.
    noise_mask : array of bool, optional
        The true "is mislabelled" flag of each training sample, in dataset order, for
        experiments: adds the detector's ROC-AUC to the history and the progress table.
    augmented_tracking : bool
        Compute the per-epoch losses with training augmentation, as the reference code does.
        Default False: validation-time transforms, so a sample's loss does not depend on its crop.
    keep_trace : bool
        Keep every epoch's per-sample losses and p(noisy) for :meth:`save_trace`.
    trace_probs : bool
        Also keep each epoch's softmax outputs (as float16) in the trace.
    table_size : int
        Grid points of the posterior table the batches read p(noisy) from.
    tracking_bs : int, optional
        Batch size of the per-epoch loss pass; default the training batch size on a CPU (larger
        eval batches run slower per sample there) and four times it on a GPU.

    After fitting, ``detector_`` is the last usable fit, ``history`` (a DataFrame, one row per
    epoch) holds the estimated noise rate (``noise_rate``, the count from the losses and the given
    labels of :class:`lnc_sklearn.BetaMixtureNoiseDetector`, whichever detector trains; shown in
    the progress table) with its 90% interval (``noise_interval_low``, ``noise_interval_high``),
    verdict (``noise_verdict``) and source (``noise_source``; ``noise_from_mixture`` is 1 where
    the network disbelieves most labels), how clearly a group of wrong labels stands apart in
    log-odds (``noise_separation``), the mean
    p(noisy) the training weights come from (``noise_fraction``), the AUC when ``noise_mask``
    was given, and the detector's fitted parameters; in lnc mode also the regime
    (``noise_regime``: none, light, heavy), ``memorisation``, the last validation accuracy
    (``valid_fit``) and whether it still rises (``still_learning``), ``memorising`` (and, under
    light noise, ``light_memorising``: the pass that opened bootstrapping below
    ``light_noise_rate``), the share
    of training labels fitted (``label_fit``) and whether ``fitted_share`` switched (``fitted``),
    the epoch's ``bootstrap_scale`` and mixup ``alpha``, whether it trained unmixed
    (``unmixed``; ``settling`` when ``settle`` made it so) and with targets from a forward of
    each batch (``fresh_targets``; ``pass_from_batches`` where that forward made the epoch's
    pass), the ``collapse_guard`` and ``classes_predicted`` (one row per
    tracked epoch). ``report()``
    gives one row per training sample. Training uses this callback's own loss (``lf``, swapped
    in as fastai's ``MixHandler`` does); the learner's ``loss_func`` is put back after training
    (and on every cancel) and serves validation.
    Checkpoints: :func:`lnc_fastai.save_checkpoint`, :class:`lnc_fastai.SaveModelWithState`.
    """

    order = MixedPrecision.order + 1  # the un-mixed forward in before_batch then runs under autocast
    # fastai's MixHandler skips the validation batches; lnc mode counts their predictions
    # (after_pred), and the per-batch events return at once outside training
    run_valid = True

    def __init__(
        self,
        bootstrap=None,
        alpha=None,
        warmup=None,
        reg_weight=1.0,
        detector=None,
        detector_mixing=False,
        mixing_only=PAPER_MIXING_ONLY,
        sharpening=None,
        noise_mask=None,
        augmented_tracking=False,
        keep_trace=False,
        trace_probs=False,
        table_size=4096,
        tracking_bs=None,
        *,
        mode="lnc",
        strong_alpha=32.0,
        memorisation_threshold=0.05,
        target_momentum=0.7,
        light_noise_rate=0.15,
        ramp=0.1,
        tracking_every="auto",
        settle=0.2,
        fresh_targets="heavy",
        unmixed_until_memorising=True,
        fitted_share=0.95,
        rewind=True,
        memorising_gain=1.0,
        prediction_floor=True,
        keep_pass_inputs="auto",
        pass_from_batches=True,
        channels_last="auto",
        channels_last_pooling="auto",
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        defaults = MODE_DEFAULTS[mode]
        bootstrap = defaults["bootstrap"] if bootstrap is None else bootstrap
        alpha = defaults["alpha"] if alpha is None else alpha
        warmup = defaults["warmup"] if warmup is None else warmup
        if bootstrap not in BOOTSTRAPS:
            raise ValueError(f"bootstrap must be one of {BOOTSTRAPS}, got {bootstrap!r}")
        if mode == "lnc" and (bootstrap == "soft-to-hard" or detector_mixing or sharpening is not None):
            raise ValueError("bootstrap='soft-to-hard', detector_mixing and sharpening are MD-DYR-SH's, a paper method: "
                             "use DynamicBootstrapMixUp.preset('md-dyr-sh') or mode='paper'")
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        if not reg_weight >= 0:
            raise ValueError(f"reg_weight must be >= 0, got {reg_weight!r}")
        if not strong_alpha > 0:
            raise ValueError(f"strong_alpha must be > 0, got {strong_alpha!r}")
        if not 0 < memorisation_threshold <= 1:
            raise ValueError(f"memorisation_threshold must be in (0, 1], got {memorisation_threshold!r}")
        if not 0 <= light_noise_rate <= 1:
            raise ValueError(f"light_noise_rate must be in [0, 1], got {light_noise_rate!r}")
        if not 0 <= target_momentum < 1:
            raise ValueError(f"target_momentum must be in [0, 1), got {target_momentum!r}")
        if tracking_every != "auto" and not (isinstance(tracking_every, (int, np.integer)) and tracking_every >= 1):
            raise ValueError(f"tracking_every must be an int >= 1 or 'auto', got {tracking_every!r}")
        epochs_of(warmup, 1)  # validates
        epochs_of(ramp, 1, "ramp")  # validates
        epochs_of(mixing_only, 1, "mixing_only")  # validates
        if detector is not None and not (hasattr(detector, "fit") and hasattr(detector, "predict_proba")):
            raise TypeError(f"detector must have fit and predict_proba, got {type(detector).__name__}")
        if not (fresh_targets is True or fresh_targets is False or fresh_targets == "heavy"):
            raise ValueError(f"fresh_targets must be 'heavy', True or False, got {fresh_targets!r}")
        if not isinstance(unmixed_until_memorising, (bool, np.bool_)):
            raise ValueError(f"unmixed_until_memorising must be True or False, got {unmixed_until_memorising!r}")
        if not isinstance(rewind, (bool, np.bool_)):
            raise ValueError(f"rewind must be True or False, got {rewind!r}")
        gain_ok = isinstance(memorising_gain, (int, float, np.number)) and not isinstance(memorising_gain, bool)
        if not (gain_ok and 1 <= memorising_gain < float("inf")):
            raise ValueError(f"memorising_gain must be a finite number >= 1, got {memorising_gain!r}")
        if not isinstance(prediction_floor, (bool, np.bool_)):
            raise ValueError(f"prediction_floor must be True or False, got {prediction_floor!r}")
        share = isinstance(fitted_share, (int, float, np.number)) and not isinstance(fitted_share, bool)
        if fitted_share is not None and not (share and 0 < fitted_share <= 1):
            raise ValueError(f"fitted_share must be None or a number in (0, 1], got {fitted_share!r}")
        if tracking_bs is not None and not (isinstance(tracking_bs, (int, np.integer)) and tracking_bs > 0):
            raise ValueError(f"tracking_bs must be a positive int or None, got {tracking_bs!r}")
        limit_ok = isinstance(keep_pass_inputs, (int, np.integer)) and not isinstance(keep_pass_inputs, bool) and keep_pass_inputs >= 0
        if not (isinstance(keep_pass_inputs, (bool, np.bool_)) or limit_ok or keep_pass_inputs == "auto"):
            raise ValueError(f"keep_pass_inputs must be 'auto', True, False or a number of bytes (an int >= 0), got {keep_pass_inputs!r}")
        if not isinstance(pass_from_batches, (bool, np.bool_)):
            raise ValueError(f"pass_from_batches must be True or False, got {pass_from_batches!r}")
        if not (isinstance(channels_last, (bool, np.bool_)) or channels_last == "auto"):
            raise ValueError(f"channels_last must be 'auto', True or False, got {channels_last!r}")
        if not (isinstance(channels_last_pooling, (bool, np.bool_)) or channels_last_pooling == "auto"):
            raise ValueError(f"channels_last_pooling must be 'auto', True or False, got {channels_last_pooling!r}")
        super().__init__(float(alpha))  # MixHandler: self.distrib = Beta(alpha, alpha)
        self.mode, self.bootstrap, self.alpha, self.warmup, self.reg_weight = mode, bootstrap, float(alpha), warmup, float(reg_weight)
        self.detector, self.detector_mixing, self.mixing_only = detector, bool(detector_mixing), mixing_only
        self.sharpening = check_sharpening(sharpening)
        self.target_momentum, self.ramp, self.tracking_every = float(target_momentum), ramp, tracking_every
        self.strong_alpha, self.memorisation_threshold = float(strong_alpha), float(memorisation_threshold)
        self.light_noise_rate = float(light_noise_rate)
        epochs_of(settle, 100, "settle")  # checked here, resolved against the run in before_fit
        self.settle, self.fresh_targets = settle, fresh_targets
        self.unmixed_until_memorising = bool(unmixed_until_memorising)
        self.fitted_share = None if fitted_share is None else float(fitted_share)
        self.fitted_since_ = None
        self.rewind, self.memorising_gain = bool(rewind), float(memorising_gain)
        self.prediction_floor, self.confidence_ = bool(prediction_floor), None
        self._rewind_point = self.rewound_to_ = None
        self.alpha_, self.noise_regime_, self.memorising_since_, self.bootstrap_since_ = float(alpha), "none", None, None
        self.noise_mask = None if noise_mask is None else np.asarray(noise_mask, dtype=bool).ravel()
        self.augmented_tracking, self.keep_trace, self.trace_probs = augmented_tracking, keep_trace, trace_probs
        self.table_size, self.tracking_bs = int(table_size), tracking_bs
        self.keep_pass_inputs = (keep_pass_inputs if keep_pass_inputs == "auto" else bool(keep_pass_inputs)
                                 if isinstance(keep_pass_inputs, (bool, np.bool_)) else int(keep_pass_inputs))
        self._pass_inputs = None  # the loss pass's batches within a fit (lnc_fastai.pass_inputs)
        self.pass_from_batches, self._batch_outputs, self.pass_from_batches_ = bool(pass_from_batches), None, False
        self.channels_last = channels_last if channels_last == "auto" else bool(channels_last)
        self.channels_last_ = False  # resolved for each fit in before_fit
        self.channels_last_pooling = channels_last_pooling if channels_last_pooling == "auto" else bool(channels_last_pooling)
        self.channels_last_pooling_ = False  # resolved for each fit in before_fit
        self._forward = PoolingForward(False)  # the callback's own forwards (before_fit sets it for the fit)
        self.detector_ = self.table = None
        self.epoch_records, self.trace = [], {"losses": [], "p_noisy": [], "probs": []}
        self.failed_fits, self.skipped_batches = [], []  # what went wrong, and when
        self.losses_ = self.labels_ = self.predictions_ = self.p_noisy_ = self.noise_flags_ = None
        self.target_average_, self.bootstrap_scale_, self.collapse_guard_, self.settling_ = None, 0.0, 1.0, False
        self.fresh_targets_used_, self.unmixed_ = False, False
        self.valid_fits_, self._valid_hits, self._fitting, self._fresh_run = [], None, False, False
        self.stack_y, self._batch = False, None
        self._model_buffers, self._good_buffers = [], []
        self._progress_columns = []
        self._per_sample = None  # lnc mode: the last pass's weights, targets, labels and prior on the device
        self._use_indices, self._epoch_idxs, self._mismatch = True, None, None

    @classmethod
    def preset(cls, name, **overrides):
        """One of the paper's methods as published: ``"m-dyr-h"``, ``"m-dyr-s"`` or ``"md-dyr-sh"``
        (paper mode, alpha 32, warm-up 0.35 of the run, MD-DYR-SH's phases as the reference's),
        with any argument overridden."""
        if name not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {name!r}")
        return cls(**{**PRESETS[name], **overrides})

    # ---- fit-level plumbing ------------------------------------------------------------------
    def before_fit(self):
        # fastai's lr_find trains a few epochs and then loads the model back: do the same for
        # what this callback learns in them.
        self._before_lr_find = self._snapshot() if hasattr(self.learn, "lr_finder") else None
        self.warmup_epochs = epochs_of(self.warmup, self.n_epoch)
        self.ramp_epochs = epochs_of(self.ramp, self.n_epoch, "ramp")
        self.settle_epochs = epochs_of(self.settle, self.n_epoch, "settle")
        self.tracking_every_ = self.tracking_every
        on_cpu = next(self.model.parameters(), torch.empty(0)).device.type == "cpu"
        keep = self.keep_pass_inputs
        if keep == "auto":  # on an accelerator the batches would cross to the host and back: unmeasured
            keep = on_cpu
        limit = DEFAULT_LIMIT_BYTES if keep is True else int(keep)
        self._pass_inputs = PassInputs(limit) if limit else None  # kept within this fit only
        # the forward of each un-mixed batch in channels-last order: measured faster on a CPU;
        # the paper's methods keep their published numbers (bit for bit) unless asked
        self.channels_last_ = self.mode == "lnc" and on_cpu if self.channels_last == "auto" else self.channels_last
        # max pooling in channels-last order in the callback's forwards: the same logits (bit for bit), faster on a CPU
        self.channels_last_pooling_ = on_cpu if self.channels_last_pooling == "auto" else self.channels_last_pooling
        self._forward = PoolingForward(self.channels_last_pooling_)  # off for the rest of the fit if a forward fails with it
        if self.tracking_every == "auto":  # the pass is cheap beside a GPU epoch, not beside a CPU one
            self.tracking_every_ = AUTO_TRACKING_EVERY_CPU if on_cpu and self.mode == "lnc" else 1
        self.bootstrap_epoch = self.warmup_epochs
        if self.detector_mixing:
            self.bootstrap_epoch = phase_end(self.warmup, self.mixing_only, self.n_epoch, "mixing_only")
        self.sharpening_epochs = sharpening_epochs(self.sharpening, self.bootstrap_epoch, self.n_epoch)
        n = len(self.dls.train.dataset)
        if self.noise_mask is not None and len(self.noise_mask) != n:
            raise ValueError(f"noise_mask has {len(self.noise_mask)} entries but the training set has {n} samples")
        # Columns in fastai's progress table; the Recorder (order 50) reads metric names after us.
        self._progress_columns = [ValueMetric(self._last_noise_rate, "noise_rate")]
        if self.noise_mask is not None:
            self._progress_columns.append(ValueMetric(self._last_auc, "noise_auc"))
        self.learn.metrics = list(self.learn.metrics) + self._progress_columns
        # lnc mode reads each batch's weights and targets by its samples' indices where the
        # DataLoader can tell them (fastai's, in a single process), else from a forward per batch.
        self._use_indices, self._epoch_idxs, self._per_sample = world()[1] == 1, None, None
        # lnc mode's memory of this run (the guard's widest spread, the regime, when bootstrapping
        # started, the validation accuracies), kept when fastai resumes a run at an epoch
        # (fit(..., start_epoch=k) after load_checkpoint), started afresh by any other fit at its
        # first training epoch: fastai's validate and get_preds also send before_fit
        self._fresh_run = not any(type(cb).__name__ == "SkipToEpoch" for cb in self.learn.cbs)
        self.distrib = Beta(tensor(self.alpha_), tensor(self.alpha_))

    def _start_lnc_run(self):
        self.widest_classes_, self.collapse_guard_, self.noise_regime_, self.light_rate_ = 0.0, 1.0, "none", 0.0
        self.memorising_since_ = self.bootstrap_since_ = self.fitted_since_ = self._previous_flags = None
        self._previous_predictions, self.light_memorising_ = None, False
        self._previous_flags_epoch, self.valid_fits_ = -1, []
        self._rewind_point = self.rewound_to_ = None
        self.alpha_ = self.alpha

    def after_fit(self):
        self._put_loss_back()
        self._fitting, self._fresh_run, self._valid_hits = False, False, None
        if getattr(self, "_before_lr_find", None) is not None:
            self._restore(self._before_lr_find)
            self._before_lr_find = None
        self._model_buffers, self._good_buffers = [], []  # not kept in exports and checkpoints
        self._pass_inputs = self._batch_outputs = None
        self._lam_distrib, self._rewind_point = None, None
        if self._progress_columns:
            self.learn.metrics = [m for m in self.learn.metrics if all(m is not ours for ours in self._progress_columns)]
            self._progress_columns = []

    def after_cancel_fit(self):
        self.after_fit()

    def before_train(self):
        if getattr(self, "_fresh_run", False):
            self._start_lnc_run()
        self._fresh_run, self._fitting = False, True  # the validation within this fit is counted
        if self.mode == "lnc":
            self._rewind_at_call()  # heavy noise, the call's first epoch: the wait's best weights back
            self._set_lnc_epoch()
            self._batch_outputs = self._outputs_for_the_pass()
            # fastai MixUp's draw, made on the model's device: no copy from the host per batch
            device = next(self.model.parameters(), torch.empty(0)).device
            alpha = torch.tensor(float(self.alpha_), device=device)
            self._lam_distrib = Beta(alpha, alpha, validate_args=False)
        # The loss swap of fastai's MixHandler, for every loss: targets are class indices here.
        self.stack_y = True
        self.old_lf, self.learn.loss_func = self.learn.loss_func, self.lf
        # Buffers (BatchNorm's running statistics) move in the training forward itself, before the
        # loss can be checked: keep a copy of the last good ones to put back if a batch is skipped.
        self._model_buffers = list(self.model.buffers())
        self._good_buffers = [b.detach().clone() for b in self._model_buffers]

    def _set_lnc_epoch(self):
        """lnc mode: this epoch's share of the full bootstrapping weights and its mixup alpha, from
        what the last pass found: bootstrapping (light mixup) where the detector counts wrong labels
        among labels the network believes; under heavy noise no mixup (light mixup without
        ``unmixed_until_memorising``) until the network memorises, then bootstrapping with strong
        mixup; never before the warm-up floor. Strong mixup, and no settling, once the network
        fits ``fitted_share`` of its labels."""
        light = getattr(self, "noise_regime_", "none") == "light" and (
            getattr(self, "light_rate_", 0.0) >= self.light_noise_rate or getattr(self, "light_memorising_", False)
            or self.bootstrap_since_ is not None)
        allowed = self.epoch >= self.warmup_epochs and (self.memorising_since_ is not None or light)
        if allowed and self.bootstrap_since_ is None:
            self.bootstrap_since_ = self.epoch
        # the last `settle` epochs of a run that has not bootstrapped train unmixed, on the given
        # labels; should the network be seen to memorise in them, bootstrapping (and mixup) start
        # (a network that fits nearly every given label would only memorise the rest: it does not settle)
        self.settling_ = (self.bootstrap_since_ is None and self.fitted_since_ is None
                          and self._settles(self.epoch))
        # with unmixed_until_memorising, so does a run under heavy noise, from the warm-up floor
        # (before it, a network that has hardly trained disbelieves most labels) until it memorises
        self.unmixed_ = self.settling_ or (self._waiting_under_heavy_noise() and self.unmixed_until_memorising)
        start = self.memorising_since_ if self.memorising_since_ is not None else self.bootstrap_since_
        scale = ramp(self.epoch, start, self.ramp_epochs) if allowed else 0.0
        self.bootstrap_scale_ = scale * self.collapse_guard_
        self.fresh_targets_used_ = self.bootstrap_scale_ > 0 and self.fresh_targets_now
        # the mixing weights' alpha; before_train draws from it (lnc mode does not use self.distrib)
        strong = self.memorising_since_ is not None or self.fitted_since_ is not None
        self.alpha_ = self.strong_alpha if strong else self.alpha

    def _outputs_for_the_pass(self):
        """lnc mode, ``pass_from_batches``: where this epoch's batches make a forward each for
        their targets (``fresh_targets``), the store that keeps their losses and predictions for
        the epoch's pass; None elsewhere, and in the last epoch (whose pass is a whole one)."""
        if not (self.pass_from_batches and self.fresh_targets_used_ and self._use_indices and self.target_average_ is not None
                and self.epoch < self.n_epoch - 1):
            return None
        device = next(self.model.parameters()).device
        return BatchOutputs(len(self.dls.train.dataset), self.target_average_.shape[1], device)

    def _settles(self, epoch):
        """Whether ``epoch`` is one of the run's last ``settle`` epochs (where a run that has not
        bootstrapped trains unmixed, and under light noise bootstrapping no longer starts)."""
        return epoch >= self.n_epoch - self.settle_epochs

    def _put_loss_back(self):
        MixHandler.after_train(self)  # the learner's own loss_func again
        self.stack_y, self._batch = False, None

    def after_train(self):
        self._put_loss_back()
        if self._mismatch is not None:  # one host synchronisation per epoch
            mismatched, self._mismatch = int(self._mismatch), None
            if mismatched:
                self._stop_using_indices(f"{mismatched} samples of epoch {self.epoch} had other labels than their indices say")
        every = self.tracking_every_
        if self.tracking_every == "auto" and (self.memorising_since_ is not None or self.noise_regime_ == "heavy"):
            every = 1  # heavy noise: memorisation is judged against the last epoch, and bootstrapping needs fresh targets
        if (self.n_epoch - 1 - self.epoch) % every == 0 or self.table is None:
            self._track_and_refit()

    def _stop_using_indices(self, why):
        self._use_indices, self._epoch_idxs = False, None
        warnings.warn(f"{why}; the bootstrapping weights and targets now come from a forward of each batch",
                      RuntimeWarning, stacklevel=3)

    def after_cancel_train(self):
        self._put_loss_back()

    def after_cancel_epoch(self):  # e.g. fastai's SkipToEpoch cancels in before_train
        self._put_loss_back()

    # ---- per batch ---------------------------------------------------------------------------
    @property
    def phase(self):
        """This epoch's training: ``"mixup"`` (warm-up, or no usable fit yet), ``"mixing"``
        (detector mixing with plain mixup's loss; ``detector_mixing`` only) or ``"bootstrap"``."""
        if self.table is None or self.epoch < self.warmup_epochs:
            return "mixup"
        if self.mode == "lnc":
            return "bootstrap" if self.bootstrap_scale_ > 0 else "mixup"
        return "bootstrap" if self.epoch >= self.bootstrap_epoch else "mixing"

    @property
    def bootstrapping(self):
        """Whether this epoch's batches bootstrap (past the warm-up and, with ``detector_mixing``,
        the detector-mixing-only epochs, with a fitted detector)."""
        return self.phase == "bootstrap"

    def before_batch(self):
        if not self.training:
            return
        check_targets(self.yb)
        labels = plain(self.yb[0])
        partner = torch.randperm(labels.shape[0], device=labels.device)
        if self.mode == "lnc" and self.unmixed_:  # unmixed: the sample is all its own (mix_inputs keeps it)
            lam = 1.0
        elif self.mode == "lnc":  # fastai MixUp's draw: one lam per sample, the larger share its own
            lam = self._lam_distrib.sample((labels.shape[0],)).to(labels.device)
            lam = torch.maximum(lam, 1 - lam)
        else:  # the paper's: one lam per batch
            lam = float(self.distrib.sample())
        input_lam = loss_lam = lam
        weights = targets = None
        phase = self.phase
        if phase != "mixup" and self.mode == "lnc":
            weights, targets = self.lnc_weights_and_targets(labels)
        elif phase != "mixup":
            weights, targets = self.noise_weights_and_targets(self.xb, labels)
            if self.detector_mixing:
                input_lam = detector_mixing_weights(weights, weights[partner])
                if phase == "bootstrap":  # the reference weighs the partners' loss terms half and half
                    loss_lam = 0.5
            if phase == "mixing":  # the loss is plain mixup's, with the fresh draw
                weights = targets = None
        self._batch = MixedBatch(labels, partner, input_lam, loss_lam, weights, targets)
        self.learn.xb = mix_inputs(self.xb, partner, input_lam)
        if self._model_buffers:
            torch._foreach_copy_(self._good_buffers, self._model_buffers)

    def unmixed_logits(self, xb):
        """The un-mixed batch's logits from one forward without gradients in eval mode (so
        BatchNorm's running statistics do not move), on the device; with the images in
        channels-last order where ``channels_last`` says so (falling back to the inputs as they
        are, with a warning, if the model fails on them), else with max pooling in that order
        where ``channels_last_pooling`` says so."""
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

    def noise_weights_and_targets(self, xb, labels, floor=False):
        """p(noisy) and bootstrapping targets of the un-mixed batch, from ONE forward pass without
        gradients in eval mode (so BatchNorm's running statistics do not move), all on the device.
        ``floor``: each weight at least the softmax probability of the sample's predicted class
        where that is not its label (``prediction_floor``, from this forward)."""
        logits = self.unmixed_logits(xb)
        losses = F.cross_entropy(logits, plain(labels), reduction="none")
        self.table.to(losses.device)
        kind = "soft" if self.bootstrap == "soft-to-hard" else self.bootstrap
        weights = self.table(losses).clamp_(*WEIGHT_CLIP)
        if floor:
            confidence, predictions = logits.softmax(1).max(1)
            disagree = torch.where(predictions != plain(labels), confidence.nan_to_num(0.0), torch.zeros_like(confidence))
            weights = torch.maximum(weights, disagree).clamp_(max=WEIGHT_CLIP[1])
        return weights, bootstrap_targets(logits, kind, self.temperature)

    def lnc_weights_and_targets(self, labels):
        """lnc mode: each sample's p(noisy) (times this epoch's ``bootstrap_scale_``) and its
        running-average target, read from the last per-epoch pass by the batch's sample indices
        (the target from a forward of the un-mixed batch where ``fresh_targets`` says so); both
        from a forward of the batch where the indices are not known."""
        idx = self._batch_index(labels)
        if idx is None:
            weights, targets = self.noise_weights_and_targets(self.xb, labels, floor=self._floor_after_call())
            return (weights * self.weight_gain).clamp_(max=WEIGHT_CLIP[1]) * self.bootstrap_scale_, targets
        state = self._per_sample
        weights = state["weights"][idx] * self.bootstrap_scale_
        if self.fresh_targets_now:
            logits = self.unmixed_logits(self.xb)
            if self._batch_outputs is not None:  # the epoch's pass reads this forward (pass_from_batches)
                self._batch_outputs.add(idx, logits, labels)
            return weights, bootstrap_targets(logits, self.bootstrap)
        return weights, state["targets"][idx].float()

    @property
    def weight_gain(self):
        """lnc mode: the factor on p(noisy) in the bootstrapping weights (capped at 1):
        ``memorising_gain`` once the network memorises under heavy noise, else 1."""
        return self.memorising_gain if self.mode == "lnc" and self.memorising_since_ is not None else 1.0

    @property
    def fresh_targets_now(self):
        """lnc mode: whether this epoch's bootstrapping targets come from a forward of each batch
        (``fresh_targets``: always, never, or once the network memorises under heavy noise)."""
        if self.fresh_targets == "heavy":
            return self.memorising_since_ is not None
        return bool(self.fresh_targets)

    def _batch_index(self, labels):
        """This batch's dataset indices on the device, or None (then never again this run) where
        they are unknown or do not fit. The labels they point at are compared with the batch's
        on the device, and the count checked on the first batch and after the epoch."""
        if not self._use_indices or self._device_state(labels.device) is None:
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
        self._mismatch += (self._per_sample["labels"][idx] != labels).sum()
        if self.iter == 0 and int(self._mismatch):
            self._mismatch = None
            self._stop_using_indices(f"epoch {self.epoch}: the first batch's labels differ from those its indices point at")
            return None
        return idx

    @property
    def temperature(self):
        """This epoch's temperature of the bootstrapping targets (1 except for "soft-to-hard")."""
        if self.bootstrap != "soft-to-hard":
            return 1.0
        return sharpening_temperature(self.epoch, *self.sharpening_epochs)

    def lf(self, pred, *yb):
        """The training loss (fastai's ``MixHandler`` swaps it in): mixup's, with each partner
        bootstrapped by its p(noisy) once bootstrapping has started, plus the regulariser."""
        if not self.training or self._batch is None:
            return self.old_lf(pred, *yb)
        labels, partner, _, lam, weights, targets = self._batch
        pred = plain(pred)
        bootstrapping = weights is not None
        if not bootstrapping:  # warm-up or detector mixing alone: plain mixup, i.e. bootstrapping weight 0
            weights = torch.zeros(labels.shape[0], device=pred.device)
            targets = torch.zeros_like(pred, dtype=torch.float32)
        loss = mixup_bootstrapping_loss(
            pred, labels, labels[partner], targets, targets[partner], weights, weights[partner], lam
        ).mean()
        if self.reg_weight and bootstrapping:
            if self.mode == "lnc":  # the labels' class frequencies as the prior, scaled as the weights
                prior = self._per_sample["prior"] if self._per_sample is not None else None
                loss = loss + self.reg_weight * self.bootstrap_scale_ * class_balance_regulariser(pred, prior, check=False)
            else:
                loss = loss + self.reg_weight * class_balance_regulariser(pred)
        return loss

    # ---- validation: how often the network predicts the validation set's given labels ----------
    def before_validate(self):
        """lnc mode, within a fit: count the validation batches' predictions that match their
        labels (on the device, read once per epoch), which tells learning from memorising."""
        self._valid_hits = None
        if self.mode == "lnc" and getattr(self, "_fitting", False):
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
            self._keep_if_best()  # heavy noise, waiting for the call: the best weights so far

    def after_loss(self):
        """Skip a batch whose training loss is not finite: no backward, no optimizer step, the
        buffers (BatchNorm statistics) its forward moved put back, and the batch left out of the
        recorded loss, so one bad batch cannot poison the model. This check is the callback's one
        host synchronisation per batch."""
        if not self.training or bool(torch.isfinite(self.learn.loss_grad).all()):
            return
        self.skipped_batches.append({"epoch": self.epoch, "iter": self.iter})
        if self._model_buffers:
            with torch.no_grad():
                torch._foreach_copy_(self._model_buffers, self._good_buffers)
        warnings.warn(
            f"epoch {self.epoch}, batch {self.iter}: the training loss is not finite "
            f"({float(self.learn.loss_grad.detach().float().mean())}); the batch is skipped, the optimizer does not step",
            RuntimeWarning,
            stacklevel=2,
        )
        self.learn.yb = ()  # the Recorder leaves batches without targets out of the loss it logs
        raise CancelBatchException
