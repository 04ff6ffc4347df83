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
