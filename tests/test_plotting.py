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
