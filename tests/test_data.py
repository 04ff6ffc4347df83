import numpy as np
import pytest

from how_cnns_learn import data, fourier


def test_d1_matches_its_specification():
    st = data.designed_structure()
    flat = st.phi.reshape(3, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(st.U.T @ st.U, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(fourier.dominant_amplitude(st.phi), [2 * np.sqrt(2), 4 * np.sqrt(2), 0.9 * 4 * np.sqrt(2)])


def test_structure_items_reproduce_sigma_yx_and_svd():
    st = data.designed_structure()
    train = data.structure_items(st)
    np.testing.assert_allclose(train.sigma_yx, st.sigma_yx, atol=1e-12)
    rec = train.structure()
    np.testing.assert_allclose(rec.s, st.s, atol=1e-12)
    # same modes up to sign: |<φ_rec, φ>| = 1
    overlap = np.abs(np.sum(rec.phi * st.phi, axis=(1, 2)))
    np.testing.assert_allclose(overlap, 1.0, atol=1e-12)
    # Σ_xx is the projector onto span{φ}
    P = train.sigma_xx
    np.testing.assert_allclose(P @ P, P, atol=1e-12)


def test_mean_reduction_scales_correlations():
    st = data.designed_structure()
    s = data.structure_items(st)
    m = data.TrainingSet(s.inputs, s.targets, reduction="mean")
    np.testing.assert_allclose(m.sigma_yx, s.sigma_yx / 3)


def test_bad_training_sets_raise():
    with pytest.raises(ValueError, match="targets"):
        data.TrainingSet(np.zeros((3, 4, 4)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="reduction"):
        data.TrainingSet(np.zeros((3, 4, 4)), np.zeros((3, 2)), reduction="median")
    with pytest.raises(ValueError, match="n must be"):
        data.cosine_image(1, 0, 0)
    with pytest.raises(ValueError, match="inconsistent"):
        data.DatasetStructure(U=np.eye(2), s=np.ones(3), phi=np.zeros((3, 4, 4)))


def test_whitened_and_noisy_sets_have_the_stated_correlations():
    st = data.designed_structure()
    d2 = data.whitened_pixels(st)
    np.testing.assert_allclose(d2.sigma_xx, np.eye(64), atol=1e-15)
    np.testing.assert_allclose(d2.sigma_yx, st.sigma_yx, atol=1e-12)
    d3 = data.noisy_templates(st)
    s3 = d3.structure()
    # row c of Σ_yx is (1/p)·(class-mean image): s ≈ amp/3 up to the noise
    np.testing.assert_allclose(s3.s, np.sqrt(3.0) * np.array([3, 2, 1]) / 3, rtol=0.01)


def test_digits_load_offline_and_are_centred():
    d5 = data.digits()
    assert d5.inputs.shape == (1797, 8, 8) and d5.targets.shape == (1797, 10)
    np.testing.assert_allclose(d5.inputs.mean(axis=0), 0.0, atol=1e-12)
    assert d5.structure().s[-1] < 1e-12  # centring makes Σ_yx rank 9


def test_structure_validation():
    st = data.designed_structure()
    with pytest.raises(ValueError, match="orthonormal"):
        data.DatasetStructure(U=st.U, s=st.s, phi=2 * st.phi)
    with pytest.raises(ValueError, match="floating"):
        data.TrainingSet(np.zeros((3, 4, 4), dtype=int), np.zeros((3, 2)))


def test_digits_preprocessing_options():
    centred, standardised, unit = (data.digits(p) for p in ("centred", "standardised", "unit"))
    np.testing.assert_allclose(centred.inputs.mean(axis=0), 0, atol=1e-12)
    assert abs(standardised.inputs.mean()) < 1e-12 and abs(standardised.inputs.std() - 1) < 1e-12
    assert unit.inputs.min() == 0 and unit.inputs.max() == 1
    np.testing.assert_array_equal(centred.targets, unit.targets)
    with pytest.raises(ValueError, match="preprocessing"):
        data.digits("whitened")
