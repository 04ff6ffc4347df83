"""Batched seeds (:func:`how_cnns_learn.training.train_classifiers`): S networks trained as one model equal S runs of
the one-seed trainer :func:`~how_cnns_learn.training.train_classifier` (float64: weights to 1e-10, tables equal)."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from how_cnns_learn import data, models, training

CUE = data.cue_conflict(n_train=40, n_test=12, seed=0)
D3 = data.noisy_templates(data.designed_structure(), per_class=6, seed=0)

ARCHITECTURES = {  # (network factory, training set, test set or None for the per-seed split)
    "MLP, ReLU": (lambda: models.MLPClassifier(16, 4, hidden=6, activation="relu"), CUE.train, CUE.tests["both cues"]),
    "CNN 15×15 (Fourier path)": (lambda: models.ConvClassifier(16, 4, (15,), channels=2, activation="relu",
                                                               init_gain=0.5), CUE.train, CUE.tests["both cues"]),
    "CNN 2 × 3×3": (lambda: models.ConvClassifier(16, 4, (3, 3), channels=3, activation="relu"), CUE.train, None),
    "CNN 8×8 on 8×8, linear": (lambda: models.ConvClassifier(8, 3, (8,), channels=2, activation="linear",
                                                             init_gain=0.5), D3, D3),
    "SmallReLUCNN": (lambda: models.SmallReLUCNN(8, channels=3, classes=3), D3, None),
}


def _networks(make, seeds):
    nets = []
    for s in seeds:
        torch.manual_seed(s)
        nets.append(make().double())
    return nets


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
@pytest.mark.parametrize("loss, optimizer, batch_size", [("mse", "sgd", 7), ("cross_entropy", "adam", 7),
                                                         ("mse", "adam", None), ("cross_entropy", "sgd", None)])
def test_batched_seeds_equal_one_seed_runs(architecture, loss, optimizer, batch_size):
    make, train, test = ARCHITECTURES[architecture]
    seeds = [3, 4, 5]
    nets = _networks(make, seeds)
    alone = [copy.deepcopy(net) for net in nets]

    def record(net):
        return {"output sum": float(training.model_outputs(net, train).sum())}

    settings = dict(test_data=test, epochs=2, lr=0.05, batch_size=batch_size, loss=loss, optimizer=optimizer,
                    record_every=1, on_record=record)
    expected = [training.train_classifier(net, train, seed=s, **settings) for net, s in zip(alone, seeds)]
    tables = training.train_classifiers(nets, train, seeds=seeds, **settings)
    for net, single, table, reference in zip(nets, alone, tables, expected):
        for p, q in zip(net.parameters(), single.parameters()):
            assert p.is_leaf and p.requires_grad and p.shape == q.shape
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=0, atol=1e-10)
        assert list(table.columns) == list(reference.columns)
        pd.testing.assert_frame_equal(table.drop(columns="norms"), reference.drop(columns="norms"), rtol=1e-10)
        np.testing.assert_allclose(np.stack(table["norms"]), np.stack(reference["norms"]), rtol=1e-10)
        assert table.attrs["device"] == reference.attrs["device"] == "cpu"
        assert table["output sum"].iloc[-1] != table["output sum"].iloc[0]  # on_record saw the trained weights


def test_trained_networks_own_their_parameters_afterwards():
    make, train, test = ARCHITECTURES["MLP, ReLU"]
    nets = _networks(make, [0, 1])
    training.train_classifiers(nets, train, seeds=[0, 1], test_data=test, epochs=1, batch_size=None)
    with torch.no_grad():
        nets[0][1].weight.zero_()
    assert nets[1][1].weight.abs().sum() > 0


def test_fast_cue_conflict_outputs_equal_the_model():
    torch.manual_seed(0)
    net = models.ConvClassifier(16, 4, (15,), channels=3, activation="relu").double()
    images = CUE.tests["conflict"].inputs
    np.testing.assert_allclose(training._outputs(net, images), training.model_outputs(net, images), atol=1e-12)
    linear = models.LinearCNN(16, 3, 4)  # not batchable: the model itself
    np.testing.assert_array_equal(training._outputs(linear, images), training.model_outputs(linear, images))


@pytest.mark.parametrize("nets, seeds, message", [
    (lambda: [models.LinearCNN(16, 3, 4)], [0], "LinearCNN"),
    (lambda: [models.MLPClassifier(16, 4), models.MLPClassifier(16, 4)], [0], "one seed per network"),
    (lambda: [models.MLPClassifier(16, 4, hidden=4), models.MLPClassifier(16, 4, hidden=5)], [0, 1], "models\\[1\\]"),
    (lambda: [], [], "models is empty"),
])
def test_bad_batches_are_refused_clearly(nets, seeds, message):
    with pytest.raises((TypeError, ValueError), match=message):
        training.train_classifiers(nets(), CUE.train, seeds=seeds, test_data=CUE.tests["both cues"], epochs=1)


def test_the_same_network_twice_is_refused():
    net = models.MLPClassifier(16, 4)
    with pytest.raises(ValueError, match="distinct"):
        training.train_classifiers([net, net], CUE.train, seeds=[0, 1], test_data=CUE.tests["both cues"], epochs=1)


def test_record_false_trains_the_same_networks_and_records_nothing():
    make, train, test = ARCHITECTURES["CNN 2 × 3×3"]
    recorded, silent = _networks(make, [1, 2]), _networks(make, [1, 2])
    settings = dict(test_data=test, epochs=2, lr=0.05, batch_size=7, loss="mse")
    training.train_classifiers(recorded, train, seeds=[1, 2], **settings)
    tables = training.train_classifiers(silent, train, seeds=[1, 2], record=False, **settings)
    assert all(table.empty and table.attrs["device"] == "cpu" for table in tables)
    for a, b in zip(recorded, silent):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
    with pytest.raises(ValueError, match="record=False records nothing"):
        training.train_classifiers(silent, train, seeds=[1, 2], record=False, record_every=1, **settings)


@pytest.mark.parametrize("pad", [(1, 1, 1, 1), (0, 1, 0, 1), (1, 0, 2, 1), (2, 2, 2, 2), (3, 3, 3, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_circular_pad_gradient_is_bit_identical_to_autograd(pad, dtype):
    generator = torch.Generator().manual_seed(sum(pad))
    x = torch.randn(5, 3, 4, 6, dtype=dtype, generator=generator, requires_grad=True)
    padded = torch.nn.functional.pad(x, pad, mode="circular")
    g = torch.randn(padded.shape, dtype=dtype, generator=generator)
    (expected,) = torch.autograd.grad(padded, x, g)
    fast = training._pad(x, pad, "circular")
    assert torch.equal(fast, padded)
    (grad,) = torch.autograd.grad(fast, x, g)
    assert torch.equal(grad, expected)
