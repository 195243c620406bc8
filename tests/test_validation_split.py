"""lnc_experiments.validation: the training matrix's noisy held-out validation
(benchmarks/training_matrix.py --validation noisy) splits without overlap, draws the split's
label noise from its own stream, and scores the test set, not the validation split."""

import numpy as np
import pytest

pytest.importorskip("fastai")

from fastai.basics import CrossEntropyLossFlat, Learner, accuracy  # noqa: E402
from fastai.callback.schedule import fit_one_cycle  # noqa: E402,F401
from fastai.torch_core import set_seed  # noqa: E402
import torch  # noqa: E402

from lnc_experiments.data import as_float_images, image_dataloaders, load_arrays  # noqa: E402
from lnc_experiments.models import small_cnn  # noqa: E402
from lnc_experiments.validation import ScoreTestSet, split_in_two, validation_seed  # noqa: E402
from lnc_sklearn import symmetric_noise  # noqa: E402


def test_split_in_two_is_a_fixed_partition():
    first, rest = split_in_two(540, 270)
    assert len(first) == 270 and len(rest) == 270
    assert not set(first) & set(rest) and set(first) | set(rest) == set(range(540))
    again = split_in_two(540, 270)
    assert np.array_equal(again[0], first) and np.array_equal(again[1], rest)
    assert not np.array_equal(split_in_two(540, 270, seed=1)[0], first)
    for bad in (0, 540, 600):
        with pytest.raises(ValueError, match="n_first"):
            split_in_two(540, bad)


def test_the_validation_noise_has_its_own_stream():
    labels = np.arange(2000) % 10
    for seed in (0, 3):
        assert validation_seed(seed) != seed
        train, _ = symmetric_noise(labels, 0.8, n_classes=10, random_state=seed)
        valid, _ = symmetric_noise(labels, 0.8, n_classes=10, random_state=validation_seed(seed))
        assert abs(np.mean(valid != labels) - 0.72) < 0.04 and np.mean(valid != train) > 0.5


def test_scores_the_test_set_while_the_learner_validates_on_noisy_labels():
    x_train, y_train, x_test, y_test = load_arrays("digits")
    x_train, x_test = as_float_images(x_train), as_float_images(x_test)
    valid, test = split_in_two(len(y_test), 270)
    noisy_valid, _ = symmetric_noise(y_test[valid], 0.8, n_classes=10, random_state=validation_seed(0))
    set_seed(0)
    dls = image_dataloaders(x_train, y_train, x_test[valid], noisy_valid, bs=64, augment=False)
    scorer = ScoreTestSet(x_test[test], y_test[test])
    learn = Learner(dls, small_cnn(1), loss_func=CrossEntropyLossFlat(), metrics=accuracy, cbs=[scorer])
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(3, 1e-2)
    assert len(scorer.accuracies) == 3
    # the last score is the trained model's accuracy on the test half and its clean labels ...
    predicted = scorer.predictions().numpy()
    assert scorer.accuracies[-1] == pytest.approx(float(np.mean(predicted == y_test[test])))
    assert np.array_equal(scorer.predicted.numpy(), predicted)  # kept from the last epoch, as the run reports it
    # ... not the learner's validation accuracy, counted against the split's noisy labels
    valid_accuracy = float(learn.recorder.values[-1][2])
    assert scorer.accuracies[-1] > valid_accuracy + 0.2, (scorer.accuracies, valid_accuracy)
    # scoring leaves the model in the mode it found it in
    for mode in (True, False):
        learn.model.train(mode)
        scorer.predictions()
        assert learn.model.training is mode


def test_scores_a_test_loader_as_it_is_transformed():
    # CIFAR-10's tensors stay uint8 and are normalised per batch: the scorer takes the loader
    from lnc_experiments.data import tensor_dataloaders
    from lnc_experiments.models import PreActResNet18

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 32, 32, 3)).astype(np.uint8)
    y = rng.integers(0, 10, 96)
    dls = tensor_dataloaders(x[:64], y[:64], x[64:80], y[64:80], bs=16, more=[(x[80:], y[80:])])
    assert len(dls.loaders) == 3 and dls[2].n == 16
    scorer = ScoreTestSet(dl=dls[2])
    learn = Learner(dls, PreActResNet18(width=4), loss_func=CrossEntropyLossFlat(), metrics=accuracy, cbs=[scorer])
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-3)
    probs, targets = learn.get_preds(dl=dls[2])
    assert np.array_equal(targets.numpy(), y[80:])
    assert np.array_equal(scorer.predicted.numpy(), probs.argmax(dim=1).numpy())
    assert scorer.accuracies == [pytest.approx(float(np.mean(probs.argmax(dim=1).numpy() == y[80:])))]
    for bad in (dict(), dict(images=torch.zeros(2, 1, 8, 8)), dict(images=torch.zeros(2, 1, 8, 8), labels=[0, 1], dl=dls[2])):
        with pytest.raises(ValueError, match="either images and labels, or dl"):
            ScoreTestSet(**bad)
