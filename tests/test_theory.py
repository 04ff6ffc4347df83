import numpy as np
import pytest

from how_cnns_learn import theory


@pytest.mark.parametrize("g", [1.0, 5.657])
def test_closed_form_solves_the_mode_ode(g):
    s, a0, lr = 2.0, 1e-3, 0.01
    t = np.linspace(0, 400, 4001)
    a = theory.mode_strength(t, s, a0, lr, g)
    h = 1e-3
    dadt = (theory.mode_strength(t + h, s, a0, lr, g) - theory.mode_strength(t - h, s, a0, lr, g)) / (2 * h)
    np.testing.assert_allclose(dadt, 2 * g * lr * a * (s - a), rtol=1e-6, atol=1e-12)  # τ da/dt = 2 g a (s − a)
    assert a[0] == pytest.approx(a0)


def test_width_and_midpoint_follow_from_the_closed_form():
    s, a0, lr, g = 3.0, 1e-4, 0.01, 2.0
    t = np.linspace(0, 2000, 2_000_001)
    a = theory.mode_strength(t, s, a0, lr, g)
    t10, t50, t90 = (t[np.argmax(a > f * s)] for f in (0.1, 0.5, 0.9))
    assert t90 - t10 == pytest.approx(float(theory.transition_width(s, lr, g)), abs=2e-3)
    assert t50 == pytest.approx(float(theory.transition_time(s, a0, lr, g)), abs=2e-3)


def test_logistic_through_its_midpoint_equals_the_closed_form():
    s, a0, lr = 1.5, 1e-5, 0.02
    t50 = theory.transition_time(s, a0, lr)
    t = np.linspace(0, 1000, 101)
    np.testing.assert_allclose(
        theory.logistic_through(t, s, t50, lr), theory.mode_strength(t, s, a0, lr), atol=1e-4 * s
    )


def test_gradient_descent_map_converges_to_the_flow_at_first_order():
    s, a0 = np.array([3.0, 1.0]), 1e-3
    gaps = []
    for lr in (0.01, 0.005, 0.0025):
        n = int(round(20 / lr))
        gd = theory.mode_strength_discrete(n, s, a0, lr)
        flow = theory.mode_strength(np.arange(n + 1)[:, None], s, a0, lr)
        gaps.append((np.abs(gd - flow) / s).max())
    assert gaps[0] / gaps[1] == pytest.approx(2.0, rel=0.05)
    assert gaps[1] / gaps[2] == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize(
    "call",
    [
        lambda: theory.mode_strength(1.0, -1.0, 1e-3, 0.01),
        lambda: theory.mode_strength(1.0, 1.0, 0.0, 0.01),
        lambda: theory.transition_width(1.0, 0.0),
        lambda: theory.transition_time(1.0, 0.9, 0.01),
        lambda: theory.mode_strength_discrete(10, 1.0, 1e-3, 0.01, rate_factor=2.0),
    ],
)
def test_impossible_settings_raise(call):
    with pytest.raises(ValueError):
        call()


def test_growth_law_flow_and_step_forms():
    x_flow = theory.frequency_growth_rate(5.0, 2.0, 1.0)
    assert x_flow == pytest.approx(10.0)
    # the GD form is the exact relative growth of a gain multiplied by (1 + η x)
    lr, x = 0.01, 5.0
    assert theory.frequency_growth_per_step(5.0, 2.0, 1.0, lr) == pytest.approx(((1 + lr * x) ** 2 - 1) / lr)
    assert theory.frequency_growth_per_step(5.0, 2.0, 1.0, 1e-9) == pytest.approx(x_flow, rel=1e-7)


def test_frequency_race_reduces_to_the_logistic_for_a_single_pair():
    from how_cnns_learn import data

    n = 8
    phi = data.cosine_image(n, 0, 2)[None]
    single = data.DatasetStructure(U=np.eye(1), s=np.array([2.0]), phi=phi)
    q0 = np.zeros((1, n, n))
    q0[0, 0, 2] = q0[0, 0, 6] = 5e-4  # the pair ±(0, 2)
    steps = np.linspace(0, 400, 401)
    a, q = theory.frequency_race(single, q0, steps, lr=0.01)
    expected = theory.mode_strength(steps, 2.0, 1e-3, 0.01, rate_factor=n / np.sqrt(2))
    np.testing.assert_allclose(a[:, 0], expected, rtol=1e-7)
    np.testing.assert_allclose(q[:, 0, 0, 2], q[:, 0, 0, 6])


def test_frequency_race_ratio_of_log_growths_is_rho():
    from how_cnns_learn import data, fourier

    d1 = data.designed_structure()
    spectrum = np.abs(fourier.dft2(d1.phi))
    q0 = np.where(spectrum > 1e-9, 1e-6, 0.0)
    a, q = theory.frequency_race(d1, q0, np.arange(0, 3001, 10.0), lr=0.01)
    np.testing.assert_allclose(a[-1], d1.s, rtol=1e-6)
    ratio = np.log(q[-1, 2, 2, 2] / q[0, 2, 2, 2]) / np.log(q[-1, 2, 2, 0] / q[0, 2, 2, 0])
    assert ratio == pytest.approx(spectrum[2, 2, 2] / spectrum[2, 2, 0], rel=1e-9)
    with pytest.raises(ValueError, match="increasing"):
        theory.frequency_race(d1, q0, [1.0, 2.0], lr=0.01)


def test_aligned_initial_contributions_predict_the_simulated_cnn():
    from how_cnns_learn import data, simulate

    d1 = data.designed_structure()
    seeds, lr, sigma = [0], 0.01, 1e-4
    run = simulate.train_linear_cnn(data.structure_items(d1), d1, lr=lr, steps=300, init_scale=sigma, seeds=seeds)
    W0, r0 = simulate.random_cnn_init(seeds, d1.n, d1.n, d1.p, sigma)
    q0 = theory.aligned_initial_contributions(d1, W0, r0)
    assert q0.shape == (1, d1.p, d1.n, d1.n) and np.all(q0 >= 0)
    a, _ = theory.frequency_race(d1, q0[0], run.steps.astype(float), lr, method="gd")
    energy = (W0**2).sum() + (r0**2).sum()
    assert np.abs(a - run.mode_strength[:, 0]).max() < energy  # mode 2 is through its stage by step 300
    raw = np.where(np.abs(np.fft.fft2(d1.phi)) > 1e-9, np.abs(np.fft.fft2(r0[0, 0])) ** 2 * np.abs(np.fft.fft2(d1.phi)) / 64, 0)
    a_raw, _ = theory.frequency_race(d1, raw, run.steps.astype(float), lr, method="gd")
    assert np.abs(a_raw - run.mode_strength[:, 0]).max() > 100 * energy


def test_aligned_initial_strengths_of_an_aligned_fcnn_are_its_mode_strengths():
    from how_cnns_learn import data, simulate

    d1 = data.designed_structure()
    W1, W2 = simulate.aligned_fcnn_init(d1, hidden=8, a0=1e-3)
    np.testing.assert_allclose(theory.aligned_initial_strengths(d1, W1, W2), 1e-3, rtol=1e-12)


def test_whitened_units_rise_to_their_heights_at_their_rates():
    from how_cnns_learn import data, fourier

    d1 = data.designed_structure()
    spectrum = np.abs(fourier.dft2(d1.phi))
    q0 = np.where(spectrum > 1e-9, 1e-8, 0.0)
    a, q = theory.whitened_units_gd(d1, q0, 3000, lr=0.01)
    np.testing.assert_allclose(q[-1], d1.s[:, None, None] * spectrum**2 / d1.n**2, atol=1e-12)
    np.testing.assert_allclose(a[-1], d1.s, rtol=1e-9)
    growth = np.log(q[1, 2, 2, 2] / q[0, 2, 2, 2])  # early: (1 + η s|Φ|)² per step
    assert growth == pytest.approx(2 * np.log1p(0.01 * d1.s[2] * spectrum[2, 2, 2]), rel=1e-6)
