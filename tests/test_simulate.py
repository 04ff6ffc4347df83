import numpy as np
import pytest
import torch

from how_cnns_learn import data, fourier, simulate, theory


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


@pytest.mark.parametrize(
    "train_fn, seed, steps_times_lr, lrs",
    [(simulate.train_linear_fcnn, 0, 8, (0.02, 0.01)), (simulate.train_linear_cnn, 1, 4, (0.01, 0.005))],
    ids=["fcnn-balancedness", "cnn-per-frequency-invariant"],
)
def test_invariant_is_conserved_to_second_order(train_fn, seed, steps_times_lr, lrs):
    """Drift of the conserved quantity is O(η) accumulated (η² per step over 1/η steps): halving η roughly halves it."""
    st = data.designed_structure()
    train = data.structure_items(st)
    drifts = [
        train_fn(train, st, lr=lr, steps=int(steps_times_lr / lr), seeds=[seed], init_scale=1e-3).invariant_drift[0]
        for lr in lrs
    ]
    assert drifts[1] < 1e-4
    assert drifts[0] / drifts[1] > 1.6


def test_measure_transitions_on_an_exact_logistic():
    s, lr = np.array([2.0]), 0.01
    steps = np.arange(3000)
    a = theory.logistic_through(steps, s[0], 1000.0, lr)[:, None, None]
    row = simulate.measure_transitions(steps, a, s).iloc[0]
    assert row.t50 == 1001  # first step strictly above s/2
    assert row.width == pytest.approx(float(theory.transition_width(s[0], lr)), abs=1.0)


def test_crossing_steps_interpolate_a_logistic_within_the_derived_bound():
    """Midpoints of logistics recorded every 5 steps, interpolated: within κΔ²/(12√3) of the true t50, far closer
    than the first record above ½ (up to Δ late)."""
    s, lr, every = np.array([2.0, 1.0, 0.5]), 0.05, 5
    kappa = 2 * lr * s  # the logistic's rate per step (phi* = 1)
    steps = np.arange(0, 800, every)
    t50 = np.array([201.3, 333.7, 512.9])
    a = theory.logistic_through(steps[:, None], s, t50, lr)[:, None, :]  # (T, 1, 3)
    got = simulate.crossing_steps(steps, a, s)[0]
    bound = kappa * every**2 / (12 * np.sqrt(3))
    assert np.all(np.abs(got - t50) <= bound)
    first_above = simulate.measure_transitions(steps, a, s).t50.to_numpy()
    assert np.all(np.abs(first_above - t50) > bound)  # the rival without interpolation misses by more
    ramp = np.linspace(0, 1, 11)[:, None, None]
    assert simulate.crossing_steps(np.arange(11) * 10, ramp, np.ones(1), level=0.25)[0, 0] == pytest.approx(25.0)
    with pytest.raises(ValueError, match="never reaches it"):
        simulate.crossing_steps(np.arange(3), np.zeros((3, 1, 1)), np.ones(1))
    with pytest.raises(ValueError, match="above it at the first record"):
        simulate.crossing_steps(np.arange(3), np.ones((3, 1, 1)), np.ones(1))
    with pytest.raises(ValueError, match="level must be"):
        simulate.crossing_steps(np.arange(3), np.ones((3, 1, 1)), np.ones(1), level=1.0)


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


def _torch_reference_cnn(W0, r0, train, lr, steps, k):
    """Train models.LinearCNN with autograd from the same initial weights; return its predictions per step."""
    from how_cnns_learn import models

    n, p = train.inputs.shape[-1], train.targets.shape[1]
    model = models.LinearCNN(n, k, p, channels=r0.shape[0])
    model.load_embedded(W0, r0)
    np.testing.assert_allclose(model.embedded_kernel(), r0, atol=0)
    X, Y = torch.tensor(train.inputs), torch.tensor(train.targets)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    out = []
    for _ in range(steps + 1):
        out.append(model(X).detach().numpy())
        opt.zero_grad()
        (0.5 * train.item_weight * ((model(X) - Y) ** 2).sum()).backward()
        opt.step()
    return out


@pytest.mark.parametrize("k", [3, 8])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("n_networks", [1, 3])
def test_fft_cnn_simulator_equals_the_autograd_model_step_by_step(k, channels, n_networks):
    st = data.designed_structure()
    train = data.structure_items(st)
    W0, r0 = simulate.random_cnn_init(list(range(n_networks)), 8, k, 3, 0.2, channels)
    run = simulate.train_linear_cnn(train, st, lr=0.01, steps=30, kernel_size=k, init=(W0, r0))
    for b in range(n_networks):
        preds = _torch_reference_cnn(W0[b], r0[b], train, 0.01, 30, k)
        ref = np.array([simulate.mode_strengths(y, train, st) for y in preds])
        np.testing.assert_allclose(run.mode_strength[:, b], ref, atol=1e-10)
    assert not np.any(run.weights["kernel"][..., ~fourier.kernel_support(8, k)])


def test_float32_and_subsampled_records_agree_with_the_reference_run():
    st = data.designed_structure()
    train = data.structure_items(st)
    full = simulate.train_linear_cnn(train, st, lr=0.01, steps=300, seeds=[0, 1])
    sparse = simulate.train_linear_cnn(train, st, lr=0.01, steps=300, seeds=[0, 1], record_every=7)
    assert sparse.steps[-1] == 300 and list(sparse.steps[:3]) == [0, 7, 14]
    np.testing.assert_allclose(sparse.mode_strength, full.mode_strength[sparse.steps], rtol=0, atol=0)
    single = simulate.train_linear_cnn(train, st, lr=0.01, steps=300, seeds=[0, 1], dtype=torch.float32)
    np.testing.assert_allclose(single.mode_strength[-1], full.mode_strength[-1], atol=1e-3)
    with pytest.raises(ValueError, match="dtype"):
        simulate.train_linear_cnn(train, st, lr=0.01, steps=1, dtype=torch.int64)
    with pytest.raises(ValueError, match="record_every"):
        simulate.train_linear_cnn(train, st, lr=0.01, steps=1, record_every=0)


def test_items_path_and_correlation_path_agree():
    """N < n² uses the data matrix, N ≥ n² uses Σ_xx: the two must give the same run."""
    st = data.designed_structure()
    few = data.structure_items(st)  # N = 3 < 64
    many = data.TrainingSet(np.concatenate([few.inputs] * 22), np.concatenate([few.targets] * 22), reduction="sum")
    a = simulate.train_linear_cnn(few, st, lr=0.01 / 22, steps=50, seeds=[0], init_scale=1e-2).mode_strength / 1
    b = simulate.train_linear_cnn(many, st, lr=0.01 / 22 / 22, steps=50, seeds=[0], init_scale=1e-2).mode_strength / 22
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-14)


def test_cnn_gradients_match_finite_differences():
    rng = np.random.default_rng(4)
    train = data.TrainingSet(rng.standard_normal((5, 6, 6)), rng.standard_normal((5, 2)), reduction="mean")
    W, r = rng.standard_normal((2, 1, 6, 6)), rng.standard_normal((1, 6, 6))
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731

    def loss(W_, r_):
        M = simulate.cnn_end_to_end(t(W_), t(r_)).numpy()
        E = train.targets - train.flat_inputs @ M.T
        return 0.5 * train.item_weight * (E**2).sum()

    M = simulate.cnn_end_to_end(t(W), t(r))
    gW, gr = simulate.cnn_gradients(t(W), t(r), t(train.sigma_yx) - M @ t(train.sigma_xx), torch.ones(6, 6, dtype=torch.float64))
    eps = 1e-6
    for idx in [(0, 1), (3, 5), (5, 0)]:
        rp, rm = r.copy(), r.copy()
        rp[(0,) + idx] += eps
        rm[(0,) + idx] -= eps
        assert (loss(W, rp) - loss(W, rm)) / (2 * eps) == pytest.approx(gr.numpy()[(0,) + idx], rel=1e-6)
        Wp, Wm = W.copy(), W.copy()
        Wp[(1, 0) + idx] += eps
        Wm[(1, 0) + idx] -= eps
        assert (loss(Wp, r) - loss(Wm, r)) / (2 * eps) == pytest.approx(gW.numpy()[(1, 0) + idx], rel=1e-6)


@pytest.mark.parametrize("model", ["fcnn", "cnn"])
def test_weight_decay_reaches_the_closed_form_optimum_from_a_large_init(model):
    """GD on L + (λ/2)‖θ‖² from a large random init ends at theory.weight_decay_optimum (strengths and ‖θ‖²)."""
    S = data.designed_structure()
    items = data.structure_items(S)
    lam = 0.5
    expected, cost = theory.weight_decay_optimum(S, lam, model)
    train = simulate.train_linear_cnn if model == "cnn" else simulate.train_linear_fcnn
    run = train(items, S, lr=0.05, steps=1500, init_scale=0.3, seeds=[0, 1], weight_decay=lam, record_every=1500)
    np.testing.assert_allclose(run.mode_strength[-1], np.broadcast_to(expected, (2, 3)), rtol=1e-8)
    norm2 = sum((w**2).reshape(2, -1).sum(1) for w in run.weights.values())
    np.testing.assert_allclose(norm2, cost, rtol=1e-8)
    if model == "cnn":  # the optimum uses the dominant frequencies only
        blocks = fourier.frequency_block_norms(run.end_to_end, S.n)
        outside = ~fourier.dominant_frequency_mask(S.phi).any(0)
        assert blocks[:, outside].max() < 1e-8 * blocks.max()


def test_weight_decay_gradient_is_the_penalty_gradient():
    """One GD step with weight decay equals the step on the penalised loss computed by autograd."""
    S = data.designed_structure()
    items = data.structure_items(S)
    lam, lr = 0.3, 0.01
    W0, r0 = simulate.random_cnn_init([0], S.n, S.n, S.p, 0.2, 1)
    run = simulate.train_linear_cnn(items, S, lr=lr, steps=1, init=(W0, r0), weight_decay=lam)
    W = torch.tensor(W0, requires_grad=True)
    r = torch.tensor(r0, requires_grad=True)
    M = simulate.cnn_end_to_end(W, r)[0]
    X = torch.tensor(items.flat_inputs)
    loss = 0.5 * ((torch.tensor(items.targets) - X @ M.T) ** 2).sum() + 0.5 * lam * ((W**2).sum() + (r**2).sum())
    loss.backward()
    np.testing.assert_allclose(run.weights["W"], (W - lr * W.grad).detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(run.weights["kernel"], (r - lr * r.grad).detach().numpy(), atol=1e-12)


def test_weight_decay_optimum_rejects_bad_settings():
    S = data.designed_structure()
    with pytest.raises(ValueError, match="weight_decay"):
        theory.weight_decay_optimum(S, 0.0, "cnn")
    with pytest.raises(ValueError, match="model"):
        theory.weight_decay_optimum(S, 0.1, "mlp")
    shared = data.DatasetStructure(U=np.eye(2), s=np.array([2.0, 1.0]),
                                   phi=np.stack([data.cosine_image(8, 0, 1), data.sine_image(8, 0, 1)]))
    with pytest.raises(ValueError, match="overlap"):
        theory.weight_decay_optimum(shared, 0.1, "cnn")
    with pytest.raises(ValueError, match="weight_decay"):
        simulate.train_linear_cnn(data.structure_items(S), S, lr=0.01, steps=1, weight_decay=-1.0)


def test_linear_cnn_takes_images_with_and_without_the_channel_axis():
    from how_cnns_learn import models

    net = models.LinearCNN(6, 3, 4, channels=2)
    x = torch.randn(5, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(net(x), net(x[:, None]))


# --- the simulator's paths agree with each other and with the plain pixel-space algorithm (#24) ---------------------


def _pixel_reference_cnn(train, st, W0, r0, lr, steps, k, weight_decay=0.0):
    """The textbook algorithm in pixel space (cnn_end_to_end + cnn_gradients, Σ_xx dense): a_α per step, (T, B, p)."""
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    W, r = t(W0), t(r0)
    support = t(fourier.kernel_support(st.n, k).astype(float))
    sigma_xx, sigma_yx = t(train.sigma_xx), t(train.sigma_yx)
    probe = sigma_xx @ t(st.phi.reshape(st.p, -1)).T
    out = []
    for step in range(steps + 1):
        M = simulate.cnn_end_to_end(W, r)
        out.append(torch.einsum("ia,bia->ba", t(st.U), M @ probe))
        if step == steps:
            break
        gW, gr = simulate.cnn_gradients(W, r, sigma_yx - M @ sigma_xx, support)
        W, r = W - lr * (gW + weight_decay * W), r - lr * (gr + weight_decay * r)
    return torch.stack(out).numpy(), W.numpy(), r.numpy()


class _Unfactored:
    """A model seen without its optional item-factored members: the loop then forms R at full size each step."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        if name in ("outputs", "step_factored"):
            raise AttributeError(name)
        return getattr(self._model, name)


@pytest.mark.parametrize("k, channels, weight_decay", [(8, 1, 0.0), (8, 2, 0.3), (3, 2, 0.0), (5, 1, 0.3)])
def test_every_cnn_path_follows_the_pixel_space_algorithm(k, channels, weight_decay):
    """Per-frequency (k = n) and FFT-kernel forms, item-factored and full residuals: all equal the textbook loop."""
    st = data.designed_structure()
    train = data.structure_items(st)
    W0, r0 = simulate.random_cnn_init([0, 1], 8, k, 3, 0.3, channels)
    steps, lr = 150, 0.02
    ref, W_ref, r_ref = _pixel_reference_cnn(train, st, W0, r0, lr, steps, k, weight_decay)
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    variants = {"public": None}
    for fft_kernel in ([False, True] if k == 8 else [False]):
        for factored in (True, False):
            model = simulate._CNN(t(W0), t(r0), kernel_size=k, fft_kernel=fft_kernel)
            variants[f"fft={fft_kernel} factored={factored}"] = model if factored else _Unfactored(model)
    for name, model in variants.items():
        if model is None:
            run = simulate.train_linear_cnn(train, st, lr=lr, steps=steps, kernel_size=k, init=(W0, r0),
                                            weight_decay=weight_decay)
        else:
            run = simulate.simulate_linear_model(train, st, model, lr=lr, steps=steps, weight_decay=weight_decay)
        np.testing.assert_allclose(run.mode_strength, ref, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(run.weights["W"], W_ref, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(run.weights["kernel"], r_ref, rtol=0, atol=1e-12, err_msg=name)
        assert not np.any(run.weights["kernel"][..., ~fourier.kernel_support(8, k)]), name


def test_per_frequency_path_equals_the_fft_path_over_a_whole_run_with_dense_data():
    """N ≥ n² (Σ_xx path): per-frequency and FFT kernels give the same trajectory, records and invariant."""
    st = data.designed_structure()
    few = data.structure_items(st)
    many = data.TrainingSet(np.concatenate([few.inputs] * 22), np.concatenate([few.targets] * 22), reduction="mean")
    W0, r0 = simulate.random_cnn_init([3, 4], 8, 8, 3, 1e-3)
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    runs = [simulate.simulate_linear_model(many, st, simulate._CNN(t(W0), t(r0), 8, fft_kernel=fft), lr=0.02,
                                           steps=1500, record_every=5, record_kernel_power=True) for fft in (False, True)]
    for name in ("mode_strength", "loss", "end_to_end", "kernel_power"):
        np.testing.assert_allclose(getattr(runs[0], name), getattr(runs[1], name), rtol=0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(runs[0].invariant_drift, runs[1].invariant_drift, rtol=1e-6)
    np.testing.assert_allclose(runs[0].mode_strength[-1], np.broadcast_to(st.s / 3, (2, 3)), rtol=1e-3)  # all learned


def test_fcnn_factored_and_full_residual_paths_agree():
    st = data.designed_structure()
    train = data.structure_items(st)
    W1, W2 = simulate.random_fcnn_init([0, 1], 16, 64, 3, 0.1)
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    a = simulate.simulate_linear_model(train, st, simulate._FCNN(t(W1), t(W2)), lr=0.02, steps=300, weight_decay=0.1)
    b = simulate.simulate_linear_model(train, st, _Unfactored(simulate._FCNN(t(W1), t(W2))), lr=0.02, steps=300,
                                       weight_decay=0.1)
    for name in ("mode_strength", "loss", "end_to_end", "invariant_drift"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-13, err_msg=name)
    # and one step equals autograd on the penalised loss
    one = simulate.train_linear_fcnn(train, st, lr=0.02, steps=1, init=(W1, W2), weight_decay=0.1)
    W1a, W2a = t(W1).requires_grad_(), t(W2).requires_grad_()
    E = t(train.targets)[None] - t(train.flat_inputs) @ (W2a @ W1a).transpose(1, 2)
    (0.5 * (E**2).sum() + 0.05 * ((W1a**2).sum() + (W2a**2).sum())).backward()
    np.testing.assert_allclose(one.weights["W1"], (W1a - 0.02 * W1a.grad).detach().numpy(), atol=1e-14)
    np.testing.assert_allclose(one.weights["W2"], (W2a - 0.02 * W2a.grad).detach().numpy(), atol=1e-14)


class _EndToEnd:
    """A new simulator through the extension point: the end-to-end map M itself is the parameter (one layer)."""

    def __init__(self, M0: torch.Tensor):
        self.M = M0.clone()
        self.batch, _, self.dim = M0.shape
        self.metric = torch.ones(self.dim, dtype=M0.dtype)

    def coordinates(self, images):
        return images

    def pixels(self, coords):
        return coords

    def end_to_end(self):
        return self.M

    def step(self, residual, lr, weight_decay):
        self.M.mul_(1 - lr * weight_decay).add_(residual, alpha=lr)  # ∂L/∂M = −R

    def invariant(self):
        return torch.zeros(self.batch, 1, dtype=self.M.dtype)

    def invariant_scale(self):
        return torch.ones(self.batch, dtype=self.M.dtype)

    def weights(self):
        return {"M": self.M}

    def kernel_power(self):
        return None


def test_a_new_model_plugs_into_the_simulator_loop():
    """One-layer linear regression: a_α(t) = s_α (1 − (1 − η)^t) from M = 0 on whitened, aligned items."""
    st = data.designed_structure()
    train = data.structure_items(st)
    run = simulate.simulate_linear_model(train, st, _EndToEnd(torch.zeros(1, 3, 64, dtype=torch.float64)),
                                         lr=0.1, steps=40, seeds=[5])
    expected = st.s[None, :] * (1 - (1 - 0.1) ** np.arange(41))[:, None]
    np.testing.assert_allclose(run.mode_strength[:, 0], expected, atol=1e-12)
    assert list(run.seeds) == [5] and run.weights["M"].shape == (1, 3, 64)
    with pytest.raises(ValueError, match="seeds"):
        simulate.simulate_linear_model(train, st, _EndToEnd(torch.zeros(2, 3, 64, dtype=torch.float64)), lr=0.1,
                                       steps=1, seeds=[0])
    with pytest.raises(ValueError, match="kernel"):
        simulate.simulate_linear_model(train, st, _EndToEnd(torch.zeros(1, 3, 64, dtype=torch.float64)), lr=0.1,
                                       steps=1, record_kernel_power=True)


def test_benchmark_smoke_run_agrees_with_the_simulator():
    """bench/simulator.py in its smallest configuration: every contender's a_α(t) equals the simulator's."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "simulator.py"
    spec = importlib.util.spec_from_file_location("bench_simulator", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.compare(8, 2, steps=20, repeats=1, loop_networks=1, device=torch.device("cpu"))
    assert row["max |Δa|"] < bench.TOLERANCE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (bench/gpu.sh runs it on a GPU machine)")
@pytest.mark.parametrize("case", ["cnn k=n items", "cnn k=3 items", "cnn k=n dense", "fcnn items"])
def test_cuda_graph_steps_equal_eager_cuda_steps_and_the_cpu(case, monkeypatch):
    """On CUDA the plain steps replay one captured graph; they must give the eager CUDA numbers and the CPU's."""
    st = data.designed_structure()
    train = data.structure_items(st)
    if "dense" in case:  # N ≥ n²: the Σ_xx path
        train = data.TrainingSet(np.concatenate([train.inputs] * 22), np.concatenate([train.targets] * 22), "sum")
    kw = dict(lr=0.02 / (22 if "dense" in case else 1), steps=300, seeds=[0, 1], init_scale=1e-2, record_every=7)
    if case.startswith("cnn"):
        kw.update(kernel_size=3 if "k=3" in case else 8, record_kernel_power=True)
        train_fn = simulate.train_linear_cnn
    else:
        train_fn = simulate.train_linear_fcnn
    captured = []
    capture = simulate._capture_cuda_graph

    def spy(fn):
        graph = capture(fn)
        captured.append(graph is not None)
        return graph

    monkeypatch.setattr(simulate, "_capture_cuda_graph", spy)
    graph = train_fn(train, st, device="cuda", **kw)
    assert captured == [True]  # one capture, and it worked
    monkeypatch.setattr(simulate, "_CUDA_GRAPHS", False)
    eager = train_fn(train, st, device="cuda", **kw)
    cpu = train_fn(train, st, **kw)
    for name in ("mode_strength", "loss", "end_to_end", "kernel_power"):
        if getattr(cpu, name) is not None:
            np.testing.assert_allclose(getattr(graph, name), getattr(eager, name), rtol=0, atol=1e-13, err_msg=name)
            np.testing.assert_allclose(getattr(graph, name), getattr(cpu, name), rtol=0, atol=1e-11, err_msg=name)


def test_graph_replay_control_flow_gives_the_eager_run(monkeypatch):
    """The loop's graph path (warm-up, one capture, replays between records) on the CPU with a stand-in capture."""

    class Replay:
        def __init__(self, fn):
            self.fn, self.calls = fn, 0

        def replay(self):
            self.calls += 1
            self.fn()

    graphs = []
    monkeypatch.setattr(simulate, "_GRAPH_DEVICES", ("cpu",))
    monkeypatch.setattr(simulate, "_capture_cuda_graph", lambda fn: graphs.append(Replay(fn)) or graphs[-1])
    st = data.designed_structure()
    train = data.structure_items(st)
    kw = dict(lr=0.02, steps=100, seeds=[0, 1], init_scale=1e-2, record_every=7)
    replayed = simulate.train_linear_cnn(train, st, **kw)
    assert len(graphs) == 1 and graphs[0].calls == 100 - 3 - (len(replayed.steps) - 1 - 1)  # all but warm-up/records
    monkeypatch.setattr(simulate, "_CUDA_GRAPHS", False)
    eager = simulate.train_linear_cnn(train, st, **kw)
    np.testing.assert_array_equal(replayed.mode_strength, eager.mode_strength)
    np.testing.assert_array_equal(replayed.weights["W"], eager.weights["W"])


def _close(a, b, tol, name):
    """max |a − b| relative to max |a| (the trajectories' own scale) within ``tol``."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, name
    assert np.abs(a - b).max() <= tol * max(np.abs(a).max(), 1e-300), name


@pytest.mark.parametrize("weight_decay, dtype", [(0.0, torch.float64), (0.05, torch.float64), (0.05, torch.float32)])
def test_restriction_to_the_data_frequencies_changes_nothing_but_rounding(weight_decay, dtype):
    """D1 carries 9 of the 40 half-spectrum frequencies at n = 8: the restricted run (the default) equals the run that
    steps all of them, in every recorded quantity and the final state, with and without weight decay, C = 2, B = 3."""
    st = data.designed_structure()
    train = data.structure_items(st)
    assert simulate._data_frequencies(train.inputs).sum() == 9
    kw = dict(lr=0.02, steps=250, channels=2, seeds=[0, 1, 2], init_scale=0.05, weight_decay=weight_decay,
              record_kernel_power=True, dtype=dtype)
    every, restricted = (simulate.train_linear_cnn(train, st, restrict_frequencies=r, **kw) for r in (False, True))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for name in ("mode_strength", "loss", "invariant_drift", "end_to_end", "kernel_power"):
        _close(getattr(every, name), getattr(restricted, name), tol, name)
    for name in ("W", "kernel"):
        _close(every.weights[name], restricted.weights[name], tol, name)
    assert np.all(restricted.invariant_drift > 0)  # finite steps: the drift is measured, not zero by construction


def test_restricted_model_on_every_loop_path():
    """The restricted model (``_CNN(active=...)``) also follows the unrestricted one when the loop forms R at full
    size (no item-factored members) and on N ≥ n² band-limited data (the Σ_xx path)."""
    st = data.designed_structure()
    few = data.structure_items(st)
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((70, 3))  # 70 ≥ n² items in span{φ}: the same 9 frequencies
    many = data.TrainingSet(np.einsum("ma,ajk->mjk", mix, st.phi), mix @ few.targets, reduction="mean")
    W0, r0 = simulate.random_cnn_init([3, 4], 8, 8, 3, 0.05, channels=2)
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    for train, wrap, lr in ((few, _Unfactored, 0.02), (many, lambda m: m, 0.05)):
        active = simulate._data_frequencies(train.inputs)
        assert active.sum() == 9
        runs = [simulate.simulate_linear_model(train, st, wrap(simulate._CNN(t(W0), t(r0), 8, active=mask)), lr=lr,
                                               steps=200, record_every=3, record_kernel_power=True, weight_decay=0.1)
                for mask in (None, active)]
        for name in ("mode_strength", "loss", "invariant_drift", "end_to_end", "kernel_power"):
            _close(getattr(runs[0], name), getattr(runs[1], name), 1e-12, name)


def test_full_spectral_support_takes_the_unrestricted_path_bit_for_bit():
    """Data with power at every frequency: the mask is all True; the default run is the all-frequency one, bit for bit."""
    rng = np.random.default_rng(1)
    train = data.TrainingSet(rng.standard_normal((5, 6, 6)), rng.standard_normal((5, 3)), reduction="sum")
    st = train.structure()
    assert simulate._data_frequencies(train.inputs).all()
    kw = dict(lr=0.002, steps=60, seeds=[0, 1], init_scale=0.05, weight_decay=0.1, record_kernel_power=True)
    a, b = (simulate.train_linear_cnn(train, st, restrict_frequencies=r, **kw) for r in (True, False))
    for name in ("mode_strength", "loss", "invariant_drift", "end_to_end", "kernel_power"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.weights["W"], b.weights["W"])


def test_data_frequencies_threshold_separates_power_from_rounding():
    """Active: Σ_μ|x̂_μf|² > N·(n²ε)²·max; rounding (D1's zeros) is far below it, a weak genuine component above it."""
    n = 16
    st = data.designed_structure(n=n)
    items = data.structure_items(st).inputs
    mask = simulate._data_frequencies(items)
    assert mask.shape == (n, n // 2 + 1) and mask.sum() == 9
    power = (np.abs(np.fft.rfft2(items)) ** 2).sum(0)
    threshold = items.shape[0] * (n * n * np.finfo(float).eps) ** 2 * power.max()
    assert power[~mask].max() < 1e-3 * threshold  # D1's empty frequencies: rounding, far below the threshold
    weak = items.copy()
    weak[0] += 1e-10 * data.cosine_image(n, 3, 5)  # a genuine component, 1e-10 of the others: active
    assert simulate._data_frequencies(weak).sum() == 10
    assert simulate._data_frequencies(np.zeros((2, n, n))).all()  # nothing to restrict
    single = simulate._data_frequencies(items.astype(np.float32))  # float32 images: float32's rounding level
    assert single.sum() == 9


def test_restriction_rejects_bad_masks():
    W0, r0 = (torch.tensor(a) for a in simulate.random_cnn_init([0], 8, 8, 3, 0.1))
    with pytest.raises(ValueError, match="active must be a boolean"):
        simulate._CNN(W0, r0, 8, active=np.ones((8, 8), dtype=bool))
    with pytest.raises(ValueError, match="active must be a boolean"):
        simulate._CNN(W0, r0, 8, active=np.ones((8, 5)))
    with pytest.raises(ValueError, match="at least one"):
        simulate._CNN(W0, r0, 8, active=np.zeros((8, 5), dtype=bool))
    half = np.zeros((8, 5), dtype=bool)
    half[0, 1] = True
    with pytest.raises(ValueError, match="full-size kernel"):
        simulate._CNN(W0, r0, 8, fft_kernel=True, active=half)
    assert simulate._CNN(W0, r0, 8, active=np.ones((8, 5), dtype=bool))._active is None  # all active: no restriction
