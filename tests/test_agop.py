"""Patch-AGOP, filter covariance, convolutional NTK and ConvRFM (how_cnns_learn.agop) and their data generators."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from how_cnns_learn import agop, data, models


def _small_cnn(seed=0):
    torch.manual_seed(seed)
    return agop.CNFACNN(n=6, width=5, classes=3, init_std=0.3, dtype=torch.float64)


def test_patches_match_conv_weight_order():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 4, 3, padding=1, bias=False, dtype=torch.float64)
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    h = agop.extract_patches(x, 3, 1) @ conv.weight.reshape(4, -1).T  # (N, P, C_out)
    assert torch.allclose(h.transpose(1, 2).reshape(3, 4, 5, 5), conv(x), atol=1e-12)


@pytest.mark.parametrize("index", [0, 2])
def test_identity_equals_direct_agop(index):
    model = _small_cnn()
    x = torch.randn(7, 1, 6, 6, dtype=torch.float64)
    G_id = agop.sequential_patch_agop(model, index, x, method="identity")
    G_dir = agop.sequential_patch_agop(model, index, x, method="direct")
    assert np.linalg.norm(G_id - G_dir) / np.linalg.norm(G_dir) < 1e-8


def test_identity_equals_direct_agop_circular_linear_cnn():
    torch.manual_seed(2)
    m = models.LinearCNN(6, 3, 4, channels=3)
    x = torch.randn(5, 1, 6, 6, dtype=torch.float64)
    tail = lambda h: m.dense(h.flatten(1))  # noqa: E731
    G_id = agop.patch_agop(x, m.conv, tail, "identity")
    G_dir = agop.patch_agop(x, m.conv, tail, "direct")
    assert np.linalg.norm(G_id - G_dir) / np.linalg.norm(G_dir) < 1e-8


@pytest.mark.parametrize("method", ["identity", "direct"])
def test_float32_agop_is_summed_in_float64(method):
    """A float32 network: G equals the float64 network's to float32 rounding, and is formed in float64, so it is
    symmetric and of rank at most C_out (= 5 < d = 9 for layer 0) to float64 rounding."""
    model = _small_cnn()
    x = torch.randn(7, 1, 6, 6, dtype=torch.float64)
    G64 = agop.sequential_patch_agop(model, 0, x, method=method)
    G32 = agop.sequential_patch_agop(copy.deepcopy(model).float(), 0, x.float(), method=method)
    assert G32.dtype == np.float64
    assert np.linalg.norm(G32 - G64) / np.linalg.norm(G64) < 1e-5
    assert np.abs(G32 - G32.T).max() <= 1e-14 * np.abs(G32).max()
    evals = np.linalg.eigvalsh(G32)
    if method == "identity":  # G = WᵀḠW: the 9 − 5 smallest eigenvalues vanish to float64 round-off
        assert np.abs(evals[:4]).max() < 9 * np.finfo(float).eps * evals.max()


def test_patch_gradients_match_finite_differences():
    """Perturb one patch coordinate k at one position p: h_p moves by ε·W[:, k]; central differences of f."""
    model = _small_cnn(3)
    conv, tail = model[0], nn.Sequential(*list(model)[1:])
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    g = agop.patch_gradients(x, conv, tail)  # (N, c, P, d)
    eps = 1e-6
    with torch.no_grad():
        h = conv(x)
        for p, k in [(0, 4), (14, 0), (35, 8)]:
            dh = torch.zeros_like(h)
            dh[:, :, p // 6, p % 6] = eps * conv.weight.reshape(5, -1)[:, k]
            fd = (tail(h + dh) - tail(h - dh)) / (2 * eps)  # (N, c)
            assert torch.allclose(fd, g[:, :, p, k], rtol=1e-5, atol=1e-9)


def test_pearson_properties():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 6))
    A = A @ A.T
    B = rng.standard_normal((6, 6))
    B = B @ B.T
    assert agop.pearson(A, A) == pytest.approx(1.0)
    assert agop.pearson(A, 3 * A + 2) == pytest.approx(1.0)
    assert agop.pearson(A, -A) == pytest.approx(-1.0)
    assert agop.pearson(A, B) == pytest.approx(agop.pearson(B, A))
    assert -1 <= agop.pearson(A, B) <= 1
    changed = B + np.diag(rng.standard_normal(6) * 100)
    assert agop.pearson(A, changed, off_diagonal=True) == pytest.approx(agop.pearson(A, B, off_diagonal=True))


def test_psd_power():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 3))
    A = X @ X.T  # rank 3, PSD
    R = agop.psd_sqrt(A)
    assert np.allclose(R @ R, A, atol=1e-10) and np.allclose(R, R.T)
    C = agop.psd_power(A, 1 / 3)
    assert np.allclose(C @ C @ C, A, atol=1e-9)


def test_ntk_symmetric_psd_and_diagonal():
    torch.manual_seed(0)
    x = torch.randn(12, 5, 4, dtype=torch.float64)
    K = agop.conv_ntk(x, x)
    assert torch.allclose(K, K.T, atol=1e-12)
    assert torch.linalg.eigvalsh(K).min() > -1e-9 * K.max()
    # θ = 0: Θ(a, a) = 2‖a‖² (sin 0 = 0, (π − 0)/π = 1), so K(x, x) = (2/P) Σ_p ‖x_(p)‖²
    expected = 2 * (x**2).sum(-1).mean(-1)
    # the clamp cos θ ≤ 1 − 10⁻⁶ (θ ≥ 1.4·10⁻³) lowers the diagonal by ≈ 2·10⁻⁴ relative
    assert torch.allclose(torch.diagonal(K), expected, rtol=1e-3)
    # chunking does not change the result
    assert torch.allclose(agop.conv_ntk(x, x, chunk=7), K, atol=1e-12)


def test_ntk_matches_wide_network_empirical_ntk():
    """f(x) = (1/√(P m)) Σ_p Σ_j v_jp √2 ReLU(w_j·x_(p)), w_j ~ N(0, I), v ~ N(0, 1): E[NTK] = K (mean over positions)."""
    gen = torch.Generator().manual_seed(0)
    P, d, m = 3, 4, 100_000
    x = torch.randn(3, P, d, dtype=torch.float64, generator=gen)
    w = torch.randn(m, d, dtype=torch.float64, generator=gen).requires_grad_(True)
    v = torch.randn(P, m, dtype=torch.float64, generator=gen).requires_grad_(True)

    def grad(xi):
        f = (v * (2**0.5) * torch.relu(xi @ w.T)).sum() / (P * m) ** 0.5
        gw, gv = torch.autograd.grad(f, (w, v))
        return torch.cat([gw.ravel(), gv.ravel()])

    grads = torch.stack([grad(xi) for xi in x])
    empirical = grads @ grads.T
    assert torch.allclose(empirical, agop.conv_ntk(x, x), rtol=0.03)


def test_conv_rfm_runs_and_learns_the_star_channels():
    X, y = data.star_images(40, seed=3)
    X = torch.as_tensor(X, dtype=torch.float64)
    Y = torch.nn.functional.one_hot(torch.as_tensor(y), 2).double()
    r = agop.conv_rfm((X[:30], Y[:30]), (X[30:50], Y[30:50]), (X[50:], Y[50:]), patch_size=7, iterations=2,
                      agop_samples=10)
    assert len(r.test_accuracy) == 2 and len(r.agops) == 1 and np.allclose(r.sqrt_M[0], np.eye(3 * 49))
    u = np.linalg.eigh(r.M)[1][:, -1]
    assert agop.channel_energy(u, 3, 7)[2] < 0.1
    assert np.linalg.norm(agop.psd_sqrt(r.M)) == pytest.approx(1.0)


def test_star_generator_draws_in_two_channels():
    X, y = data.star_images(5, seed=1)
    assert X.shape == (10, 3, 32, 32) and X.dtype == np.float32 and sorted(y.tolist()) == [0] * 5 + [1] * 5
    assert (X[y == 1][:, :2] == 1.0).sum() == 5 * 2 * 28 and (X[:, 2] == 1.0).sum() == 0
    X2, _ = data.star_images(5, seed=1)
    assert np.array_equal(X, X2)


def test_row_signal_and_crops():
    X, y = data.row_signal(50, 1.0, seed=0)
    assert X.shape == (50, 1, 16, 32) and set(y.tolist()) <= {0, 1}
    rows_with_signal = np.isclose(np.abs(X[:, 0]), 1 / np.sqrt(32)).all(-1)
    assert (rows_with_signal.sum(1) >= 1).all()
    C, labels = data.rgb_crops(4, size=8)
    assert C.shape == (20, 3, 8, 8) and np.allclose(C.mean(axis=(0, 2, 3)), 0, atol=1e-12)


def test_diagnostics():
    assert agop.prewitt_correlation(agop.PREWITT.ravel()) == pytest.approx(1.0)
    assert agop.prewitt_correlation(agop.PREWITT.T.ravel()) == pytest.approx(1.0)
    U = np.random.default_rng(0).standard_normal((50, 9))
    U[0] = agop.PREWITT.ravel()
    assert np.allclose(agop.prewitt_correlations(U), [agop.prewitt_correlation(u) for u in U], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="zero vector"):
        agop.prewitt_correlations(np.zeros((2, 9)))
    assert agop.spatial_dc_energy(np.ones(9))[0] == pytest.approx(1.0)
    assert agop.spatial_dc_energy(agop.PREWITT.ravel())[0] == pytest.approx(0.0)
    assert np.allclose(agop.channel_energy(np.r_[np.ones(9), np.zeros(18)], 3, 3), [1, 0, 0])
    img = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    img[0, 0, 3:] = 1.0
    resp = agop.filter_response(img, agop.PREWITT.ravel(), 3, padding=1)
    assert resp.shape == (1, 5, 5) and resp[0, 2].max() > resp[0, 0].max()


BAD = [
    ("3-D images", lambda: agop.extract_patches(torch.zeros(2, 5, 5), 3), "(N, C, H, W)"),
    ("numpy images", lambda: agop.extract_patches(np.zeros((1, 1, 5, 5)), 3), "torch.Tensor"),
    ("patch too large", lambda: agop.extract_patches(torch.zeros(1, 1, 3, 3), 5), "larger than the padded"),
    ("unknown AGOP method", lambda: agop.patch_agop(torch.zeros(1, 1, 4, 4), nn.Conv2d(1, 2, 3), lambda h: h.flatten(1), "jacobian"), "method"),
    ("strided conv", lambda: agop.patch_agop(torch.zeros(1, 1, 4, 4), nn.Conv2d(1, 2, 3, stride=2), lambda h: h.flatten(1)), "stride-1"),
    ("non-square pearson", lambda: agop.pearson(np.zeros((2, 3)), np.zeros((2, 3))), "square"),
    ("pearson shape mismatch", lambda: agop.pearson(np.eye(2), np.eye(3)), "same shape"),
    ("constant pearson", lambda: agop.pearson(np.ones((3, 3)), np.eye(3)), "constant"),
    ("non-PSD root", lambda: agop.psd_sqrt(-np.eye(3)), "positive semi-definite"),
    ("NaN matrix", lambda: agop.psd_sqrt(np.full((2, 2), np.nan)), "NaN"),
    ("ntk shape mismatch", lambda: agop.conv_ntk(torch.zeros(2, 3, 4), torch.zeros(2, 4, 4)), "equal P, d"),
    ("zero ridge", lambda: agop.kernel_ridge(torch.eye(2), torch.eye(2), 0.0), "ridge must be > 0"),
    ("empty ridge grid", lambda: agop.select_ridge(torch.eye(2), torch.eye(2), torch.eye(2), torch.eye(2), []), "grid"),
    ("patch vector of wrong length", lambda: agop.spatial_dc_energy(np.ones(8)), "is not a"),
    ("even CNN kernel", lambda: agop.CNFACNN(kernel_size=2), "odd kernel_size"),
    ("shallow linear chain", lambda: agop.LinearConvChain(8, 3, 2, 2, depth=1, init_std=0.1), "depth >= 2"),
    ("no star images", lambda: data.star_images(0), "per_class"),
    ("negative row-signal noise", lambda: data.row_signal(10, -1.0), "sigma > 0"),
]


@pytest.mark.parametrize("call, match", [(c, m) for _, c, m in BAD], ids=[n for n, _, _ in BAD])
def test_bad_input_raises_a_named_error(call, match):
    with pytest.raises((ValueError, TypeError), match=match.replace("(", r"\(").replace(")", r"\)")):
        call()


def _digit_sets(n_train=130, n_test=40):
    digits = data.digits("standardised")
    return (data.TrainingSet(digits.inputs[:n_train], digits.targets[:n_train]),
            data.TrainingSet(digits.inputs[n_train:n_train + n_test], digits.targets[n_train:n_train + n_test]))


def test_batched_cnfa_training_equals_one_seed_runs():
    """vmap over stacked seeds = each seed alone through training.train_classifier (float64: to 1e-10)."""
    from how_cnns_learn import training

    train, test = _digit_sets()
    runs = agop.train_cnfa_cnns([4, 2], train, test, epochs=2, batch_size=32, width=6, init_std=0.1,
                                dtype=torch.float64, method="vmap")
    assert runs.seeds == [4, 2] and runs.device == "cpu"
    for i, s in enumerate([4, 2]):
        torch.manual_seed(s)
        net = agop.CNFACNN(width=6, init_std=0.1, dtype=torch.float64)
        start = [p.detach().clone() for p in net.parameters()]
        history = training.train_classifier(net, train, test_data=test, epochs=2, lr=1e-3, batch_size=32,
                                            optimizer="adam", seed=s)
        for a, b, b0 in zip(runs.trained[i].parameters(), net.parameters(), start):
            assert torch.allclose(a, b, rtol=0, atol=1e-10) and not torch.allclose(b, b0)
        for a, b0 in zip(runs.initial[i].parameters(), start):
            assert torch.equal(a, b0)  # a seed's initialisation depends only on its own seed
        assert runs.test_accuracy[i] == pytest.approx(history["test accuracy"].iloc[-1], abs=1e-12)
    looped = agop.train_cnfa_cnns([4, 2], train, test, epochs=2, batch_size=32, width=6, init_std=0.1,
                                  dtype=torch.float64, method="loop")
    for a, b in zip(looped.trained[1].parameters(), runs.trained[1].parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


def test_batched_cnfa_training_float32_bound():
    """float32: the batched convolution rounds differently (oneDNN's grouped kernels), and Adam divides by √v, so a
    rounding difference in a small gradient moves its entry by up to O(lr) per step. The stated bound for this short
    run (8 steps): every weight within 1e-4 of its layer's largest entry."""
    train, test = _digit_sets(n_train=128)
    kwargs = dict(epochs=2, batch_size=32, width=6, init_std=0.1)
    fast = agop.train_cnfa_cnns([0, 1], train, test, method="vmap", **kwargs)
    slow = agop.train_cnfa_cnns([0, 1], train, test, method="loop", **kwargs)
    for net_a, net_b in zip(fast.trained, slow.trained):
        for a, b in zip(net_a.parameters(), net_b.parameters()):
            assert float((a - b).detach().abs().max()) <= 1e-4 * float(b.detach().abs().max())


def test_cnfa_training_device_is_validated_and_recorded():
    from how_cnns_learn import repro

    train, test = _digit_sets(n_train=32, n_test=8)
    repro.reset_devices_used()
    agop.train_cnfa_cnns([0], train, test, epochs=1, width=2, device="cpu")
    assert "train_cnfa_cnns" in repro.devices_used()["cpu"]
    with pytest.raises(ValueError, match="device"):
        agop.train_cnfa_cnns([0], train, test, epochs=1, width=2, device="nowhere")
    with pytest.raises(ValueError, match="method"):
        agop.train_cnfa_cnns([0], train, test, epochs=1, width=2, method="grouped")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the batched CUDA path is checked against the CPU loop")
def test_cnfa_training_on_cuda_matches_the_cpu():
    train, test = _digit_sets()
    kwargs = dict(epochs=1, batch_size=32, width=6, init_std=0.1, dtype=torch.float64)
    gpu = agop.train_cnfa_cnns([0, 1], train, test, device="cuda", **kwargs)
    cpu = agop.train_cnfa_cnns([0, 1], train, test, device="cpu", **kwargs)
    assert gpu.device.startswith("cuda")
    for a, b in zip(gpu.trained[0].parameters(), cpu.trained[0].parameters()):
        assert torch.allclose(a.cpu(), b, rtol=0, atol=1e-9)


@pytest.mark.parametrize("depth", [2, 3])
def test_linear_gd_on_second_moments_equals_full_batch_train_classifier(depth):
    """train_linear_gd (the step from Σ_xx, Σ_yx) = train_classifier's full-batch mse GD, float64, to 1e-10."""
    from how_cnns_learn import training

    digits = data.digits()
    train = data.TrainingSet(digits.inputs[:60], digits.targets[:60], "mean")

    def network():
        torch.manual_seed(3)
        if depth == 2:
            net = models.LinearCNN(8, 3, 10, channels=3)
            with torch.no_grad():
                for p in net.parameters():
                    p.normal_(0.0, 0.3)
            return net
        return agop.LinearConvChain(8, 3, 10, channels=3, depth=3, init_std=0.3)

    ours, reference = network(), network()
    start = [p.detach().clone() for p in ours.parameters()]
    table = agop.train_linear_gd(ours, train, steps=40, lr=0.05)
    history = training.train_classifier(reference, train, test_data=train, epochs=40, lr=0.05, batch_size=None,
                                        loss="mse")
    for a, b, b0 in zip(ours.parameters(), reference.parameters(), start):
        assert torch.allclose(a, b, rtol=0, atol=1e-10 * float(b.detach().abs().max())) and not torch.allclose(b, b0)
    assert table["train loss"].tolist() == pytest.approx(history["train loss"].tolist(), rel=1e-10)
    assert table.attrs["device"] == "cpu"


def test_linear_gd_refuses_a_nonlinear_model_and_bad_settings():
    digits = data.digits()
    train = data.TrainingSet(digits.inputs[:20], digits.targets[:20], "mean")
    torch.manual_seed(0)
    affine = nn.Sequential(nn.Flatten(), nn.Linear(64, 10, dtype=torch.float64))  # has a bias
    with pytest.raises(ValueError, match="not linear"):
        agop.train_linear_gd(affine, train, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="steps"):
        agop.train_linear_gd(models.LinearCNN(8, 3, 10), train, steps=0, lr=0.1)
    with pytest.raises(ValueError, match="device"):
        agop.train_linear_gd(models.LinearCNN(8, 3, 10), train, steps=1, lr=0.1, device="nowhere")


def test_linear_gd_generic_path_equals_structured_path():
    """A linear network that is not a LinearCNN/LinearConvChain class takes the autograd path (basis images); the
    same weights in a LinearConvChain take the hand-written step: equal to 1e-12."""
    digits = data.digits()
    train = data.TrainingSet(digits.inputs[:50], digits.targets[:50], "mean")
    torch.manual_seed(5)
    chain = agop.LinearConvChain(8, 3, 10, channels=3, depth=4, init_std=0.3)
    plain = nn.Sequential(*[copy_module for copy_module in __import__("copy").deepcopy(list(chain))])
    agop.train_linear_gd(chain, train, steps=25, lr=0.05)
    agop.train_linear_gd(plain, train, steps=25, lr=0.05)
    for a, b in zip(chain.parameters(), plain.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-12 * float(b.detach().abs().max()))


def test_fast_ntk_matrix_equals_conv_ntk_with_zero_patches_and_symmetry():
    torch.manual_seed(4)
    x = torch.randn(17, 6, 5, dtype=torch.float64)
    z = torch.randn(23, 6, 5, dtype=torch.float64)
    x[2, 1] = 0.0  # a zero patch (digits' background): Θ = 0 there
    z[5, 3] = 0.0
    z[7] = 2.5 * x[3]  # parallel patches: cos θ clamped to 1 − 10⁻⁶ in both
    reference = agop.conv_ntk(x, z)
    for chunk, block in ((2_000_000, 65_536), (40, 7), (1, 1)):
        fast = agop._ntk_matrix(x, z, chunk=chunk, block=block)
        assert torch.allclose(fast, reference, rtol=1e-12, atol=1e-12 * float(reference.abs().max()))
    sym = agop._ntk_matrix(x, x, symmetric=True, chunk=50, block=9)
    assert torch.equal(sym, sym.T)
    assert torch.allclose(sym, agop.conv_ntk(x, x), rtol=1e-12, atol=1e-12 * float(sym.abs().max()))
    with pytest.raises(ValueError, match="symmetric"):
        agop._ntk_matrix(x, z, symmetric=True)


def _conv_rfm_reference(train, val, test, patch_size, padding, iterations, ridge_grid, agop_samples):
    """The ConvRFM loop written plainly with conv_ntk (every patch set extracted once, no symmetry, no reuse)."""
    (Xtr, Ytr), (Xva, Yva), (Xte, Yte) = train, val, test
    P_tr, P_va, P_te = (agop.extract_patches(X, patch_size, padding) for X in (Xtr, Xva, Xte))
    root, accuracies, agops = torch.eye(P_tr.shape[-1], dtype=torch.float64), [], []
    for t in range(iterations):
        tr, va, te = P_tr @ root, P_va @ root, P_te @ root
        K = agop.conv_ntk(tr, tr)
        scale = K.max()
        lam, _ = agop.select_ridge(K / scale, Ytr, agop.conv_ntk(tr, va).T / scale, Yva, ridge_grid)
        alpha = agop.kernel_ridge(K / scale, Ytr, lam)
        pred = agop.conv_ntk(tr, te).T / scale @ alpha
        accuracies.append(float((pred.argmax(1) == Yte.argmax(1)).double().mean()))
        if t == iterations - 1:
            break
        raw = P_tr[:agop_samples].clone().requires_grad_(True)
        f = (agop.conv_ntk(tr, raw @ root).T / scale) @ alpha
        g = torch.stack([torch.autograd.grad(f[:, c].sum(), raw, retain_graph=True)[0] for c in range(f.shape[1])])
        g = g.reshape(-1, g.shape[-1])
        G = (g.T @ g / agop_samples).numpy()
        agops.append(G)
        root_np = agop.psd_sqrt(G)
        root = torch.as_tensor(root_np / np.linalg.norm(root_np))
    return accuracies, agops


@pytest.mark.parametrize("val_is_train", [False, True])
def test_conv_rfm_equals_the_plain_loop(val_is_train):
    """conv_rfm (fast kernel, symmetric train kernel, chunked patches, val = train reused) = the plain loop."""
    X, y = data.star_images(30, seed=5)
    X = torch.as_tensor(X[:, :, :16, :16], dtype=torch.float64)
    Y = torch.nn.functional.one_hot(torch.as_tensor(y), 2).double()
    train, test = (X[:24], Y[:24]), (X[24:40], Y[24:40])
    val = train if val_is_train else (X[40:], Y[40:])
    kwargs = dict(patch_size=5, padding=1, iterations=3, ridge_grid=[1e-3, 1e-1], agop_samples=8)
    fast = agop.conv_rfm(train, val, test, **kwargs)
    accuracies, agops = _conv_rfm_reference(train, val, test, **kwargs)
    assert fast.test_accuracy == accuracies
    for G, G_ref in zip(fast.agops, agops):
        assert np.allclose(G, G_ref, rtol=0, atol=1e-10 * np.abs(G_ref).max())


def test_conv_rfm_shares_iteration_zero_kernels_and_skips_untested_iterations(monkeypatch):
    """shared: a second run on the same train/test images (another validation split and ridge grid) reuses the
    iteration-0 train and test kernels and gives what it gives alone; test_at: the other iterations are NaN and
    the tested ones unchanged."""
    X, y = data.star_images(40, seed=5)
    X = torch.as_tensor(X[:, :, :16, :16], dtype=torch.float64)
    Y = torch.nn.functional.one_hot(torch.as_tensor(y), 2).double()
    train, val, test = (X[:20], Y[:20]), (X[20:28], Y[20:28]), (X[28:], Y[28:])
    kwargs = dict(patch_size=5, iterations=3, agop_samples=8)
    alone = [agop.conv_rfm(train, train, test, ridge_grid=[1e-3], **kwargs), agop.conv_rfm(train, val, test, **kwargs)]
    calls = []
    original = agop._ntk_matrix
    monkeypatch.setattr(agop, "_ntk_matrix", lambda *a, **k: calls.append(a[0].shape) or original(*a, **k))
    cache: dict = {}
    first = agop.conv_rfm(train, train, test, ridge_grid=[1e-3], shared=cache, **kwargs)
    n_first = len(calls)
    second = agop.conv_rfm(train, val, test, shared=cache, **kwargs)
    assert n_first == 3 * 2  # val = train: a train and a test kernel per iteration
    assert len(calls) - n_first == 3 * 3 - 2  # train, validation and test kernels, less iteration 0's train and test
    for a, b in zip(alone, (first, second)):
        assert a.test_accuracy == b.test_accuracy and a.ridge == b.ridge and a.test_mse == b.test_mse
        assert all(np.array_equal(g, h) for g, h in zip(a.agops, b.agops))
    with pytest.raises(ValueError, match="shared"):
        agop.conv_rfm(train, val, (X[30:], Y[30:]), shared=cache, **kwargs)
    last = agop.conv_rfm(train, val, test, test_at=[-1], **kwargs)
    assert np.isnan(last.test_accuracy[:2]).all() and np.isnan(last.test_mse[:2]).all()
    assert last.test_accuracy[2] == alone[1].test_accuracy[2] and last.ridge == alone[1].ridge
    with pytest.raises(ValueError, match="test_at"):
        agop.conv_rfm(train, val, test, test_at=[3], **kwargs)


def test_conv_rfm_equals_the_plain_loop_on_digits_with_zero_and_identical_patches():
    """Digits in [0, 1] with zero padding: all-zero patches (a zero-norm b in the AGOP's gradient) and the AGOP
    images are training images (identical patches: cos θ clamped). The written-out gradient keeps autograd's
    conventions there."""
    digits = data.digits("unit")
    X = torch.as_tensor(digits.inputs[:60, None], dtype=torch.float64)
    Y = torch.as_tensor(digits.targets[:60], dtype=torch.float64)
    train, val, test = (X[:30], Y[:30]), (X[30:45], Y[30:45]), (X[45:], Y[45:])
    kwargs = dict(patch_size=3, padding=1, iterations=3, ridge_grid=[1e-4, 1e-2], agop_samples=30)
    assert (agop.extract_patches(X[:30], 3, 1).norm(dim=-1) == 0).any()
    fast = agop.conv_rfm(train, val, test, **kwargs)
    accuracies, agops = _conv_rfm_reference(train, val, test, **kwargs)
    assert fast.test_accuracy == accuracies
    for G, G_ref in zip(fast.agops, agops):
        assert np.allclose(G, G_ref, rtol=0, atol=1e-10 * np.abs(G_ref).max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the fast ConvRFM and linear-GD paths on the GPU")
def test_conv_rfm_and_linear_gd_on_cuda_match_the_cpu():
    X, y = data.star_images(20, seed=5)
    X = torch.as_tensor(X[:, :, :16, :16], dtype=torch.float64)
    Y = torch.nn.functional.one_hot(torch.as_tensor(y), 2).double()
    args = ((X[:20], Y[:20]), (X[20:30], Y[20:30]), (X[30:], Y[30:]))
    kwargs = dict(patch_size=5, iterations=2, agop_samples=8)
    gpu, cpu = agop.conv_rfm(*args, device="cuda", **kwargs), agop.conv_rfm(*args, device="cpu", **kwargs)
    assert gpu.test_accuracy == cpu.test_accuracy
    assert np.allclose(gpu.agops[0], cpu.agops[0], rtol=0, atol=1e-9 * np.abs(cpu.agops[0]).max())
    digits = data.digits()
    train = data.TrainingSet(digits.inputs[:50], digits.targets[:50], "mean")
    nets = []
    for device in ("cuda", "cpu"):
        torch.manual_seed(1)
        net = agop.LinearConvChain(8, 3, 10, channels=3, depth=3, init_std=0.3)
        agop.train_linear_gd(net, train, steps=20, lr=0.05, device=device)
        nets.append(net.cpu())
    for a, b in zip(*(net.parameters() for net in nets)):
        assert torch.allclose(a, b, rtol=0, atol=1e-10 * float(b.detach().abs().max()))
