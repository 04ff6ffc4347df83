"""The helpers a user applying the theory to their own data needs (issue #21 §3): one mode order, array-likes,
float32, the merged stage width, the learning-rate limit, the learning order and the dominant power fraction."""

import numpy as np
import pytest

from how_cnns_learn import data, fourier, simulate, theory

D1 = data.designed_structure()
SHARED = data.shared_pair_structure()


def test_structure_accepts_lists_and_float32():
    listed = data.DatasetStructure(U=D1.U.tolist(), s=[3, 2, 1], phi=D1.phi.tolist())
    assert listed.s.dtype == np.float64 and np.array_equal(listed.s, D1.s)
    single = data.DatasetStructure(U=D1.U.astype(np.float32), s=D1.s.astype(np.float32), phi=D1.phi.astype(np.float32))
    assert single.phi.dtype == np.float32
    train = data.TrainingSet(data.structure_items(D1).inputs.astype(np.float32), data.structure_items(D1).targets.astype(np.float32))
    assert np.allclose(train.structure().s, D1.s, rtol=1e-5)


def test_one_mode_order_everywhere():
    """TrainingSet.structure() and DatasetStructure agree: decreasing s, mode 1 the largest."""
    order = [2, 0, 1]
    items = data.TrainingSet(D1.phi[order], (D1.U * D1.s).T[order])  # items presented in another order
    assert np.allclose(items.structure().s, D1.s)
    with pytest.raises(ValueError, match="decreasing"):
        data.DatasetStructure(D1.U[:, order], D1.s[order], D1.phi[order])


def test_seeds_as_an_int_is_one_network():
    train = data.structure_items(D1)
    one = simulate.train_linear_fcnn(train, D1, lr=0.01, steps=3, seeds=4)
    listed = simulate.train_linear_fcnn(train, D1, lr=0.01, steps=3, seeds=[4])
    assert one.seeds.tolist() == [4] and np.array_equal(one.mode_strength, listed.mode_strength)


def test_shared_dominant_frequencies_and_merged_widths():
    assert theory.shared_dominant_frequencies(SHARED) == [(1, 3)]
    assert theory.shared_dominant_frequencies(D1) == []
    # without sharing, the structure form is the one-mode formula τ ln 9/(sΦ*) (CNN) and τ ln 9/s (FCNN)
    phi_star = fourier.dominant_amplitude(D1.phi)
    assert np.allclose(theory.transition_width(D1, 0.01, model="cnn"), theory.transition_width(D1.s, 0.01, phi_star))
    assert np.allclose(theory.transition_width(D1, 0.01, model="fcnn"), theory.transition_width(D1.s, 0.01))
    # with sharing, modes 1 and 3 get the merged gain n√((s₁² + s₃²)/2) of their one frequency unit
    merged = theory.LN9 / (0.01 * SHARED.n * np.sqrt((3.0**2 + 1.0**2) / 2))
    widths = theory.transition_width(SHARED, 0.01, model="cnn")
    assert widths[[0, 2]] == pytest.approx([merged, merged]) and widths[1] == pytest.approx(theory.LN9 / (0.01 * 2 * 8 / np.sqrt(2)))
    zero = data.DatasetStructure(D1.U, [3.0, 2.0, 0.0], D1.phi)
    assert np.isinf(theory.transition_width(zero, 0.01, model="cnn")[2])


@pytest.mark.parametrize("factor, settles", [(0.95, True), (1.05, False)])
def test_learning_rate_limit_is_where_gd_stops_settling(factor, settles):
    """At η·s = 0.95 the aligned FCNN settles on a = s; at 1.05 it is refused, and the unchecked map oscillates."""
    structure = data.designed_structure()
    lr = factor / structure.s.max()
    if settles:
        assert theory.check_learning_rate(lr, structure, "fcnn") == pytest.approx(0.95)
        run = simulate.train_linear_fcnn(data.structure_items(structure), structure, lr=lr, steps=400,
                                         init=simulate.aligned_fcnn_init(structure, 8, 1e-3))
        assert np.allclose(run.mode_strength[-1, 0], structure.s, rtol=1e-6)
    else:
        with pytest.raises(ValueError, match="stability limit"):
            theory.check_learning_rate(lr, structure, "fcnn")
        path = theory.mode_strength_discrete(400, structure.s, 1e-3, lr)[:, 0]
        assert abs(path[-1] - path[-2]) > 0.05 * structure.s[0]  # period 2: consecutive steps differ


def test_learning_order_and_dominant_power_fraction():
    train = data.structure_items(SHARED)
    run = simulate.train_linear_cnn(train, SHARED, lr=0.01, steps=400, seeds=[0, 1], record_kernel_power=True)
    assert theory.learning_order(run).tolist() == [[1, 3, 2]] * 2  # the merged pair first, as the gains predict
    gains = theory.stage_gains(SHARED, "cnn")
    assert np.argsort(-gains, kind="stable").tolist() == [0, 2, 1]
    fraction = theory.dominant_power_fraction(run.kernel_power, SHARED)
    assert fraction.shape == run.kernel_power.shape[:3]
    assert fraction[-1].min() > 0.99 and fraction[0].max() < 0.5  # from random init to the dominant pairs
