"""The cue-conflict data (D4), the classifier models and the extended classifier trainer."""

import numpy as np
import pandas as pd
import pytest
import torch

from how_cnns_learn import data, fourier, models, simulate, training


@pytest.fixture(scope="module")
def cue():
    return data.cue_conflict(n_train=200, n_test=80, seed=3)


def test_shape_and_texture_dominant_amplitudes():
    shapes, textures = data.cue_conflict_patterns()
    np.testing.assert_allclose(fourier.dominant_amplitude(textures), 16 / np.sqrt(2), rtol=1e-12)
    phi = fourier.dominant_amplitude(shapes)
    assert np.all((phi > 3.5) & (phi < 4.5)), phi  # spread spectrum, Φ* ≈ 4


def test_the_eight_cues_are_orthonormal_and_mean_free():
    shapes, textures = data.cue_conflict_patterns()
    flat = np.concatenate([shapes, textures]).reshape(8, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(8), atol=1e-12)
    np.testing.assert_allclose(flat.sum(1), 0.0, atol=1e-12)


def test_equal_energy_and_noise_free_construction():
    cue = data.cue_conflict(n_train=40, n_test=40, noise=0.0, seed=1)
    labels = cue.train.targets.argmax(1)
    shape_w = np.sum(cue.train.inputs * cue.shapes[labels], axis=(1, 2))
    texture_w = np.sum(cue.train.inputs * cue.textures[labels], axis=(1, 2))
    np.testing.assert_allclose(shape_w, np.sqrt(2), rtol=1e-12)
    np.testing.assert_allclose(texture_w, np.sqrt(2), rtol=1e-12)
    only = cue.tests["shape only"]
    np.testing.assert_allclose(only.inputs, np.sqrt(2) * cue.shapes[only.targets.argmax(1)], atol=1e-12)
    only = cue.tests["texture only"]
    np.testing.assert_allclose(only.inputs, np.sqrt(2) * cue.textures[only.targets.argmax(1)], atol=1e-12)


def test_conflict_set_pairs_a_shape_with_another_class_texture():
    cue = data.cue_conflict(n_train=40, n_test=400, noise=0.0, seed=2)
    conflict = cue.tests["conflict"]
    a, b = conflict.targets.argmax(1), cue.conflict_texture
    assert np.all(a != b)
    assert set(np.unique((b - a) % 4)) == {1, 2, 3}  # every other class occurs as the texture
    np.testing.assert_allclose(conflict.inputs, np.sqrt(2) * (cue.shapes[a] + cue.textures[b]), atol=1e-12)


def test_cue_conflict_is_deterministic_per_seed():
    first, second = data.cue_conflict(n_train=20, n_test=20, seed=5), data.cue_conflict(n_train=20, n_test=20, seed=5)
    np.testing.assert_array_equal(first.train.inputs, second.train.inputs)
    np.testing.assert_array_equal(first.conflict_texture, second.conflict_texture)


@pytest.mark.parametrize("kernel_sizes", [(15,), (3, 3), (3, 3, 3), (8,)])
def test_conv_classifier_shapes_and_circular_padding(kernel_sizes):
    torch.manual_seed(0)
    net = models.ConvClassifier(16, 4, kernel_sizes, channels=5, activation="relu")
    x = torch.randn(3, 1, 16, 16)
    assert net(x).shape == (3, 4)
    features = torch.nn.Sequential(*list(net)[:-2])  # everything before flatten + readout
    shifted = torch.roll(x, shifts=(5, -3), dims=(2, 3))
    # circular convolutions commute with circular shifts, ReLU or not
    torch.testing.assert_close(features(shifted), torch.roll(features(x), shifts=(5, -3), dims=(2, 3)))
    assert all(m.bias is None for m in net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


def test_linear_conv_classifier_is_a_linear_map():
    torch.manual_seed(1)
    net = models.ConvClassifier(16, 4, (3, 3), channels=4, activation="linear").double()
    x, y = torch.randn(2, 1, 16, 16, dtype=torch.float64), torch.randn(2, 1, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(net(2 * x - y), 2 * net(x) - net(y))


def test_mlp_classifier_shapes_and_init_gain():
    torch.manual_seed(0)
    big = models.MLPClassifier(16, 4, hidden=32, activation="relu")
    torch.manual_seed(0)
    small = models.MLPClassifier(16, 4, hidden=32, activation="relu", init_gain=0.1)
    assert big(torch.randn(2, 1, 16, 16)).shape == (2, 4)
    np.testing.assert_allclose(small.filter_norms, 0.1 * big.filter_norms, rtol=1e-6)


def test_mse_training_on_the_cue_conflict_and_tidy_evaluation(cue):
    torch.manual_seed(0)
    net = models.MLPClassifier(16, 4, hidden=32, activation="linear", init_gain=0.3)
    history = training.train_classifier(net, cue.train, test_data=cue.tests["both cues"], epochs=5, lr=0.1,
                                        batch_size=50, loss="mse", record_every=1)
    assert list(history.epoch) == [0, 1, 2, 3, 4, 5] and list(history.step) == [0, 4, 8, 12, 16, 20]
    assert history["train loss"].iloc[-1] < history["train loss"].iloc[0]
    table = training.evaluate_cue_conflict(net, cue)
    assert isinstance(table, pd.DataFrame) and list(table.columns) == ["measure", "value"]
    assert set(table.measure) == {"accuracy, both cues", "accuracy, shape only", "accuracy, texture only",
                                  "follows shape", "follows texture"}
    value = table.set_index("measure")["value"]
    assert value["accuracy, both cues"] > 0.9
    assert value["follows shape"] + value["follows texture"] <= 1.0 + 1e-12


def test_mode_strengths_of_a_perfect_predictor_are_the_singular_values():
    train = data.noisy_templates(data.designed_structure(), per_class=10, seed=0)
    structure = train.structure()
    # recording them during training goes through the callback: tests/test_training.py
    np.testing.assert_allclose(simulate.mode_strengths(train.targets, train, structure), structure.s, rtol=1e-10)


def test_full_batch_mse_step_is_gradient_descent_on_the_mean_loss():
    train = data.noisy_templates(data.designed_structure(), per_class=4, seed=0)
    torch.manual_seed(0)
    net = models.ConvClassifier(8, 3, (3,), channels=2, activation="linear").double()
    W0 = [p.detach().clone() for p in net.parameters()]
    X, Y = torch.as_tensor(train.inputs).unsqueeze(1), torch.as_tensor(train.targets)
    loss = 0.5 * ((net(X) - Y) ** 2).sum(1).mean()
    grads = torch.autograd.grad(loss, list(net.parameters()))
    training.train_classifier(net, train, test_data=train, epochs=1, lr=0.05, batch_size=10**6, loss="mse")
    for p, p0, g in zip(net.parameters(), W0, grads):
        torch.testing.assert_close(p.detach(), p0 - 0.05 * g)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: data.cue_conflict(n_train=2), "n_train"),
        (lambda: data.cue_conflict(noise=-0.1), "noise"),
        (lambda: data.cue_conflict_patterns(n=8), "n = 16"),
        (lambda: models.ConvClassifier(16, 4, (17,)), "kernel_sizes"),
        (lambda: models.ConvClassifier(16, 4, ()), "kernel_sizes"),
        (lambda: models.ConvClassifier(16, 4, (3,), activation="tanh"), "activation"),
        (lambda: models.MLPClassifier(16, 1), "classes"),
        (lambda: training.train_classifier(models.MLPClassifier(8, 3), data.noisy_templates(data.designed_structure()),
                                           loss="hinge"), "loss"),
        (lambda: training.train_classifier(models.MLPClassifier(8, 3), data.noisy_templates(data.designed_structure()),
                                           test_fraction=0.0), "test_fraction"),
        (lambda: training.train_classifier(models.MLPClassifier(8, 3), data.noisy_templates(data.designed_structure()),
                                           test_data=data.digits()), "outputs"),
    ],
    ids=["too few items", "negative noise", "wrong n", "kernel too large", "no layers", "unknown activation",
         "one class", "unknown loss", "no test split", "test data mismatch"],
)
def test_bad_input_names_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()
