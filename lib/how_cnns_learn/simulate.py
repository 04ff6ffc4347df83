"""Full-batch gradient-descent simulators, and the measurements taken on their trajectories.

A **run** trains ``B`` independent networks at once (one per seed; the batch is the leading axis of
every weight tensor) on one :class:`~how_cnns_learn.data.TrainingSet` and records, at every step, the
mode strengths ``a_α(t) = u_αᵀ Σ_ŷx(t) φ_α`` of a :class:`~how_cnns_learn.data.DatasetStructure`
and the loss. Each network's initial weights depend only on its own seed, so a run's result for a
seed does not depend on which other seeds share the batch.

Models (end-to-end map ``ŷ = M x`` on flattened images ``x ∈ ℝ^{n²}``; residual ``R = Σ_yx − MΣ_xx``):

* **linear FCNN** ``M = W₂ W₁`` with ``W₁`` ``(h, n²)`` and ``W₂`` ``(p, h)`` (Saxe et al. 2014):
  ``∂L/∂W₁ = −W₂ᵀR``, ``∂L/∂W₂ = −R W₁ᵀ``; invariant ``W₂ᵀW₂ − W₁W₁ᵀ``.
* **linear CNN** ``M = W C_r``: a single-channel circular convolution with a ``k×k`` kernel (embedded as
  ``r̃``, ``(n, n)``), then a dense layer ``W`` ``(p, n²)``, held as images ``(p, n, n)``. Row ``i`` of ``M``
  is the circular cross-correlation ``W_i ⋆ r̃``; the gradients are ``∂L/∂W_i = −r̃ ⊛ R_i`` and
  ``∂L/∂r̃ = −P Σ_i W_i ⋆ R_i`` (``P`` projects onto the ``k×k`` support), all computed with FFTs;
  invariant (full kernel) ``Σ_i |(QW_i)_j|² − |λ_j|²`` per frequency ``j``, with ``λ = Q r̃``.

Gradients are tested against autograd and finite differences. Computation is in torch (float64 by
default) on the device given; results come back as numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from .data import DatasetStructure, TrainingSet
from .fourier import kernel_support

__all__ = [
    "TrainingRun",
    "aligned_fcnn_init",
    "cnn_end_to_end",
    "cnn_gradients",
    "fit_logistic_rate",
    "fcnn_gradients",
    "mode_strengths",
    "random_cnn_init",
    "train_linear_cnn",
    "measure_transitions",
    "random_fcnn_init",
    "train_linear_fcnn",
]


@dataclass(frozen=True)
class TrainingRun:
    """Trajectory of ``B`` networks trained together by full-batch gradient descent.

    Attributes:
        seeds: ``(B,)`` seed of each network (−1 for a given, non-random init).
        steps: ``(T,)`` recorded step numbers (0 = before the first update).
        mode_strength: ``(T, B, p)`` values of ``a_α``.
        loss: ``(T, B)`` training loss.
        invariant_drift: ``(B,)`` ``max_t ‖I(t) − I(0)‖ / scale(T)`` of the model's conserved quantity ``I``
            (FCNN: ``W₂ᵀW₂ − W₁W₁ᵀ`` relative to ``‖W₁W₁ᵀ‖_F``; CNN: per-frequency ``Σ_i|(QW_i)_j|² − |λ_j|²``
            relative to ``‖|λ|²‖₂``, conserved by the gradient flow for a full-size kernel).
        weights: final weights by name (FCNN: ``W1`` ``(B, h, n²)``, ``W2`` ``(B, p, h)``; CNN: ``W``
            ``(B, p, n, n)``, ``kernel`` ``(B, n, n)`` embedded).
        s: ``(p,)`` singular values of the structure the strengths refer to.
        end_to_end: ``(B, p, n²)`` final end-to-end maps ``M``.
        kernel_power: CNN only, if recorded: ``(T, B, n, n)`` values of ``|λ_j|² = |(Q r̃)_j|²``.
    """

    seeds: NDArray[np.int64]
    steps: NDArray[np.int64]
    mode_strength: NDArray[np.floating]
    loss: NDArray[np.floating]
    invariant_drift: NDArray[np.floating]
    weights: dict[str, NDArray[np.floating]]
    s: NDArray[np.floating]
    end_to_end: NDArray[np.floating]
    kernel_power: NDArray[np.floating] | None = field(default=None)

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


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds or any((not isinstance(x, (int, np.integer))) or x < 0 for x in seeds):
        raise ValueError(f"seeds must be a non-empty list of non-negative ints, got {seeds!r}")
    return [int(x) for x in seeds]


def random_fcnn_init(
    seeds: Sequence[int], hidden: int, n_inputs: int, n_outputs: int, init_scale: float
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


def random_cnn_init(
    seeds: Sequence[int], n: int, kernel_size: int, n_outputs: int, init_scale: float
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """I.i.d. ``N(0, init_scale²)`` dense weights and kernel entries (on the centred ``k×k`` support), one generator per seed.

    The same ``σ`` for both layers gives ``E|λ_j|² = k²σ²`` and ``E Σ_i|(QW_i)_j|² = p n²σ²``.
    Returns ``W`` ``(B, p, n, n)`` and the embedded kernel ``(B, n, n)``.
    """
    if n_outputs < 1 or not init_scale > 0:
        raise ValueError(f"need n_outputs >= 1 and init_scale > 0, got {n_outputs}, {init_scale}")
    support = kernel_support(n, kernel_size)
    W, kernels = [], []
    for seed in _check_seeds(seeds):
        rng = np.random.default_rng(seed)
        W.append(init_scale * rng.standard_normal((n_outputs, n, n)))
        r = np.zeros((n, n))
        r[support] = init_scale * rng.standard_normal(kernel_size**2)
        kernels.append(r)
    return np.stack(W), np.stack(kernels)


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


def fcnn_gradients(W1: torch.Tensor, W2: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂L/∂W₁, ∂L/∂W₂) = (−W₂ᵀR, −R W₁ᵀ)`` given the residual ``R = Σ_yx − MΣ_xx``, batched over leading axes."""
    return -W2.transpose(-1, -2) @ residual, -residual @ W1.transpose(-1, -2)


def cnn_end_to_end(W: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``M = W C_r`` of the linear CNN as ``(..., p, n²)``: row ``i`` is ``W_i ⋆ r̃`` (FFT: ``Ŵ_i · conj(λ)``).

    Args:
        W: ``(..., p, n, n)`` dense weights as images.
        kernel: ``(..., n, n)`` embedded kernel ``r̃``.
    """
    lam = torch.fft.fft2(kernel)
    M = torch.fft.ifft2(torch.fft.fft2(W) * lam.conj().unsqueeze(-3)).real
    return M.flatten(-2)


def cnn_gradients(
    W: torch.Tensor, kernel: torch.Tensor, residual: torch.Tensor, support: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂L/∂W, ∂L/∂r̃)`` of the linear CNN given the residual ``R = Σ_yx − MΣ_xx`` ``(..., p, n²)``.

    ``∂L/∂W_i = −r̃ ⊛ R_i`` and ``∂L/∂r̃ = −P Σ_i W_i ⋆ R_i``, with ``support`` the ``(n, n)`` 0/1 mask of ``P``.
    """
    R_hat = torch.fft.fft2(residual.reshape(W.shape))
    lam = torch.fft.fft2(kernel)
    grad_W = -torch.fft.ifft2(lam.unsqueeze(-3) * R_hat).real
    grad_r = -torch.fft.ifft2((torch.fft.fft2(W) * R_hat.conj()).sum(-3)).real * support
    return grad_W, grad_r


def mode_strengths(
    predictions: NDArray[np.floating], data: TrainingSet, structure: DatasetStructure
) -> NDArray[np.floating]:
    """``a_α = u_αᵀ Σ_ŷx φ_α`` with ``Σ_ŷx = w Σ_μ ŷ^μ x^μᵀ``, for the predictions ``(N, p)`` of *any* model.

    Returns ``(p,)``. For a linear model ``Σ_ŷx = MΣ_xx``; for a nonlinear one this is the definition.
    """
    Y_hat = np.asarray(predictions, dtype=float)
    if Y_hat.shape != data.targets.shape:
        raise ValueError(f"predictions must have the targets' shape {data.targets.shape}, got {Y_hat.shape}")
    sigma_hat = data.item_weight * Y_hat.T @ data.flat_inputs
    return np.einsum("ia,ij,aj->a", structure.U, sigma_hat, structure.phi.reshape(structure.p, -1))


Gradients = Callable[[list[torch.Tensor], torch.Tensor], list[torch.Tensor]]


def _gradient_descent(
    data: TrainingSet,
    structure: DatasetStructure,
    params: list[torch.Tensor],
    *,
    end_to_end: Callable[[list[torch.Tensor]], torch.Tensor],
    gradients: Gradients,
    invariant: Callable[[list[torch.Tensor]], torch.Tensor],
    invariant_scale: Callable[[list[torch.Tensor]], torch.Tensor],
    lr: float,
    steps: int,
    observe: Callable[[int, list[torch.Tensor]], None] | None = None,
) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], NDArray[np.floating], list[torch.Tensor]]:
    """The shared GD loop: record ``a_α`` and the loss before every update; returns (a, loss, drift, M, params)."""
    dtype, dev = params[0].dtype, params[0].device
    d, p = data.flat_inputs.shape[1], data.targets.shape[1]
    if structure.p != p or structure.n**2 != d:
        raise ValueError(f"structure (p={structure.p}, n²={structure.n**2}) does not match data (p={p}, n²={d})")
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")

    def to_torch(a: NDArray[np.floating]) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dtype, device=dev)

    sigma_yx, sigma_xx = to_torch(data.sigma_yx), to_torch(data.sigma_xx)
    U = to_torch(structure.U)
    probe = sigma_xx @ to_torch(structure.phi.reshape(p, d)).T  # (d, p): Σ_xx φ_α
    y_energy = 0.5 * data.item_weight * float((data.targets**2).sum())
    B = params[0].shape[0]
    strengths = torch.empty((steps + 1, B, p), dtype=dtype, device=dev)
    losses = torch.empty((steps + 1, B), dtype=dtype, device=dev)
    invariant0 = invariant(params).flatten(1)
    drift = torch.zeros(B, dtype=dtype, device=dev)
    for k in range(steps + 1):
        M = end_to_end(params)
        M_sxx = M @ sigma_xx
        strengths[k] = torch.einsum("ia,bia->ba", U, M @ probe)
        losses[k] = y_energy - (M * sigma_yx).sum((-1, -2)) + 0.5 * (M_sxx * M).sum((-1, -2))
        drift = torch.maximum(drift, torch.linalg.vector_norm(invariant(params).flatten(1) - invariant0, dim=1))
        if observe is not None:
            observe(k, params)
        if k == steps:
            break
        grads = gradients(params, sigma_yx - M_sxx)
        params = [w - lr * g for w, g in zip(params, grads)]
    drift = drift / invariant_scale(params)
    return strengths.cpu().numpy(), losses.cpu().numpy(), drift.cpu().numpy(), M.cpu().numpy(), params


def train_linear_fcnn(
    data: TrainingSet,
    structure: DatasetStructure,
    *,
    lr: float,
    steps: int,
    hidden: int = 64,
    init_scale: float = 1e-4,
    seeds: Sequence[int] = (0,),
    init: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> TrainingRun:
    """Train ``B`` two-layer linear FCNNs by full-batch gradient descent, recording every step.

    Args:
        data: training set; its ``reduction`` sets the loss normalisation.
        structure: the modes in which to measure ``a_α`` (usually ``data.structure()``).
        lr: learning rate η (theory time ``t/τ = η·step``).
        steps: number of GD updates; ``steps + 1`` states are recorded.
        hidden, init_scale, seeds: random init (see :func:`random_fcnn_init`), unless ``init`` is given.
        init: explicit ``(W1, W2)`` of shapes ``(B, h, n²)``, ``(B, p, h)``.
    """
    d, p = data.flat_inputs.shape[1], data.targets.shape[1]
    if init is None:
        seed_list = _check_seeds(seeds)
        W1_0, W2_0 = random_fcnn_init(seed_list, hidden, d, p, init_scale)
    else:
        W1_0, W2_0 = init
        if W1_0.ndim != 3 or W2_0.ndim != 3 or W1_0.shape[2] != d or W2_0.shape[1] != p or W1_0.shape[1] != W2_0.shape[2]:
            raise ValueError(f"init shapes {W1_0.shape}, {W2_0.shape} do not fit (B, h, {d}), (B, {p}, h)")
        seed_list = [-1] * W1_0.shape[0]
    params = [torch.as_tensor(w, dtype=dtype, device=torch.device(device)) for w in (W1_0, W2_0)]

    def balance(ps: list[torch.Tensor]) -> torch.Tensor:
        W1, W2 = ps
        return W2.transpose(-1, -2) @ W2 - W1 @ W1.transpose(-1, -2)

    a, loss, drift, M, (W1, W2) = _gradient_descent(
        data,
        structure,
        params,
        end_to_end=lambda ps: ps[1] @ ps[0],
        gradients=lambda ps, R: list(fcnn_gradients(ps[0], ps[1], R)),
        invariant=balance,
        invariant_scale=lambda ps: torch.linalg.matrix_norm(ps[0] @ ps[0].transpose(-1, -2)),
        lr=lr,
        steps=steps,
    )
    return TrainingRun(
        seeds=np.asarray(seed_list, dtype=np.int64),
        steps=np.arange(steps + 1),
        mode_strength=a,
        loss=loss,
        invariant_drift=drift,
        weights={"W1": W1.cpu().numpy(), "W2": W2.cpu().numpy()},
        s=np.asarray(structure.s, dtype=float),
        end_to_end=M,
    )


def train_linear_cnn(
    data: TrainingSet,
    structure: DatasetStructure,
    *,
    lr: float,
    steps: int,
    kernel_size: int | None = None,
    init_scale: float = 1e-4,
    seeds: Sequence[int] = (0,),
    init: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None,
    record_kernel_power: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> TrainingRun:
    """Train ``B`` two-layer linear CNNs (circular ``k×k`` conv, one channel, then dense) by full-batch GD.

    Args:
        data, structure, lr, steps, seeds, init_scale: as in :func:`train_linear_fcnn`.
        kernel_size: ``k ≤ n`` (default ``n``: full-size kernel); the kernel stays on its ``k×k`` support.
        init: explicit ``(W, kernel)`` of shapes ``(B, p, n, n)`` and ``(B, n, n)`` (embedded).
        record_kernel_power: also record ``|λ_j|²`` at every step (``(T, B, n, n)``).
    """
    n, p = data.inputs.shape[-1], data.targets.shape[1]
    k = n if kernel_size is None else kernel_size
    if not 1 <= k <= n:
        raise ValueError(f"kernel_size must lie in [1, n = {n}], got {kernel_size}")
    if init is None:
        seed_list = _check_seeds(seeds)
        W0, r0 = random_cnn_init(seed_list, n, k, p, init_scale)
    else:
        W0, r0 = init
        if W0.ndim != 4 or W0.shape[1:] != (p, n, n) or r0.shape != (W0.shape[0], n, n):
            raise ValueError(f"init shapes {W0.shape}, {r0.shape} do not fit (B, {p}, {n}, {n}), (B, {n}, {n})")
        if np.any(r0[:, ~kernel_support(n, k)]):
            raise ValueError(f"the initial kernel has entries outside its {k}x{k} support (see fourier.kernel_support)")
        seed_list = [-1] * W0.shape[0]
    dev = torch.device(device)
    params = [torch.as_tensor(w, dtype=dtype, device=dev) for w in (W0, r0)]
    support = torch.as_tensor(kernel_support(n, k), dtype=dtype, device=dev)
    powers: list[torch.Tensor] = []

    def observe(step: int, ps: list[torch.Tensor]) -> None:
        if record_kernel_power:
            powers.append(torch.fft.fft2(ps[1]).abs() ** 2)

    def conserved(ps: list[torch.Tensor]) -> torch.Tensor:
        W, r = ps
        return (torch.fft.fft2(W).abs() ** 2).sum(-3) - torch.fft.fft2(r).abs() ** 2

    a, loss, drift, M, (W, r) = _gradient_descent(
        data,
        structure,
        params,
        end_to_end=lambda ps: cnn_end_to_end(ps[0], ps[1]),
        gradients=lambda ps, R: list(cnn_gradients(ps[0], ps[1], R, support)),
        invariant=conserved,
        invariant_scale=lambda ps: torch.linalg.vector_norm((torch.fft.fft2(ps[1]).abs() ** 2).flatten(1), dim=1),
        lr=lr,
        steps=steps,
        observe=observe,
    )
    return TrainingRun(
        seeds=np.asarray(seed_list, dtype=np.int64),
        steps=np.arange(steps + 1),
        mode_strength=a,
        loss=loss,
        invariant_drift=drift,
        weights={"W": W.cpu().numpy(), "kernel": r.cpu().numpy()},
        s=np.asarray(structure.s, dtype=float),
        end_to_end=M,
        kernel_power=torch.stack(powers).cpu().numpy() if record_kernel_power else None,
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


def fit_logistic_rate(
    steps: NDArray[np.integer], strength: NDArray[np.floating], s: NDArray[np.floating], lo: float = 0.1, hi: float = 0.9
) -> NDArray[np.floating]:
    """Least-squares rate ``κ`` (per step) of ``logit(a/s) = κ (t − t50)`` over the part of each curve in ``(lo, hi)``.

    For the logistic ``a = s / (1 + e^{−κ(t − t50)})`` this recovers ``κ`` exactly (``κ = 2ηgs``); it uses every
    recorded point of the rise, so it is far less sensitive to step quantisation than the 10→90 % width.
    Returns ``(B, p)``.
    """
    if strength.ndim != 3 or strength.shape[0] != steps.shape[0] or strength.shape[2] != s.shape[0]:
        raise ValueError(f"strength must be (T, B, p) matching steps {steps.shape} and s {s.shape}, got {strength.shape}")
    if not 0 < lo < hi < 1:
        raise ValueError(f"need 0 < lo < hi < 1, got lo={lo}, hi={hi}")
    out = np.empty(strength.shape[1:])
    for b in range(strength.shape[1]):
        for alpha in range(strength.shape[2]):
            frac = strength[:, b, alpha] / s[alpha]
            inside = (frac > lo) & (frac < hi)
            if inside.sum() < 3:
                raise ValueError(f"mode {alpha + 1} of network {b} has fewer than 3 points in ({lo}, {hi}); run longer")
            out[b, alpha] = np.polyfit(steps[inside], np.log(frac[inside] / (1 - frac[inside])), 1)[0]
    return out
