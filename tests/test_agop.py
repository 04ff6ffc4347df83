"""Patch-AGOP, filter covariance, convolutional NTK and ConvRFM (how_cnns_learn.agop) and their data generators."""

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
