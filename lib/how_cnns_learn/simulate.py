"""Full-batch gradient-descent simulators, and the measurements taken on their trajectories.

A **run** trains ``B`` independent networks at once (one per seed; the batch is the leading axis of
every weight tensor) on one :class:`~how_cnns_learn.data.TrainingSet` and records, at every step, the
mode strengths ``a_α(t) = u_αᵀ Σ_ŷx(t) φ_α`` of a :class:`~how_cnns_learn.data.DatasetStructure`
and the loss. Each network's initial weights depend only on its own seed, so a run's result for a
seed does not depend on which other seeds share the batch.

Models (end-to-end map ``ŷ = M x`` on flattened images ``x ∈ ℝ^{n²}``):

* **linear FCNN** ``M = W₂ W₁`` with ``W₁`` ``(h, n²)`` and ``W₂`` ``(p, h)`` (Saxe et al. 2014).

Gradients are written out (``∂L/∂W₂ = −(Σ_yx − MΣ_xx) W₁ᵀ``, ``∂L/∂W₁ = −W₂ᵀ(Σ_yx − MΣ_xx)``) and
tested against autograd and finite differences. Computation is in torch (float64 by default) on
the device given; results come back as numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from .data import DatasetStructure, TrainingSet

__all__ = [
    "FCNNRun",
    "aligned_fcnn_init",
    "fcnn_gradients",
    "measure_transitions",
    "random_fcnn_init",
    "train_linear_fcnn",
]


@dataclass(frozen=True)
class FCNNRun:
    """Trajectory of ``B`` linear FCNNs trained together.

    Attributes:
        seeds: ``(B,)`` seed of each network (−1 for a given, non-random init).
        steps: ``(T,)`` recorded step numbers (0 = before the first update).
        mode_strength: ``(T, B, p)`` values of ``a_α``.
        loss: ``(T, B)`` training loss.
        balancedness_drift: ``(B,)`` ``max_t ‖B(t) − B(0)‖_F / ‖W₁W₁ᵀ‖_F(T)`` with ``B = W₂ᵀW₂ − W₁W₁ᵀ``.
        W1, W2: final weights, ``(B, h, n²)`` and ``(B, p, h)``.
        s: ``(p,)`` singular values of the structure the strengths refer to.
    """

    seeds: NDArray[np.int64]
    steps: NDArray[np.int64]
    mode_strength: NDArray[np.floating]
    loss: NDArray[np.floating]
    balancedness_drift: NDArray[np.floating]
    W1: NDArray[np.floating]
    W2: NDArray[np.floating]
    s: NDArray[np.floating]

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: one row per (step, seed, mode) with ``a`` and ``a / s``."""
        T, B, p = self.mode_strength.shape
        frame = pd.DataFrame(
            {
                "step": np.repeat(self.steps, B * p),
                "seed": np.tile(np.repeat(self.seeds, p), T),
                "mode": np.tile(np.arange(1, p + 1), T * B),
                "a": self.mode_strength.reshape(-1),
            }
        )
        frame["a / s"] = frame["a"] / np.tile(self.s, T * B)
        return frame


def _check_seeds(seeds: list[int] | tuple[int, ...]) -> list[int]:
    seeds = list(seeds)
    if not seeds or any((not isinstance(x, (int, np.integer))) or x < 0 for x in seeds):
        raise ValueError(f"seeds must be a non-empty list of non-negative ints, got {seeds!r}")
    return [int(x) for x in seeds]


def random_fcnn_init(
    seeds: list[int] | tuple[int, ...], hidden: int, n_inputs: int, n_outputs: int, init_scale: float
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """I.i.d. ``N(0, init_scale²)`` entries for both layers, one generator per seed.

    Returns ``W1`` ``(B, hidden, n_inputs)`` and ``W2`` ``(B, n_outputs, hidden)``.
    """
    if hidden < 1 or n_inputs < 1 or n_outputs < 1:
        raise ValueError(f"sizes must be >= 1, got hidden={hidden}, n_inputs={n_inputs}, n_outputs={n_outputs}")
    if not init_scale > 0:
        raise ValueError(f"init_scale must be > 0, got {init_scale}")
    W1, W2 = [], []
    for seed in _check_seeds(seeds):
        rng = np.random.default_rng(seed)
        W1.append(init_scale * rng.standard_normal((hidden, n_inputs)))
        W2.append(init_scale * rng.standard_normal((n_outputs, hidden)))
    return np.stack(W1), np.stack(W2)


def aligned_fcnn_init(
    structure: DatasetStructure, hidden: int, a0: float
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Aligned, balanced init with every mode strength equal to ``a0`` (one network, ``B = 1``).

    ``W₁ = √a₀ Σ_α e_α φ_αᵀ`` and ``W₂ = √a₀ Σ_α u_α e_αᵀ`` with ``e_α`` the first ``p`` hidden units:
    the exact setting in which the mode ODE decouples (Saxe et al. 2014).
    """
    p, d = structure.p, structure.n**2
    if hidden < p:
        raise ValueError(f"aligned init needs hidden >= p = {p}, got hidden = {hidden}")
    if not a0 > 0:
        raise ValueError(f"a0 must be > 0, got {a0}")
    R = np.zeros((hidden, p))
    R[:p, :p] = np.eye(p)
    W1 = np.sqrt(a0) * R @ structure.phi.reshape(p, d)
    W2 = np.sqrt(a0) * structure.U @ R.T
    return W1[None], W2[None]


def fcnn_gradients(
    W1: torch.Tensor, W2: torch.Tensor, sigma_yx: torch.Tensor, sigma_xx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂L/∂W₁, ∂L/∂W₂)`` of ``L = const − tr(MΣ_yxᵀ) + ½ tr(MΣ_xxMᵀ)``, batched over the leading axis."""
    residual = sigma_yx - (W2 @ W1) @ sigma_xx
    return -W2.transpose(-1, -2) @ residual, -residual @ W1.transpose(-1, -2)


def train_linear_fcnn(
    data: TrainingSet,
    structure: DatasetStructure,
    *,
    lr: float,
    steps: int,
    hidden: int = 64,
    init_scale: float = 1e-4,
    seeds: list[int] | tuple[int, ...] = (0,),
    init: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> FCNNRun:
    """Train ``B`` two-layer linear FCNNs by full-batch gradient descent, recording every step.

    Args:
        data: training set; its ``reduction`` sets the loss normalisation.
        structure: the modes in which to measure ``a_α`` (usually ``data.structure()``).
        lr: learning rate η (theory time ``t/τ = η·step``).
        steps: number of GD updates; ``steps + 1`` states are recorded.
        hidden, init_scale, seeds: random init (see :func:`random_fcnn_init`), unless ``init`` is given.
        init: explicit ``(W1, W2)`` of shapes ``(B, h, n²)``, ``(B, p, h)``.
    """
    d = data.flat_inputs.shape[1]
    p = data.targets.shape[1]
    if structure.p != p or structure.n**2 != d:
        raise ValueError(f"structure (p={structure.p}, n²={structure.n**2}) does not match data (p={p}, n²={d})")
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    if init is None:
        seed_list = _check_seeds(seeds)
        W1_0, W2_0 = random_fcnn_init(seed_list, hidden, d, p, init_scale)
    else:
        W1_0, W2_0 = init
        if W1_0.ndim != 3 or W2_0.ndim != 3 or W1_0.shape[2] != d or W2_0.shape[1] != p or W1_0.shape[1] != W2_0.shape[2]:
            raise ValueError(f"init shapes {W1_0.shape}, {W2_0.shape} do not fit (B, h, {d}), (B, {p}, h)")
        seed_list = [-1] * W1_0.shape[0]
    dev = torch.device(device)

    def to_torch(a: NDArray[np.floating]) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dtype, device=dev)

    W1, W2 = to_torch(W1_0), to_torch(W2_0)
    sigma_yx, sigma_xx = to_torch(data.sigma_yx), to_torch(data.sigma_xx)
    U = to_torch(structure.U)
    probe = sigma_xx @ to_torch(structure.phi.reshape(p, d)).T  # (d, p): Σ_xx φ_α
    y_energy = 0.5 * data.item_weight * float((data.targets**2).sum())
    balance0 = W2.transpose(-1, -2) @ W2 - W1 @ W1.transpose(-1, -2)

    strengths = torch.empty((steps + 1, W1.shape[0], p), dtype=dtype, device=dev)
    losses = torch.empty((steps + 1, W1.shape[0]), dtype=dtype, device=dev)
    drift = torch.zeros(W1.shape[0], dtype=dtype, device=dev)
    for k in range(steps + 1):
        M = W2 @ W1
        strengths[k] = torch.einsum("ia,bia->ba", U, M @ probe)
        losses[k] = y_energy - (M * sigma_yx).sum((-1, -2)) + 0.5 * ((M @ sigma_xx) * M).sum((-1, -2))
        balance = W2.transpose(-1, -2) @ W2 - W1 @ W1.transpose(-1, -2)
        drift = torch.maximum(drift, torch.linalg.matrix_norm(balance - balance0))
        if k == steps:
            break
        g1, g2 = fcnn_gradients(W1, W2, sigma_yx, sigma_xx)
        W1, W2 = W1 - lr * g1, W2 - lr * g2
    scale = torch.linalg.matrix_norm(W1 @ W1.transpose(-1, -2))
    return FCNNRun(
        seeds=np.asarray(seed_list, dtype=np.int64),
        steps=np.arange(steps + 1),
        mode_strength=strengths.cpu().numpy(),
        loss=losses.cpu().numpy(),
        balancedness_drift=(drift / scale).cpu().numpy(),
        W1=W1.cpu().numpy(),
        W2=W2.cpu().numpy(),
        s=np.asarray(structure.s, dtype=float),
    )


def measure_transitions(
    steps: NDArray[np.integer], strength: NDArray[np.floating], s: NDArray[np.floating]
) -> pd.DataFrame:
    """Stage timing of each trajectory: first steps above 10 %, 50 %, 90 % of ``s_α``, and the width.

    Args:
        steps: ``(T,)`` recorded steps (record every step when measuring widths).
        strength: ``(T, B, p)`` mode strengths.
        s: ``(p,)`` asymptotes.

    Returns a table with one row per (seed index, mode): ``t10, t50, t90, width = t90 − t10``.
    Raises ``ValueError`` if a trajectory never reaches 90 % (the run was too short).
    """
    if strength.ndim != 3 or strength.shape[0] != steps.shape[0] or strength.shape[2] != s.shape[0]:
        raise ValueError(f"strength must be (T, B, p) matching steps {steps.shape} and s {s.shape}, got {strength.shape}")
    rows = []
    for b in range(strength.shape[1]):
        for alpha in range(strength.shape[2]):
            frac = strength[:, b, alpha] / s[alpha]
            times = {}
            for level in (0.1, 0.5, 0.9):
                above = np.flatnonzero(frac > level)
                if above.size == 0:
                    raise ValueError(
                        f"mode {alpha + 1} of network {b} never exceeds {level:.0%} of s within {steps[-1]} steps; "
                        "run longer"
                    )
                times[f"t{int(level * 100)}"] = int(steps[above[0]])
            rows.append({"network": b, "mode": alpha + 1, **times, "width": times["t90"] - times["t10"]})
    return pd.DataFrame(rows)
