import numpy as np
import pytest

from how_cnns_learn import data, fourier


def test_parseval_and_dominant_amplitude_range():
    rng = np.random.default_rng(0)
    imgs = rng.standard_normal((5, 7, 7))
    imgs /= np.linalg.norm(imgs.reshape(5, -1), axis=1)[:, None, None]
    power = (np.abs(fourier.dft2(imgs)) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(power, 49.0, rtol=1e-12)  # Σ_j |Φ_j|² = n²
    phi_star = fourier.dominant_amplitude(imgs)
    assert np.all(phi_star >= 1.0) and np.all(phi_star <= 7.0)


@pytest.mark.parametrize("n", [6, 7, 8])
def test_extreme_patterns(n):
    constant = np.ones((n, n)) / n
    delta = np.zeros((n, n))
    delta[2, 3] = 1.0
    cosine = data.cosine_image(n, 1, 2)
    got = fourier.dominant_amplitude(np.stack([constant, delta, cosine]))
    np.testing.assert_allclose(got, [n, 1.0, n / np.sqrt(2)], rtol=1e-12)


def test_dominant_mask_is_a_conjugate_pair():
    mask = fourier.dominant_frequency_mask(data.cosine_image(8, 0, 2))[0]
    assert set(zip(*np.nonzero(mask))) == {(0, 2), (0, 6)}


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="square"):
        fourier.dft2(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="rel_tol"):
        fourier.dominant_frequency_mask(np.zeros((1, 4, 4)), rel_tol=1.5)


@pytest.mark.parametrize("n, k", [(7, 3), (8, 3), (8, 4), (7, 7), (8, 8), (6, 1)])
def test_torch_circular_conv_is_the_fft_product_and_the_circulant_is_diagonalised(n, k):
    import torch

    conv = torch.nn.Conv2d(1, 1, k, padding="same", padding_mode="circular", bias=False, dtype=torch.float64)
    x = torch.randn(3, 1, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n * 10 + k))
    with torch.no_grad():
        out = conv(x)[:, 0].numpy()
    kernel = fourier.cross_correlation_weight_to_kernel(conv.weight.detach().numpy()[0, 0], n)
    np.testing.assert_allclose(fourier.circular_convolve(kernel, x[:, 0].numpy()), out, atol=1e-12)
    C, Q = fourier.circulant_matrix(kernel), fourier.dft_matrix(n)
    np.testing.assert_allclose(C @ x[0, 0].numpy().reshape(-1), out[0].reshape(-1), atol=1e-12)
    np.testing.assert_allclose(Q @ C @ Q.conj().T / n**2, np.diag(fourier.dft2(kernel).reshape(-1)), atol=1e-11)


def test_dft_matrix_is_fft2_on_row_major_vectors():
    x = np.random.default_rng(1).standard_normal((5, 5))
    np.testing.assert_allclose(fourier.dft_matrix(5) @ x.reshape(-1), np.fft.fft2(x).reshape(-1), atol=1e-12)


def test_kernel_errors():
    with pytest.raises(ValueError, match="larger than the image"):
        fourier.embed_kernel(np.ones((5, 5)), 4)
    with pytest.raises(ValueError, match="larger than the image"):
        fourier.cross_correlation_weight_to_kernel(np.ones((5, 5)), 4)
    with pytest.raises(ValueError, match="must agree"):
        fourier.circular_convolve(np.ones((4, 4)), np.ones((2, 5, 5)))


@pytest.mark.parametrize("n, k", [(8, 3), (8, 4), (7, 2), (5, 5)])
def test_embedding_and_torch_weights_share_one_centred_support(n, k):
    w = np.arange(1.0, k * k + 1).reshape(k, k)
    support = fourier.kernel_support(n, k)
    assert support.sum() == k * k
    assert np.all((fourier.embed_kernel(w, n) != 0) == support)
    assert np.all((fourier.cross_correlation_weight_to_kernel(w, n) != 0) == support)
    assert fourier.embed_kernel(w, n)[0, 0] == w[k // 2, k // 2]


def test_frequency_block_norms_are_the_fourier_diagonal_of_the_agop():
    """‖M̂_j‖²/n² is the diagonal of MᵀM in the unitary Fourier basis; Parseval: Σ_j ‖M̂_j‖² = n² ‖M‖²_F."""
    rng = np.random.default_rng(0)
    n, p = 4, 3
    M = rng.standard_normal((p, n * n))
    norms = fourier.frequency_block_norms(M, n)
    F = fourier.dft_matrix(n) / n  # unitary
    agop_diagonal = np.real(np.diag(F @ M.T @ M @ F.conj().T)).reshape(n, n)
    np.testing.assert_allclose(norms**2 / n**2, agop_diagonal, rtol=1e-12)
    np.testing.assert_allclose((norms**2).sum(), n**2 * (M**2).sum(), rtol=1e-12)
    np.testing.assert_allclose(fourier.frequency_block_norms(M.reshape(p, n, n), n), norms)
    with pytest.raises(ValueError, match="n×n"):
        fourier.frequency_block_norms(M, 5)


# ------------------------------------------------------------- the one DFT for numpy arrays and torch tensors
def test_dft_is_the_book_convention_for_numpy_and_torch():
    import torch

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 6, 6))
    np.testing.assert_array_equal(fourier.dft(x), np.fft.fft2(x))
    np.testing.assert_allclose(fourier.dft(x[0, 0]).reshape(-1), fourier.dft_matrix(6) @ x[0, 0].reshape(-1), atol=1e-12)
    np.testing.assert_allclose(fourier.dft(torch.tensor(x)).numpy(), fourier.dft(x), atol=1e-12)
    signal = rng.standard_normal((4, 7))
    F = np.exp(-2j * np.pi * np.outer(np.arange(7), np.arange(7)) / 7)
    np.testing.assert_allclose(fourier.dft(signal, ndim=1), signal @ F.T, atol=1e-12)  # 1-D: x̂[m] = Σ_j x[j] e^{−2πi jm/n}
    np.testing.assert_allclose(fourier.idft(fourier.dft(signal, 1), 1).real, signal, atol=1e-12)


@pytest.mark.parametrize("n", [6, 7])
def test_real_dft_round_trip_and_half_spectrum(n):
    import torch

    x = np.random.default_rng(n).standard_normal((3, n, n))
    half = fourier.rdft(x)
    assert half.shape == (3, n, n // 2 + 1)
    np.testing.assert_allclose(half, fourier.dft(x)[..., : n // 2 + 1], atol=1e-12)
    np.testing.assert_allclose(fourier.irdft(half, n), x, atol=1e-12)
    t = torch.tensor(x, requires_grad=True)
    back = fourier.irdft(fourier.rdft(t, 1), n, 1)
    back.sum().backward()  # differentiable through torch.fft
    np.testing.assert_allclose(back.detach().numpy(), x, atol=1e-12)


def test_kernel_power_is_the_squared_eigenvalue_modulus_and_obeys_parseval():
    rng = np.random.default_rng(2)
    kernels = fourier.embed_kernel(rng.standard_normal((4, 3, 3)), 8)  # (4, 8, 8)
    power = fourier.power_spectrum(kernels)
    np.testing.assert_array_equal(power, np.abs(np.fft.fft2(kernels)) ** 2)  # |λ_j|², λ = Q r̃
    np.testing.assert_allclose(power.sum(axis=(1, 2)), 64 * (kernels**2).sum(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_array_equal(fourier.power_spectrum(kernels, half=True), np.abs(np.fft.rfft2(kernels)) ** 2)


@pytest.mark.parametrize("call, match", [
    (lambda: fourier.dft(np.zeros(4), ndim=2), "at least 2 axes"),
    (lambda: fourier.dft(np.zeros((4, 4)), ndim=3), "ndim must be 1 or 2"),
    (lambda: fourier.irdft(np.zeros((4, 3)), (4, 4, 4), 2), "size must give 2"),
])
def test_dft_helpers_name_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
