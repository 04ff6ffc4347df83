"""Key-pattern data and the two-layer ReLU CNN of Yu, Zhang & Zhu (2019), trained by SGD for many seeds at once.

The central object is a **pattern dictionary** ``P`` ``(m, d)`` with orthonormal rows: pattern 0 is the key of
class ``y = −1``, pattern 1 the key of ``y = +1``, patterns ``2 … m−1`` are *common* (class-independent). An
input is ``k`` non-overlapping patches ``(k, d)``: the class key at one random patch, a random common pattern at
every other, plus ``N(0, noise²)`` per entry. The network (setup reconstructed from the abstract, research notes
§2.1) is

    f(x) = Σ_j a_j · (1/k) Σ_i ReLU(w_jᵀ x_i),   a = (+1, …, +1, −1, …, −1) fixed,

trained on the logistic loss ``log(1 + e^{−y f})`` by SGD with one sample per step. The trainer is batched: all
seeds, and every (filters, noise) point of a sweep (:func:`train_key_pattern_sweep`), are updated together as torch
tensors on the requested ``device``; they share one stream of samples (drawn by numpy on the CPU, so the numbers do
not depend on the device).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from .repro import check_device, record_device

__all__ = ["KeyPatternRun", "cosine_dictionary", "key_pattern_accuracy", "key_pattern_agop", "random_dictionary",
           "sample_key_patterns", "train_key_pattern_cnn", "train_key_pattern_sweep", "winner_growth"]


def random_dictionary(d: int = 20, m: int = 10, seed: int = 0) -> NDArray[np.floating]:
    """``m`` orthonormal patterns in ``ℝ^d`` (rows), from the QR factor of a Gaussian matrix."""
    if not 3 <= m <= d:
        raise ValueError(f"need 3 <= m <= d (two keys and at least one common pattern), got m={m}, d={d}")
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, m)))
    return Q.T.copy()


def cosine_dictionary(d: int, key_frequencies: tuple[int, int], common_frequencies: Sequence[int]) -> NDArray[np.floating]:
    """Patterns that are unit-norm 1-D cosines ``cos(2π f t/d)``: keys at ``key_frequencies`` (class −1, +1), then the commons.

    Distinct frequencies in ``[1, d/2)`` are orthogonal, so the dictionary is orthonormal.
    """
    freqs = list(key_frequencies) + list(common_frequencies)
    if len(set(freqs)) != len(freqs) or any(not 1 <= f < d / 2 for f in freqs):
        raise ValueError(f"frequencies must be distinct and in [1, d/2) = [1, {d / 2}), got {freqs}")
    t = np.arange(d)
    rows = np.stack([np.cos(2 * np.pi * f * t / d) for f in freqs])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _draw_key_patterns(
    patterns: NDArray[np.floating], rng: np.random.Generator, count: int, k: int
) -> tuple[NDArray[np.intp], NDArray[np.floating], NDArray[np.floating]]:
    """The random part of :func:`sample_key_patterns`: pattern indices ``(count, k)``, labels ``(count,)`` and the
    unit-variance noise ``(count, k, d)``, drawn in this order (so every noise level sees the same draws)."""
    m, d = patterns.shape
    y = rng.choice([-1.0, 1.0], size=count)
    index = 2 + rng.integers(0, m - 2, size=(count, k))
    index[np.arange(count), rng.integers(0, k, size=count)] = np.where(y > 0, 1, 0)
    return index, y, rng.standard_normal((count, k, d))


def sample_key_patterns(
    patterns: NDArray[np.floating], rng: np.random.Generator, count: int, k: int = 9, noise: float = 0.05
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """``count`` samples: patches ``(count, k, d)`` and labels ``(count,)`` in ``{−1, +1}``."""
    if k < 1 or noise < 0 or count < 1:
        raise ValueError(f"need k >= 1, noise >= 0 and count >= 1, got k={k}, noise={noise}, count={count}")
    index, y, z = _draw_key_patterns(patterns, rng, count, k)
    return patterns[index] + noise * z, y


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """On the CPU, run torch single-threaded inside the block (then restore the thread count): the batched key-pattern
    step works on tensors of ~10⁵ entries, where intra-op threads cost more in synchronisation than they save (on a
    shared 2-core machine a 2-thread loop was measured 10-30× slower). Other devices: no change."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class KeyPatternRun:
    """``S`` networks trained together: initial and final filters ``(S, r, d)``, second layer ``a`` ``(r,)``, and
    the overlap of every filter with its own class's key at every step ``(T + 1, S, r)`` (key ``p₊`` for
    ``a_j = +1``, ``p₋`` for ``a_j = −1``)."""

    W0: NDArray[np.floating]
    W: NDArray[np.floating]
    a: NDArray[np.floating]
    key_overlap: NDArray[np.floating]

    @property
    def winners(self) -> NDArray[np.bool_]:
        """``(S, r)``: filters whose initial overlap with their own key is positive (their ReLU sees the key)."""
        return self.key_overlap[0] > 0

    def key_energy_fraction(self, patterns: NDArray[np.floating]) -> NDArray[np.floating]:
        """``(S,)``: fraction of ``‖W‖²_F`` along each filter's own key."""
        return (self.key_overlap[-1] ** 2).sum(-1) / (self.W**2).sum((1, 2))


def train_key_pattern_cnn(
    patterns: NDArray[np.floating],
    *,
    filters: int,
    seeds: Sequence[int],
    steps: int = 3000,
    lr: float = 0.1,
    init_scale: float = 0.01,
    k: int = 9,
    noise: float = 0.05,
    device: str | torch.device = "cpu",
) -> KeyPatternRun:
    """SGD (one fresh sample per step and seed) on the logistic loss; returns the run of all ``seeds`` (trained
    together, :func:`train_key_pattern_sweep` with one point).

    Gradient: ``∂(−log σ(y f))/∂w_j = −g y a_j (1/k) Σ_i 1[w_jᵀx_i > 0] x_i`` with ``g = 1/(1 + e^{y f})``.
    """
    return train_key_pattern_sweep(patterns, points=[(filters, noise)], seeds=seeds, steps=steps, lr=lr,
                                   init_scale=init_scale, k=k, device=device)[0]


def train_key_pattern_sweep(
    patterns: NDArray[np.floating],
    *,
    points: Sequence[tuple[int, float]],
    seeds: Sequence[int],
    steps: int = 3000,
    lr: float = 0.1,
    init_scale: float = 0.01,
    k: int = 9,
    device: str | torch.device = "cpu",
) -> list[KeyPatternRun]:
    """Train ``len(seeds)`` networks at every sweep point ``(filters, noise)`` of ``points``, all in one batched loop;
    returns one :class:`KeyPatternRun` per point, equal (to float rounding) to :func:`train_key_pattern_cnn` at that
    point with the same seeds.

    Seed ``s``'s initial filters are ``init_scale · N(0, 1)`` drawn from ``numpy.random.default_rng(s)`` (its own
    seed only). The samples are drawn once per step for all points and seeds from the generator
    ``default_rng([10_007, *seeds[:4], len(seeds)])`` (pattern indices, labels and unit noise; a point adds its
    ``noise`` times the unit noise), so every point sees the same samples, as separate calls would.
    Cost per step: ``O(S·k·d·Σ filters)`` on ``device`` plus the draw of ``S·k·d`` normals on the CPU.
    """
    dev = check_device(device)
    points = [(int(r), float(noise)) for r, noise in points]
    if not points:
        raise ValueError("points must hold at least one (filters, noise) pair")
    for filters, noise in points:
        if filters < 2 or filters % 2:
            raise ValueError(f"filters must be a positive even number (half with a = +1, half with a = −1), got {filters}")
        if noise < 0:
            raise ValueError(f"need noise >= 0, got {noise}")
    if steps < 0 or not lr > 0 or not init_scale > 0 or k < 1:
        raise ValueError(f"need steps >= 0, lr > 0, init_scale > 0 and k >= 1, got {steps}, {lr}, {init_scale}, {k}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    P = np.asarray(patterns, dtype=float)
    if P.ndim != 2 or P.shape[0] < 3:
        raise ValueError(f"patterns must be an (m >= 3, d) dictionary, got shape {P.shape}")
    d = P.shape[1]
    record_device(dev, by="train_key_pattern_cnn")
    as_t = lambda v: torch.as_tensor(v, dtype=torch.float64, device=dev)  # noqa: E731
    P_t = as_t(P)
    nets = []
    for filters, noise in points:
        W0 = np.stack([init_scale * np.random.default_rng(s).standard_normal((filters, d)) for s in seeds])
        a = np.concatenate([np.ones(filters // 2), -np.ones(filters // 2)])
        keys = as_t(np.where(a[:, None] > 0, P[1], P[0]))  # (r, d)
        W = as_t(W0)
        overlaps = torch.empty((steps + 1, len(seeds), filters), dtype=torch.float64, device=dev)
        overlaps[0] = torch.einsum("srd,rd->sr", W, keys)
        nets.append({"W0": W0, "a": a, "a_t": as_t(a), "keys": keys, "W": W, "overlaps": overlaps, "noise": noise})
    rng = np.random.default_rng([10_007, *seeds[:4], len(seeds)])
    noises = sorted({net["noise"] for net in nets})
    with _one_cpu_thread(dev):
        for t in range(steps):
            index, y_np, z_np = _draw_key_patterns(P, rng, len(seeds), k)
            base, y, z = P_t[torch.as_tensor(index, device=dev)], as_t(y_np), as_t(z_np)
            inputs = {noise: base + noise * z if noise else base for noise in noises}  # (S, k, d), one per noise level
            for net in nets:
                x = inputs[net["noise"]]
                W, a = net["W"], net["a_t"]
                pre = torch.bmm(W, x.transpose(1, 2))  # (S, r, k): w_jᵀ x_i
                f = (a * pre.clamp_min(0.0).mean(-1)).sum(-1)
                g = 1.0 / (1.0 + torch.exp(torch.clamp(y * f, -50, 50)))
                step = torch.bmm((pre > 0).to(x.dtype), x)  # (S, r, d): Σ_i 1[w_jᵀx_i > 0] x_i
                net["W"] = W + (lr / k) * (g * y)[:, None, None] * a[None, :, None] * step
                torch.sum(net["W"] * net["keys"], -1, out=net["overlaps"][t + 1])
    return [KeyPatternRun(W0=net["W0"], W=net["W"].cpu().numpy(), a=net["a"], key_overlap=net["overlaps"].cpu().numpy())
            for net in nets]


def key_pattern_accuracy(
    run: KeyPatternRun, patterns: NDArray[np.floating], rng: np.random.Generator, count: int = 5000, k: int = 9,
    noise: float = 0.05,
) -> NDArray[np.floating]:
    """Test accuracy ``(S,)`` of every network on ``count`` fresh samples (``f = 0`` counts as wrong)."""
    x, y = sample_key_patterns(patterns, rng, count, k, noise)
    pre = np.einsum("srd,nkd->snrk", run.W, x)
    f = (run.a * np.maximum(pre, 0.0).mean(-1)).sum(-1)
    return (np.sign(f) == y[None]).mean(-1)


def key_pattern_agop(run: KeyPatternRun, patches: NDArray[np.floating]) -> NDArray[np.floating]:
    """Patch-AGOP of every trained key-pattern CNN ``(S, d, d)``, in closed form, on inputs ``patches`` ``(N, k, d)``.

    (The patch-AGOP of a torch ``Conv2d`` layer by autograd is :func:`how_cnns_learn.agop.patch_agop`.)
    ``G = (1/N) Σ_n Σ_i ∇_{x_i} f ∇_{x_i} fᵀ`` with ``∇_{x_i} f = (1/k) Σ_j a_j 1[w_jᵀx_i > 0] w_j``: the average
    gradient outer product with respect to the patches (Beaglehole et al. 2023), one output.
    """
    x = np.asarray(patches, dtype=float)
    if x.ndim != 3 or x.shape[-1] != run.W.shape[-1]:
        raise ValueError(f"patches must have shape (N, k, d = {run.W.shape[-1]}), got {x.shape}")
    k = x.shape[1]
    active = np.einsum("srd,nkd->snkr", run.W, x) > 0
    grads = np.einsum("snkr,r,srd->snkd", active.astype(float), run.a, run.W) / k
    return np.einsum("snkd,snke->sde", grads, grads) / x.shape[0]


def winner_growth(
    initial_overlap_sum: float, n_winners: int, steps: int, lr: float, k: int = 9, class_fraction: float = 0.5,
    offset: float | NDArray[np.floating] = 0.0,
) -> NDArray[np.floating]:
    """Predicted common growth ``c(t)`` ``(steps + 1,)`` of the key overlaps of one class's winners, without noise.

    By eq. (eq-key-update) every winner of a class gains the same ``(η/k) g`` on each sample of its class, so
    ``o_j(t) = o_j(0) + c(t)``; with ``f ≈ (Σ_j o_j(0) + n_w c)/k`` on a sample of the class (the ReLUs of the
    common patterns neglected) and ``g = 1/(1 + e^f)``, the expected growth follows the map
    ``c ← c + class_fraction · (η/k) / (1 + e^{(Σ o_j(0) + n_w c)/k + b_t})`` (one step per sample of either class).
    ``offset`` ``b_t`` (a scalar or one value per step) adds what the map neglects to ``y f``: the ReLUs of the
    common patterns and of the other class's filters on this class's key.

    >>> float(winner_growth(0.0, 1, 1, 0.1, k=9)[-1]) == 0.5 * 0.1 / 9 * 0.5
    True
    """
    if n_winners < 1 or steps < 0 or not lr > 0 or k < 1 or not 0 < class_fraction <= 1:
        raise ValueError(f"need n_winners >= 1, steps >= 0, lr > 0, k >= 1, 0 < class_fraction <= 1; got "
                         f"{n_winners}, {steps}, {lr}, {k}, {class_fraction}")
    b = np.broadcast_to(np.asarray(offset, dtype=float), (steps,))
    c = np.zeros(steps + 1)
    for t in range(steps):
        c[t + 1] = c[t] + class_fraction * (lr / k) / (1.0 + np.exp((initial_overlap_sum + n_winners * c[t]) / k + b[t]))
    return c
