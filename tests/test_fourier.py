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
