"""The figure style: mode colours stay distinct and the same in every figure."""

import itertools

import numpy as np
import pytest
import seaborn as sns

from how_cnns_learn import plotting


def test_up_to_six_modes_use_the_colour_blind_palette():
    assert plotting.mode_palette(3) == sns.color_palette("colorblind", 3)
    assert plotting.mode_palette(6)[:3] == plotting.mode_palette(3)  # mode k has one colour in every figure


@pytest.mark.parametrize("n_modes", [7, 9, 12])
def test_many_modes_get_an_ordered_ramp_of_distinct_colours(n_modes):
    colours = np.array(plotting.mode_palette(n_modes))
    assert colours.shape == (n_modes, 3)
    closest = min(np.linalg.norm(a - b) for a, b in itertools.combinations(colours, 2))
    assert closest > 0.05
    luminance = colours @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luminance) > 0), "mode 1 darkest, the last mode lightest"


def test_no_modes_is_an_error():
    with pytest.raises(ValueError, match="at least one mode"):
        plotting.mode_palette(0)


def test_theory_diamonds_are_hollow_and_drawn_under_the_dots():
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame({"mode": [1, 1, 2, 2], "value": [1.0, 1.1, 2.0, 2.1], "model": ["a", "a", "a", "a"],
                          "theory": [1.05, 1.05, 2.05, 2.05]})
    fig = plotting.bars_with_theory(frame, x="mode", y="value", hue="model", theory="theory", ylabel="v")
    hollow = [np.all(c.get_facecolor()[:, 3] == 0) for c in fig.axes[0].collections]
    n_diamonds = hollow.index(False)
    assert n_diamonds > 0 and not any(hollow[n_diamonds:]), "hollow theory markers first, filled dots after (on top)"
    dots = fig.axes[0].collections[n_diamonds:]
    assert sum(c.get_offsets().shape[0] for c in dots) == len(frame), "one dot per row"
    plt.close(fig)


def test_markers_put_a_dot_at_every_measured_point():
    import matplotlib.pyplot as plt

    x = np.array([2.0, 4.0, 6.0])
    fig = plotting.theory_vs_simulation(x, np.array([[1.0], [2.0], [3.1]]), np.array([[1.0], [2.0], [3.0]]),
                                        labels=["norm"], ylabel="y", markers=True)
    simulated, residual = fig.axes[0].lines[0], fig.axes[1].lines[0]
    assert simulated.get_marker() == "o" and residual.get_marker() == "o"
    plt.close(fig)
