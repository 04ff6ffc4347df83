"""Tests of the convolution-bottleneck module: FFT convolution, Parseval, gradients, closed forms, bad input."""

import math

import numpy as np
import pytest
import torch

from how_cnns_learn import bottleneck as bn, training

torch.set_default_dtype(torch.float64)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_fft_conv_matches_explicit_circulant_convolution():
    x, W = _rand(5, 3, 12, seed=1), _rand(4, 3, 12, seed=2)
    y = bn.circular_conv(x, W).numpy()
    # direct sum y[n, c, j] = Σ_{c', k} W[c, c', k] x[n, c', (j − k) mod d]
    d = 12
    direct = np.zeros_like(y)
    for j in range(d):
        for k in range(d):
            direct[:, :, j] += np.einsum("oi,ni->no", W[:, :, k].numpy(), x[:, :, (j - k) % d].numpy())
    np.testing.assert_allclose(y, direct, atol=1e-12)
    A = bn.conv_matrix(W.numpy())
    np.testing.assert_allclose(y.reshape(5, -1), x.numpy().reshape(5, -1) @ A.T, atol=1e-12)


def test_2d_fft_conv_matches_explicit_shifted_sum():
    x, W = _rand(1, 1, 6, 6, seed=3), _rand(1, 1, 6, 6, seed=4)
    y = bn.circular_conv(x, W)[0, 0].numpy()
    ref = np.zeros((6, 6))
    for a in range(6):
        for b in range(6):
            ref += W[0, 0, a, b].item() * np.roll(x[0, 0].numpy(), (a, b), axis=(0, 1))
    np.testing.assert_allclose(y, ref, atol=1e-12)


@pytest.mark.parametrize("shape", [(12,), (8,), (6, 6), (8, 8), (9, 10)])
def test_circulant_and_fft_paths_give_the_same_values_and_gradients(shape, monkeypatch):
    x, W = _rand(5, 3, *shape, seed=7), _rand(4, 3, *shape, seed=8)
    results = []
    for limit in (10**6, 0):   # matrix path, then FFT path
        monkeypatch.setattr(bn, "CIRCULANT_MAX_POSITIONS", limit)
        Wg, xg = W.clone().requires_grad_(True), x.clone().requires_grad_(True)
        y = bn.circular_conv(xg, Wg)
        (y * torch.cos(torch.arange(y.numel(), dtype=y.dtype)).reshape(y.shape)).sum().backward()
        results.append((y.detach(), Wg.grad, xg.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_frequency_blocks_diagonalise_the_convolution_and_parseval():
    x, W = _rand(3, 2, 10, seed=5), _rand(4, 2, 10, seed=6)
    y = bn.circular_conv(x, W)
    Wh = bn.frequency_blocks(W)  # (d, C_out, C_in)
    xh, yh = np.fft.fft(x.numpy(), axis=-1), np.fft.fft(y.numpy(), axis=-1)
    for m in range(10):
        np.testing.assert_allclose(yh[:, :, m], xh[:, :, m] @ Wh[m].T, atol=1e-10)
    assert math.isclose(float((W**2).sum()), float((np.abs(Wh) ** 2).sum() / 10), rel_tol=1e-12)
    sv = bn.frequency_singular_values(W)
    np.testing.assert_allclose(sv[1:], sv[:0:-1], atol=1e-12)  # Hermitian pairs ±m share singular values


def test_population_mse_is_exact_and_has_the_same_gradient():
    d, K = 8, 1
    model = bn.CircularCNN([2, 3, 3, 2], d, seed=7)
    target = np.zeros((d, 2, 2), complex)
    target[bn.band_mask(d, K)] = np.array([[1.0, 0.5], [0.0, 0.3]])
    pop = bn.population_mse(model, target)
    # dense maps: A_θ through the FFT network on the identity basis, A* from the target's spatial filters
    eye = torch.eye(2 * d).reshape(2 * d, 2, d)
    A = model(eye).reshape(2 * d, 2 * d).T
    h_star = np.fft.ifft(np.moveaxis(target, 0, -1), axis=-1).real
    A_star = torch.as_tensor(bn.conv_matrix(h_star))
    dense = ((A - A_star) ** 2).sum() / (2 * d)  # E‖(A − A*)x‖² / (C_out d) for x ~ N(0, I)
    assert math.isclose(pop.item(), dense.item(), rel_tol=1e-10)
    g_pop = torch.autograd.grad(pop, list(model.parameters()))
    g_dense = torch.autograd.grad(dense, list(model.parameters()))
    for a, b in zip(g_pop, g_dense):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # and a Monte-Carlo estimate of the sample MSE agrees to its sampling error
    x = bn.gaussian_signals(20000, d, channels=2, seed=8)
    with torch.no_grad():
        mc = float(((model(x) - (x.reshape(20000, -1) @ A_star.T).reshape(20000, 2, d)) ** 2).mean())
    assert abs(mc - pop.item()) < 0.03 * pop.item()


def test_finite_difference_gradient_of_relu_network():
    model = bn.CircularCNN([1, 3, 3, 1], 8, relu=True, bias=True, seed=9)
    with torch.no_grad():
        for b in model.biases:
            b.copy_(_rand(*b.shape, seed=10) * 0.1)
    x = bn.gaussian_signals(6, 8, seed=11)

    def objective():
        return (model(x) ** 2).mean() + 1e-2 * model.sq_norm()

    grads = torch.autograd.grad(objective(), list(model.parameters()))
    eps = 1e-6
    for p, g in zip(model.parameters(), grads):
        flat = p.data.view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 5)):
            old = flat[i].item()
            flat[i] = old + eps
            up = objective().item()
            flat[i] = old - eps
            down = objective().item()
            flat[i] = old
            assert abs((up - down) / (2 * eps) - g.view(-1)[i].item()) < 1e-6


def test_closed_form_cost_equals_balanced_factorisation():
    d, L = 12, 4
    rng = np.random.default_rng(12)
    h = rng.standard_normal((2, 3, d))  # a random real 3 → 2 channel linear map
    H = bn.frequency_blocks(h)
    filters = bn.balanced_factorisation(H, L, width=3)
    np.testing.assert_allclose(bn.end_to_end_blocks(filters), H, atol=1e-10)
    norm = sum(float((w**2).sum()) for w in filters)
    assert math.isclose(norm, bn.representation_cost(H, L), rel_tol=1e-10)
    # every layer of the balanced factorisation has s.v. s_i(Ĥ_m)^{1/L}
    for w in filters[1:-1]:
        np.testing.assert_allclose(bn.frequency_singular_values(w)[:, :2],
                                   np.linalg.svd(H, compute_uv=False) ** (1 / L), atol=1e-10)


def test_cost_expansion_and_its_order_one_over_L_remainder():
    d = 16
    gains = np.array([1.0, 0.5, 0.25, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.25, 0.5])
    H = bn.lowpass_blocks(d, 2) * gains.reshape(d, 1, 1)
    r0, r1, rank = bn.cost_expansion(H)
    assert rank == 5 and math.isclose(r0, 5 / 16)
    assert math.isclose(r1, 2 / 16 * (2 * math.log(0.5) + 2 * math.log(0.25)), rel_tol=1e-12)
    s = np.array([1.0, 0.5, 0.5, 0.25, 0.25])
    for L in (10, 100, 1000):
        rem = bn.representation_cost(H, L) - L * r0 - r1
        assert abs(rem * L - 2 / d * (np.log(s) ** 2).sum()) < 5 / L  # remainder = (2/(dL)) Σ log² s + O(L⁻²)


def test_regularised_optimum():
    s, norm, err = bn.regularised_optimum_cost(np.ones(5), 2, 2e-3, 16)
    np.testing.assert_allclose(s**2, 1 - 1e-3, rtol=1e-8)  # L = 2, penalty (λ/2)‖θ‖²: 1 − s² = λ/2
    assert math.isclose(norm, 2 * 5 * (1 - 1e-3) / 16, rel_tol=1e-8)
    s_weak, _, _ = bn.regularised_optimum_cost(np.array([1e-3]), 4, 2e-3, 16)
    assert s_weak[0] == 0.0  # weight decay removes a weak frequency at depth 4


def test_up_and_down_sampling():
    x = _rand(3, 2, 8, seed=13)
    up = bn.upsample(x)
    torch.testing.assert_close(bn.downsample(up), x)
    band = bn.lowpass(_rand(3, 2, 16, seed=14), 3)  # |m| ≤ 3 < 16/4: Nyquist-safe for factor 2
    torch.testing.assert_close(bn.upsample(bn.downsample(band)), band)
    # relu commutes with subsampling
    torch.testing.assert_close(torch.relu(bn.downsample(band)), bn.downsample(torch.relu(band)))


def test_downsampled_network_equals_transplanted_full_network_on_band_limited_paths():
    # a linear network whose middle blocks vanish off |m| ≤ 2 computes the same map at half resolution
    d, L, K = 16, 4, 2
    full = bn.CircularCNN([1, 3, 3, 3, 1], d, seed=15)
    coarse = bn.CircularCNN([1, 3, 3, 3, 1], d, seed=15, downsample=(2, 3))
    mask = torch.as_tensor(bn.band_mask(d, K)[: d // 2 + 1], dtype=torch.float64)
    with torch.no_grad():
        for ell in (0, 1, 2):
            full.filters[ell].copy_(torch.fft.irfft(torch.fft.rfft(full.filters[ell]) * mask, n=d))
        for ell in (1, 2):
            wh = torch.fft.rfft(full.filters[ell])[..., : d // 4 + 1]
            coarse.filters[ell].copy_(torch.fft.irfft(wh, n=d // 2) / math.sqrt(2))
        coarse.filters[0].copy_(full.filters[0])
        coarse.filters[3].copy_(full.filters[3])
        x = bn.gaussian_signals(4, d, seed=16)
        torch.testing.assert_close(coarse(x), full(x), atol=1e-12, rtol=0)
        torch.testing.assert_close(bn.transplant_to_half_resolution(full, (2, 3))(x), full(x), atol=1e-12, rtol=0)
        # the √2 parametrisation gives a coarse middle layer the Fourier-coordinate cost of the fine one
        for ell in (1, 2):
            fine_blocks = bn.frequency_blocks(full.filters[ell])[bn.band_mask(d, K)]
            assert math.isclose(float((coarse.filters[ell] ** 2).sum()),
                                float((np.abs(fine_blocks) ** 2).sum()) / d, rel_tol=1e-10)


def test_activation_power_spectrum_folds_and_normalises():
    t = torch.arange(16, dtype=torch.float64)
    amp = _rand(50, 1, 1, seed=17)
    a = amp * torch.cos(2 * math.pi * 3 * t / 16) + 0.5 * amp * torch.cos(2 * math.pi * 0 * t) + 7.0  # offset removed
    spec = bn.activation_power_spectrum(a)
    assert spec.shape == (9,) and math.isclose(spec.sum(), 1.0)
    np.testing.assert_allclose(spec[3] / spec[0], (8**2 + 8**2) / 16**2 / 0.25, rtol=1e-10)
    assert math.isclose(bn.band_power_fraction(spec, 3), 1.0)


def test_training_reaches_the_closed_form_cost():
    d, L = 8, 2
    H = bn.lowpass_blocks(d, 1)
    model = bn.CircularCNN([1, 2, 1], d, seed=18)
    training.train_weight_decay(model, lambda m: bn.population_mse(m, H), weight_decay=2e-2, steps=3000, lr=1e-2,
                                lr_final=1e-4)
    _, norm, _ = bn.regularised_optimum_cost(np.ones(3), L, 2e-2, d)
    assert abs(model.sq_norm().item() / norm - 1) < 0.05


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: bn.circular_conv(torch.zeros(2, 3, 8), torch.zeros(4, 2, 8)), "does not fit"),
        (lambda: bn.circular_conv(np.zeros((2, 3, 8)), torch.zeros(4, 3, 8)), "torch tensors"),
        (lambda: bn.circular_conv(torch.zeros(2, 3, 8), torch.zeros(4, 3, 4)), "full-size"),
        (lambda: bn.representation_cost(np.ones((4, 1, 1)), 0), "positive integer"),
        (lambda: bn.representation_cost(np.ones((4, 1)), 2), r"\(F, C_out, C_in\)"),
        (lambda: bn.CircularCNN([1], 8), "at least 2"),
        (lambda: bn.CircularCNN([1, 2, 2, 1], 8, downsample=(1, 2)), "first <= last"),
        (lambda: bn.CircularCNN([1, 2, 1], 8)(torch.zeros(3, 2, 8)), r"input must have shape"),
        (lambda: bn.band_mask(8, 4), "K < d/2"),
        (lambda: bn.population_mse(bn.CircularCNN([1, 2, 1], 8, relu=True), np.ones((8, 1, 1))), "linear model"),
        (lambda: bn.population_mse(bn.CircularCNN([1, 2, 1], 8), np.ones((4, 1, 1))), "target blocks"),
        (lambda: bn.balanced_factorisation(np.ones((8, 2, 2)), 3, width=1), "width"),
        (lambda: training.train_weight_decay(bn.CircularCNN([1, 2, 1], 8), lambda m: m.sq_norm(), weight_decay=0,
                                             steps=0, lr=1e-3), "steps >= 1"),
        (lambda: bn.activation_power_spectrum(np.ones((3, 1, 8))), "zero variance"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_stacked_linear_trainer_equals_training_each_network_alone():
    """Depths 2, 3, 5 and a 2-D network, two targets, one λ each: the stacked trainer's iterates are the one-network
    trainer's (train_weight_decay on population_mse) up to float64 rounding."""
    d = 8
    H_low, H_other = bn.lowpass_blocks(d, 1), bn.lowpass_blocks(d, 2) * 0.5
    H_2d = bn.frequency_blocks(_rand(1, 2, 4, 4, seed=11))
    specs = [([1, 3, 1], d, H_low, 2e-3), ([1, 3, 3, 1], d, H_other, 1e-3), ([1, 3, 3, 3, 3, 1], d, H_low, 0.0),
             ([1, 3, 1], d, H_other, 4e-3), ([2, 2, 2, 1], (4, 4), H_2d, 2e-3)]

    def make():
        return [bn.CircularCNN(w, size, seed=10 + i) for i, (w, size, _, _) in enumerate(specs)]

    alone = make()
    finals = []
    for net, (_, _, H, lam) in zip(alone, specs):
        history = training.train_weight_decay(net, lambda m, H=H: bn.population_mse(m, H), weight_decay=lam,
                                              steps=150, lr=3e-3, lr_final=3e-4, record_every=150)
        finals.append(history.iloc[-1])
    stacked = make()
    table = bn.train_linear_cnns(stacked, [s[2] for s in specs], weight_decay=[s[3] for s in specs], steps=150,
                                 lr=3e-3, lr_final=3e-4)
    for a, b in zip(alone, stacked):
        for wa, wb in zip(a.filters, b.filters):
            torch.testing.assert_close(wb.detach(), wa.detach(), rtol=0, atol=1e-10)
    for n, final in enumerate(finals):
        for column in ("loss", "sq_norm", "objective"):
            assert table.loc[n, column] == pytest.approx(final[column], rel=1e-10, abs=1e-14)
    assert float(alone[2].filters[0].detach().abs().max()) > 0      # trained, not left at zero


@pytest.mark.parametrize("call, match", [
    (lambda: bn.train_linear_cnns([], [], weight_decay=0.0, steps=1, lr=1e-3), "one target per network"),
    (lambda: bn.train_linear_cnns([bn.CircularCNN([1, 2, 1], 8)], [bn.lowpass_blocks(8, 1)], weight_decay=[1.0, 2.0],
                                  steps=1, lr=1e-3), "one per network"),
    (lambda: bn.train_linear_cnns([bn.CircularCNN([1, 2, 1], 8, relu=True)], [bn.lowpass_blocks(8, 1)],
                                  weight_decay=0.0, steps=1, lr=1e-3), "linear CircularCNN"),
    (lambda: bn.train_linear_cnns([bn.CircularCNN([1, 2, 3, 1], 8)], [bn.lowpass_blocks(8, 1)], weight_decay=0.0,
                                  steps=1, lr=1e-3), "widths"),
    (lambda: bn.train_linear_cnns([bn.CircularCNN([1, 2, 1], 8)], [bn.lowpass_blocks(6, 1)], weight_decay=0.0,
                                  steps=1, lr=1e-3), "targets\\[0\\] must have shape"),
    (lambda: bn.train_linear_cnns([bn.CircularCNN([1, 2, 1], 8)], [bn.lowpass_blocks(8, 1)], weight_decay=0.0,
                                  steps=0, lr=1e-3), "steps >= 1"),
    (lambda: bn.train_linear_cnns([bn.CircularCNN([1, 2, 1], 8)], [bn.lowpass_blocks(8, 1)], weight_decay=0.0,
                                  steps=1, lr=1e-3, optimizer="sgd"), "optimizer"),
    (lambda: bn.train_linear_cnns([bn.CircularCNN([1, 2, 1], 8)], [bn.lowpass_blocks(8, 1)], weight_decay=0.0,
                                  steps=1, lr=1e-3, record_every=0), "record_every"),
])
def test_stacked_linear_trainer_names_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_stacked_linear_trainer_records_gradient_descent_like_the_one_network_trainer():
    d = 8
    H = bn.lowpass_blocks(d, 1) * 0.7

    def amplitude(m):
        return {"|h_1|": float(abs(bn.end_to_end_blocks(list(m.filters))[1, 0, 0]))}

    alone, stacked = (bn.CircularCNN([1, 2, 1], d, seed=3, init_scale=1e-2) for _ in range(2))
    reference = training.train_weight_decay(alone, lambda m: bn.population_mse(m, H), weight_decay=0.0, steps=95,
                                            lr=0.05, optimizer="gd", record_every=10, on_record=amplitude)
    table = bn.train_linear_cnns([stacked], [H], weight_decay=0.0, steps=95, lr=0.05, optimizer="gd",
                                 record_every=10, on_record=amplitude)
    assert table["step"].tolist() == reference["step"].tolist() == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    for column in ("loss", "sq_norm", "objective", "|h_1|"):
        np.testing.assert_allclose(table[column], reference[column], rtol=1e-10, atol=1e-14)
    assert table["|h_1|"].iloc[-1] > 10 * table["|h_1|"].iloc[0]        # it learned
    for wa, wb in zip(alone.filters, stacked.filters):
        torch.testing.assert_close(wb.detach(), wa.detach(), rtol=0, atol=1e-10)


def test_conjugate_half_counts_every_frequency_once():
    for spatial in [(8,), (7,), (4, 4), (3, 4)]:
        half, mult = bn._conjugate_half(spatial)
        conj = bn._conjugate_index(spatial)
        assert mult.sum() == math.prod(spatial)
        covered = np.concatenate([half, conj[half]])
        assert set(covered.tolist()) == set(range(math.prod(spatial)))
    half, mult = bn._conjugate_half((8,))
    assert half.tolist() == [0, 1, 2, 3, 4] and mult.tolist() == [1, 2, 2, 2, 1]


def test_stacked_trainer_half_spectrum_and_non_hermitian_targets_match_the_one_network_trainer():
    """A 2-D target of a real map (exactly Hermitian: half the frequencies are computed) and a 1-D target of no real
    map (every frequency): both give the one-network trainer's iterates up to float64 rounding."""
    raw = bn.frequency_blocks(_rand(1, 2, 4, 4, seed=12))
    H_2d = (raw + raw[bn._conjugate_index((4, 4))].conj()) / 2          # exactly Hermitian
    H_complex = bn.lowpass_blocks(8, 1) * np.exp(0.4j * np.arange(8)).reshape(8, 1, 1)   # not Hermitian
    specs = [([2, 2, 2, 1], (4, 4), H_2d), ([1, 2, 2, 1], 8, H_complex)]
    for i, (widths, size, H) in enumerate(specs):
        alone, stacked = (bn.CircularCNN(widths, size, seed=20 + i) for _ in range(2))
        final = training.train_weight_decay(alone, lambda m, H=H: bn.population_mse(m, H), weight_decay=2e-3,
                                            steps=120, lr=3e-3, record_every=120).iloc[-1]
        table = bn.train_linear_cnns([stacked], [H], weight_decay=2e-3, steps=120, lr=3e-3)
        for wa, wb in zip(alone.filters, stacked.filters):
            torch.testing.assert_close(wb.detach(), wa.detach(), rtol=0, atol=1e-10)
        assert table.loc[0, "loss"] == pytest.approx(final["loss"], rel=1e-10, abs=1e-14)
