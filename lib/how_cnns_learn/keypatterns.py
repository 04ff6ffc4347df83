"""Key-pattern data and the two-layer ReLU CNN of Yu, Zhang & Zhu (2019), trained by SGD for many seeds at once.

The central object is a **pattern dictionary** ``P`` ``(m, d)`` with orthonormal rows: pattern 0 is the key of
class ``y = −1``, pattern 1 the key of ``y = +1``, patterns ``2 … m−1`` are *common* (class-independent). An
input is ``k`` non-overlapping patches ``(k, d)``: the class key at one random patch, a random common pattern at
every other, plus ``N(0, noise²)`` per entry. The network (setup reconstructed from the abstract, research notes
§2.1) is

    f(x) = Σ_j a_j · (1/k) Σ_i ReLU(w_jᵀ x_i),   a = (+1, …, +1, −1, …, −1) fixed,

trained on the logistic loss ``log(1 + e^{−y f})`` by SGD with one sample per step (numpy, batched over seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["KeyPatternRun", "cosine_dictionary", "key_pattern_accuracy", "random_dictionary", "sample_key_patterns",
           "train_key_pattern_cnn", "winner_growth"]


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


def sample_key_patterns(
    patterns: NDArray[np.floating], rng: np.random.Generator, count: int, k: int = 9, noise: float = 0.05
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """``count`` samples: patches ``(count, k, d)`` and labels ``(count,)`` in ``{−1, +1}``."""
    if k < 1 or noise < 0 or count < 1:
        raise ValueError(f"need k >= 1, noise >= 0 and count >= 1, got k={k}, noise={noise}, count={count}")
    m, d = patterns.shape
    y = rng.choice([-1.0, 1.0], size=count)
    index = 2 + rng.integers(0, m - 2, size=(count, k))
    index[np.arange(count), rng.integers(0, k, size=count)] = np.where(y > 0, 1, 0)
    return patterns[index] + noise * rng.standard_normal((count, k, d)), y


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
) -> KeyPatternRun:
    """SGD (one fresh sample per step and seed) on the logistic loss; returns the run.

    Gradient: ``∂(−log σ(y f))/∂w_j = −g y a_j (1/k) Σ_i 1[w_jᵀx_i > 0] x_i`` with ``g = 1/(1 + e^{y f})``.
    """
    if filters < 2 or filters % 2:
        raise ValueError(f"filters must be a positive even number (half with a = +1, half with a = −1), got {filters}")
    if steps < 0 or not lr > 0 or not init_scale > 0:
        raise ValueError(f"need steps >= 0, lr > 0 and init_scale > 0, got {steps}, {lr}, {init_scale}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    d = patterns.shape[1]
    W = np.stack([init_scale * np.random.default_rng(s).standard_normal((filters, d)) for s in seeds])
    W0 = W.copy()
    a = np.concatenate([np.ones(filters // 2), -np.ones(filters // 2)])
    keys = np.where(a[:, None] > 0, patterns[1], patterns[0])  # (r, d)
    rng = np.random.default_rng([10_007, *seeds[:4], len(seeds)])
    overlaps = np.empty((steps + 1, len(seeds), filters))
    overlaps[0] = np.einsum("srd,rd->sr", W, keys)
    for t in range(steps):
        x, y = sample_key_patterns(patterns, rng, len(seeds), k, noise)
        pre = np.einsum("srd,skd->srk", W, x)
        f = (a * np.maximum(pre, 0.0).mean(-1)).sum(-1)
        g = 1.0 / (1.0 + np.exp(np.clip(y * f, -50, 50)))
        W = W + (lr / k) * (g * y)[:, None, None] * a[None, :, None] * np.einsum("srk,skd->srd", (pre > 0).astype(float), x)
        overlaps[t + 1] = np.einsum("srd,rd->sr", W, keys)
    return KeyPatternRun(W0=W0, W=W, a=a, key_overlap=overlaps)


def key_pattern_accuracy(
    run: KeyPatternRun, patterns: NDArray[np.floating], rng: np.random.Generator, count: int = 5000, k: int = 9,
    noise: float = 0.05,
) -> NDArray[np.floating]:
    """Test accuracy ``(S,)`` of every network on ``count`` fresh samples (``f = 0`` counts as wrong)."""
    x, y = sample_key_patterns(patterns, rng, count, k, noise)
    pre = np.einsum("srd,nkd->snrk", run.W, x)
    f = (run.a * np.maximum(pre, 0.0).mean(-1)).sum(-1)
    return (np.sign(f) == y[None]).mean(-1)


def patch_agop(run: KeyPatternRun, patches: NDArray[np.floating]) -> NDArray[np.floating]:
    """Patch-AGOP of every trained network ``(S, d, d)`` on a sample of inputs ``patches`` ``(N, k, d)``.

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
