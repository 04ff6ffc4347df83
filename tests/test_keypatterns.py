import numpy as np
import pytest
import torch

from how_cnns_learn import keypatterns as kp


def test_dictionaries_are_orthonormal():
    for P in (kp.random_dictionary(20, 10, 3), kp.cosine_dictionary(20, (3, 7), [1, 2, 4, 5, 6, 8, 9])):
        np.testing.assert_allclose(P @ P.T, np.eye(P.shape[0]), atol=1e-12)


def test_one_sgd_step_matches_autograd():
    P = kp.random_dictionary()
    run = kp.train_key_pattern_cnn(P, filters=4, seeds=[5], steps=1, noise=0.05)
    # replay the same sample: the trainer's generator is seeded from the seeds
    rng = np.random.default_rng([10_007, 5, 1])
    x, y = kp.sample_key_patterns(P, rng, 1, 9, 0.05)
    W = torch.tensor(run.W0[0], requires_grad=True)
    a = torch.tensor(run.a)
    f = (a * torch.relu(torch.tensor(x[0]) @ W.T).mean(0)).sum()
    loss = torch.nn.functional.softplus(-float(y[0]) * f)
    loss.backward()
    np.testing.assert_allclose(run.W[0], run.W0[0] - 0.1 * W.grad.numpy(), atol=1e-14)


def test_noise_free_winners_grow_monotonically_and_learn():
    P = kp.random_dictionary()
    run = kp.train_key_pattern_cnn(P, filters=8, seeds=[0, 1], steps=400, noise=0.0)
    steps = np.diff(run.key_overlap, axis=0)[:, run.winners]
    assert steps.min() >= -1e-12
    assert (kp.key_pattern_accuracy(run, P, np.random.default_rng(1), noise=0.0)[run.winners[:, :4].any(1) & run.winners[:, 4:].any(1)] == 1).all()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kp.random_dictionary(5, 10), "m <= d"),
        (lambda: kp.cosine_dictionary(20, (3, 3), [1]), "distinct"),
        (lambda: kp.train_key_pattern_cnn(kp.random_dictionary(), filters=3, seeds=[0]), "even"),
        (lambda: kp.train_key_pattern_cnn(kp.random_dictionary(), filters=4, seeds=[0], lr=-1), "lr > 0"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_key_pattern_agop_matches_finite_difference_gradients():
    patterns = kp.random_dictionary(d=6, m=4, seed=1)
    run = kp.train_key_pattern_cnn(patterns, filters=4, seeds=[0], steps=50, k=3)
    x, _ = kp.sample_key_patterns(patterns, np.random.default_rng(2), 5, k=3)

    def f(sample):
        return (run.a * np.maximum(run.W[0] @ sample.T, 0).mean(-1)).sum()

    G = np.zeros((6, 6))
    eps = 1e-6
    for sample in x:
        for i in range(3):
            grad = np.zeros(6)
            for c in range(6):
                up, down = sample.copy(), sample.copy()
                up[i, c] += eps
                down[i, c] -= eps
                grad[c] = (f(up) - f(down)) / (2 * eps)
            G += np.outer(grad, grad) / len(x)
    np.testing.assert_allclose(kp.key_pattern_agop(run, x)[0], G, atol=1e-8)
    with pytest.raises(ValueError, match="patches"):
        kp.key_pattern_agop(run, x[0])


def test_winner_growth_matches_noise_free_sgd():
    patterns = kp.random_dictionary(d=20, m=10, seed=0)
    run = kp.train_key_pattern_cnn(patterns, filters=8, seeds=[3], steps=600, lr=0.1, k=9, noise=0.0)
    for cls in (slice(0, 4), slice(4, 8)):
        winners = run.winners[0, cls]
        overlap = run.key_overlap[:, 0, cls][:, winners]
        growth = overlap[-1] - overlap[0]
        np.testing.assert_allclose(growth, growth[0], rtol=1e-12)  # one common increment for all winners
        n_class = int((np.diff(overlap[:, 0]) > 1e-12).sum())  # samples of this class seen (not rounding-level steps)
        c = kp.winner_growth(overlap[0].sum(), int(winners.sum()), n_class, 0.1, k=9, class_fraction=1.0)
        np.testing.assert_allclose(growth[0], c[-1], rtol=0.05)
    with pytest.raises(ValueError, match="n_winners"):
        kp.winner_growth(0.0, 0, 10, 0.1)
    # a positive offset in y·f lowers g and so the growth; a constant offset equals a shifted initial overlap sum
    assert kp.winner_growth(0.0, 2, 100, 0.1, offset=0.5)[-1] < kp.winner_growth(0.0, 2, 100, 0.1)[-1]
    np.testing.assert_allclose(kp.winner_growth(0.0, 2, 100, 0.1, k=9, offset=0.5), kp.winner_growth(4.5, 2, 100, 0.1, k=9),
                               rtol=1e-12)


def _numpy_reference(patterns, filters, seeds, steps, lr=0.1, init_scale=0.01, k=9, noise=0.05):
    """The trainer as it was written in numpy before it was batched in torch (one point per call)."""
    d = patterns.shape[1]
    W = np.stack([init_scale * np.random.default_rng(s).standard_normal((filters, d)) for s in seeds])
    a = np.concatenate([np.ones(filters // 2), -np.ones(filters // 2)])
    keys = np.where(a[:, None] > 0, patterns[1], patterns[0])
    rng = np.random.default_rng([10_007, *seeds[:4], len(seeds)])
    overlaps = [np.einsum("srd,rd->sr", W, keys)]
    for _ in range(steps):
        x, y = kp.sample_key_patterns(patterns, rng, len(seeds), k, noise)
        pre = np.einsum("srd,skd->srk", W, x)
        f = (a * np.maximum(pre, 0.0).mean(-1)).sum(-1)
        g = 1.0 / (1.0 + np.exp(np.clip(y * f, -50, 50)))
        W = W + (lr / k) * (g * y)[:, None, None] * a[None, :, None] * np.einsum("srk,skd->srd", (pre > 0).astype(float), x)
        overlaps.append(np.einsum("srd,rd->sr", W, keys))
    return W, np.stack(overlaps)


def test_batched_sweep_equals_one_point_runs_and_the_numpy_reference():
    """All sweep points in one batched loop = one call per point = the numpy loop, to float64 rounding."""
    P = kp.random_dictionary(d=20, m=10, seed=0)
    seeds, points = [3, 4, 5], [(2, 0.0), (2, 0.05), (6, 0.05)]
    runs = kp.train_key_pattern_sweep(P, points=points, seeds=seeds, steps=150)
    for (filters, noise), run in zip(points, runs):
        single = kp.train_key_pattern_cnn(P, filters=filters, seeds=seeds, steps=150, noise=noise)
        np.testing.assert_allclose(run.W, single.W, rtol=0, atol=1e-14)
        W_ref, overlaps_ref = _numpy_reference(P, filters, seeds, 150, noise=noise)
        np.testing.assert_allclose(run.W, W_ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(run.key_overlap, overlaps_ref, rtol=0, atol=1e-12)


def test_initial_filters_depend_only_on_their_own_seed():
    P = kp.random_dictionary()
    alone = kp.train_key_pattern_cnn(P, filters=4, seeds=[7], steps=0)
    shared = kp.train_key_pattern_cnn(P, filters=4, seeds=[2, 7, 9], steps=0)
    np.testing.assert_array_equal(alone.W0[0], shared.W0[1])


def test_device_is_validated_and_recorded():
    from how_cnns_learn import repro

    repro.reset_devices_used()
    kp.train_key_pattern_cnn(kp.random_dictionary(), filters=2, seeds=[0], steps=1, device="cpu")
    assert "train_key_pattern_cnn" in repro.devices_used()["cpu"]
    with pytest.raises(ValueError, match="device"):
        kp.train_key_pattern_cnn(kp.random_dictionary(), filters=2, seeds=[0], steps=1, device="tpu9")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the CUDA path is checked against the CPU run")
def test_cuda_run_equals_cpu_run():
    P = kp.random_dictionary()
    cpu = kp.train_key_pattern_cnn(P, filters=4, seeds=[0, 1], steps=200)
    gpu = kp.train_key_pattern_cnn(P, filters=4, seeds=[0, 1], steps=200, device="cuda")
    np.testing.assert_allclose(gpu.W, cpu.W, rtol=0, atol=1e-12)
