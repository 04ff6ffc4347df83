"""The digits-with-cue variant splits exactly into nine digit modes and one pure-grating cue mode."""

import numpy as np

from how_cnns_learn import data, fourier


def test_cue_mode_is_the_checkerboard():
    train = data.digits_with_grating_cue(amplitude=0.225)
    structure = train.structure()
    n = structure.n
    phi_star = fourier.dominant_amplitude(structure.phi[:10])
    cue = int(np.argmax(phi_star))
    assert abs(phi_star[cue] - n) < 1e-9  # φ = ±c(4, 4): Φ* = n exactly
    assert abs(structure.s[cue] - 0.225 / np.sqrt(2)) < 1e-12
    assert np.allclose(structure.U[:10, cue], 0, atol=1e-12)  # the cue mode lives on the cue outputs only
    assert np.delete(phi_star, cue).max() < 0.4 * n
