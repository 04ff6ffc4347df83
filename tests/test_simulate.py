import numpy as np
import pytest
import torch

from how_cnns_learn import data, simulate, theory


def _random_problem(seed=0, n=4, p=3, N=6, h=5):
    rng = np.random.default_rng(seed)
    train = data.TrainingSet(rng.standard_normal((N, n, n)), rng.standard_normal((N, p)), reduction="mean")
    W1 = rng.standard_normal((2, h, n * n)) * 0.3
    W2 = rng.standard_normal((2, p, h)) * 0.3
    return train, W1, W2


def _loss(train, W1, W2):
    M = W2 @ W1
    E = train.targets - train.flat_inputs @ M.T
    return 0.5 * train.item_weight * (E**2).sum()


def test_gradients_match_autograd_and_finite_differences():
    train, W1, W2 = _random_problem()
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    residual = t(train.sigma_yx) - (t(W2) @ t(W1)) @ t(train.sigma_xx)
    g1, g2 = simulate.fcnn_gradients(t(W1), t(W2), residual)
    W1a, W2a = t(W1[0]).requires_grad_(), t(W2[0]).requires_grad_()
    M = W2a @ W1a
    E = t(train.targets) - t(train.flat_inputs) @ M.T
    (0.5 * train.item_weight * (E**2).sum()).backward()
    np.testing.assert_allclose(g1[0].numpy(), W1a.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g2[0].numpy(), W2a.grad.numpy(), rtol=1e-10, atol=1e-12)
    # central finite differences on a few entries
    eps = 1e-6
    for idx in [(0, 0), (2, 7), (4, 15)]:
        Wp, Wm = W1[0].copy(), W1[0].copy()
        Wp[idx] += eps
        Wm[idx] -= eps
        fd = (_loss(train, Wp, W2[0]) - _loss(train, Wm, W2[0])) / (2 * eps)
        assert fd == pytest.approx(g1[0].numpy()[idx], rel=1e-7, abs=1e-9)


def test_loss_record_matches_direct_computation():
    train, W1, W2 = _random_problem(1)
    st = train.structure()
    run = simulate.train_linear_fcnn(train, st, lr=0.05, steps=3, init=(W1, W2))
    assert run.loss[0, 0] == pytest.approx(_loss(train, W1[0], W2[0]), rel=1e-12)
    assert np.all(np.diff(run.loss, axis=0) < 0)  # small steps decrease the loss


def test_a_network_does_not_depend_on_its_batch_companions():
    st = data.designed_structure()
    train = data.structure_items(st)
    alone = simulate.train_linear_fcnn(train, st, lr=0.01, steps=50, seeds=[7], init_scale=1e-2)
    batch = simulate.train_linear_fcnn(train, st, lr=0.01, steps=50, seeds=[3, 7, 9], init_scale=1e-2)
    np.testing.assert_allclose(alone.mode_strength[:, 0], batch.mode_strength[:, 1], rtol=1e-12, atol=1e-15)


def test_aligned_init_follows_the_scalar_map_exactly_and_conserves_balance():
    st = data.designed_structure()
    train = data.structure_items(st)
    run = simulate.train_linear_fcnn(train, st, lr=0.01, steps=800, init=simulate.aligned_fcnn_init(st, 8, 1e-2))
    expected = theory.mode_strength_discrete(800, st.s, 1e-2, 0.01)
    np.testing.assert_allclose(run.mode_strength[:, 0], expected, atol=1e-12)
    assert run.invariant_drift[0] < 1e-12


def test_random_small_init_balancedness_is_conserved_to_second_order():
    st = data.designed_structure()
    train = data.structure_items(st)
    drifts = [
        simulate.train_linear_fcnn(train, st, lr=lr, steps=int(8 / lr), seeds=[0], init_scale=1e-3).invariant_drift[0]
        for lr in (0.02, 0.01)
    ]
    assert drifts[1] < 1e-4
    assert drifts[0] / drifts[1] > 1.6  # O(η) accumulated drift (η² per step over 1/η steps)


def test_measure_transitions_on_an_exact_logistic():
    s, lr = np.array([2.0]), 0.01
    steps = np.arange(3000)
    a = theory.logistic_through(steps, s[0], 1000.0, lr)[:, None, None]
    row = simulate.measure_transitions(steps, a, s).iloc[0]
    assert row.t50 == 1001  # first step strictly above s/2
    assert row.width == pytest.approx(float(theory.transition_width(s[0], lr)), abs=1.0)


def test_bad_inputs_raise():
    st = data.designed_structure()
    train = data.structure_items(st)
    with pytest.raises(ValueError, match="seeds"):
        simulate.train_linear_fcnn(train, st, lr=0.01, steps=1, seeds=[])
    with pytest.raises(ValueError, match="init shapes"):
        simulate.train_linear_fcnn(train, st, lr=0.01, steps=1, init=(np.zeros((1, 4, 64)), np.zeros((1, 3, 5))))
    with pytest.raises(ValueError, match="never exceeds"):
        simulate.measure_transitions(np.arange(3), np.zeros((3, 1, 1)), np.ones(1))
    with pytest.raises(ValueError, match="hidden >= p"):
        simulate.aligned_fcnn_init(st, 2, 1e-3)
