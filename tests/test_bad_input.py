"""Table-driven: bad input to the library's public functions gives an error that names what is wrong."""

import numpy as np
import pytest
import torch

from how_cnns_learn import bottleneck, claims, data, fourier, models, repro, simulate, theory, training

D1 = data.designed_structure()
TRAIN = data.structure_items(D1)
NAN_IMAGES = np.full((3, 8, 8), np.nan)

CASES = [
    ("non-square image", lambda: fourier.dft2(np.zeros((4, 5))), "square"),
    ("non-square stack", lambda: fourier.dominant_amplitude(np.zeros((2, 4, 5))), "square"),
    ("kernel larger than image", lambda: fourier.embed_kernel(np.ones((9, 9)), 8), "larger than the image"),
    ("kernel support too large", lambda: fourier.kernel_support(8, 9), "cannot be larger than the image"),
    ("kernel/image mismatch", lambda: fourier.circular_convolve(np.ones((4, 4)), np.ones((5, 5))), "must agree"),
    ("dense/kernel mismatch", lambda: fourier.frequency_units(np.ones((3, 4, 4)), np.ones((5, 5))), "must agree"),
    ("NaN inputs", lambda: data.TrainingSet(NAN_IMAGES, np.zeros((3, 3))), "inputs contain NaN"),
    ("inf targets", lambda: data.TrainingSet(np.zeros((3, 8, 8)), np.full((3, 3), np.inf)), "targets contain NaN"),
    ("integer inputs", lambda: data.TrainingSet(np.zeros((3, 8, 8), dtype=int), np.zeros((3, 3))), "inputs must be a real floating"),
    ("targets of wrong length", lambda: data.TrainingSet(np.zeros((3, 8, 8)), np.zeros((2, 3))), "targets must have shape"),
    ("unknown reduction", lambda: data.TrainingSet(np.zeros((3, 8, 8)), np.zeros((3, 3)), "avg"), "reduction"),
    ("phi not orthonormal", lambda: data.DatasetStructure(D1.U, D1.s, 2 * D1.phi), "orthonormal"),
    ("NaN singular values", lambda: data.DatasetStructure(D1.U, np.array([1.0, np.nan, 1.0]), D1.phi), "s contains NaN"),
    ("D1 too small", lambda: data.designed_structure(n=4), "n >= 6"),
    ("negative learning rate", lambda: simulate.train_linear_cnn(TRAIN, D1, lr=-0.01, steps=5), "lr > 0"),
    ("negative steps", lambda: simulate.train_linear_fcnn(TRAIN, D1, lr=0.01, steps=-1), "steps >= 0"),
    ("negative init scale", lambda: simulate.train_linear_cnn(TRAIN, D1, lr=0.01, steps=5, init_scale=-1.0), "init_scale"),
    ("kernel larger than image (simulator)", lambda: simulate.train_linear_cnn(TRAIN, D1, lr=0.01, steps=5, kernel_size=9), "kernel_size"),
    ("zero channels", lambda: simulate.train_linear_cnn(TRAIN, D1, lr=0.01, steps=5, channels=0), "channels"),
    ("no seeds", lambda: simulate.train_linear_fcnn(TRAIN, D1, lr=0.01, steps=5, seeds=[]), "seeds"),
    ("structure/data mismatch", lambda: simulate.train_linear_fcnn(TRAIN, data.designed_structure(n=10), lr=0.01, steps=1), "does not match"),
    ("wrong dtype", lambda: simulate.train_linear_cnn(TRAIN, D1, lr=0.01, steps=1, dtype=torch.float16), "dtype"),
    ("predictions of wrong shape", lambda: simulate.mode_strengths(np.zeros((2, 3)), TRAIN, D1), "predictions"),
    ("negative singular value in theory", lambda: theory.mode_strength(1.0, -1.0, 1e-3, 0.01), "s must be"),
    ("zero learning rate in theory", lambda: theory.transition_width(1.0, 0.0), "lr must be"),
    ("rho outside [0, 1]", lambda: theory.subdominant_share_exponent(1.5), "ρ must lie"),
    ("race with bad times", lambda: theory.frequency_race(D1, np.zeros((3, 8, 8)), [0.0, 0.0], 0.01), "increasing"),
    ("race with unknown method", lambda: theory.frequency_race(D1, np.zeros((3, 8, 8)), [0.0, 1.0], 0.01, method="rk4"), "method"),
    ("model input of wrong shape", lambda: models.LinearCNN(8, 3, 3)(torch.zeros(2, 7, 7, dtype=torch.float64)), "expects inputs"),
    ("model kernel too large", lambda: models.LinearCNN(8, 9, 3), "kernel_size"),
    ("small CNN with even kernel", lambda: models.SmallReLUCNN(kernel_size=2), "odd kernel_size"),
    ("classifier with no epochs", lambda: training.train_classifier(models.SmallReLUCNN(), data.digits(), epochs=0), "bad settings"),
    ("cue conflict with too few items", lambda: data.cue_conflict(n_train=2), "n_train"),
    ("classifier with unknown loss", lambda: training.train_classifier(models.SmallReLUCNN(), data.digits(), loss="hinge"), "loss"),
    ("classifier with unknown optimizer", lambda: training.train_classifier(models.SmallReLUCNN(), data.digits(), optimizer="gd"), "optimizer"),
    ("classifier with empty batches", lambda: training.train_classifier(models.SmallReLUCNN(), data.digits(), batch_size=0), "batch_size"),
    ("conv classifier kernel too large", lambda: models.ConvClassifier(16, 4, (17,)), "kernel_sizes"),
    ("unknown device", lambda: repro.resolve_device("tpu"), "unknown device"),
    ("quick not a bool", lambda: repro.chapter_setup(quick="yes", seed=0, device="cpu"), "quick"),
    ("negative seed", lambda: repro.seed_everything(-1), "seed"),
    ("claim without tolerance", lambda: claims.ClaimSet("x").check_close("a", "s", 1, 1, theory="t"), "rtol and/or atol"),
    ("claim with bad provenance", lambda: claims.ClaimSet("x").sanity_between("a", "s", 1, upper=2, theory="t", provenance="rumour"), "provenance"),
    ("result claim without a rival", lambda: claims.ClaimSet("x").check_between("a", "s", 1, upper=2, theory="t", tolerance_from="t"), "needs an alternative"),
    ("bottleneck conv size mismatch", lambda: bottleneck.circular_conv(torch.zeros(2, 3, 8), torch.zeros(4, 3, 4)), "full-size"),
    ("bottleneck depth zero", lambda: bottleneck.representation_cost(np.ones((4, 1, 1)), 0), "positive integer"),
    ("bottleneck band too wide", lambda: bottleneck.band_mask(8, 4), "K < d/2"),
    ("bottleneck downsample range", lambda: bottleneck.CircularCNN([1, 2, 2, 1], 8, downsample=(1, 2)), "first <= last"),
    # issue #21 §3: what a user trying the library on their own data ran into
    ("s as a list of the wrong length", lambda: data.DatasetStructure(D1.U, [3.0, 2.0], D1.phi), "inconsistent structure"),
    ("s as a nested list", lambda: data.DatasetStructure(D1.U, [[3.0, 2.0, 1.0]], D1.phi), "s must be one-dimensional"),
    ("s as text", lambda: data.DatasetStructure(D1.U, ["a", "b", "c"], D1.phi), "s must be a real floating array"),
    ("unsorted s", lambda: data.DatasetStructure(D1.U, [1.0, 3.0, 2.0], D1.phi), "s must be sorted in decreasing order"),
    ("float32 phi not orthonormal", lambda: data.DatasetStructure(D1.U.astype(np.float32), D1.s, 1.01 * D1.phi.astype(np.float32)), "orthonormal"),
    ("negative seed as an int", lambda: simulate.train_linear_fcnn(TRAIN, D1, lr=0.01, steps=1, seeds=-1), "seeds"),
    ("unstable learning rate (CNN)", lambda: simulate.train_linear_cnn(TRAIN, D1, lr=0.2, steps=1), "above the stability limit"),
    ("unstable learning rate (FCNN)", lambda: simulate.train_linear_fcnn(TRAIN, D1, lr=0.4, steps=1), r"η·G = 1.2 ≥ 1"),
    ("stability check of an unknown model", lambda: theory.check_learning_rate(0.01, D1, "rnn"), "model must be"),
    ("transition width: structure with rate_factor", lambda: theory.transition_width(D1, 0.01, 2.0), "pass model="),
    ("transition width: s with model", lambda: theory.transition_width(D1.s, 0.01, model="cnn"), "rate_factor"),
    ("learning order of a run too short", lambda: theory.learning_order(simulate.train_linear_fcnn(TRAIN, D1, lr=0.01, steps=2)), "never reaches s/2"),
    ("power fraction of a wrong-sized spectrum", lambda: theory.dominant_power_fraction(np.ones((2, 7, 7)), D1), "kernel_power must be"),
    ("power fraction of mode 0", lambda: theory.dominant_power_fraction(np.ones((8, 8)), D1, modes=[0]), "1-based"),
]


@pytest.mark.parametrize("call, match", [(c, m) for _, c, m in CASES], ids=[name for name, _, _ in CASES])
def test_bad_input_raises_a_named_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
