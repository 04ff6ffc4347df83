"""Full-batch gradient-descent simulators, and the measurements taken on their trajectories.

A **run** trains ``B`` independent networks at once (one per seed; the batch is the leading axis of
every weight tensor) on one :class:`~how_cnns_learn.data.TrainingSet` and records, every
``record_every`` steps, the mode strengths ``a_α(t) = u_αᵀ Σ_ŷx(t) φ_α`` of a
:class:`~how_cnns_learn.data.DatasetStructure` and the loss (and, if asked, the kernel's power
spectrum). Each network's initial weights depend only on its own seed, so a run's result for a seed
does not depend on which other seeds share the batch. Memory is bounded by what is recorded.

Models (end-to-end map ``ŷ = M x`` on flattened images ``x ∈ ℝ^{n²}``; residual ``R = Σ_yx − MΣ_xx``):

* **linear FCNN** ``M = W₂ W₁`` with ``W₁`` ``(h, n²)`` and ``W₂`` ``(p, h)`` (Saxe et al. 2014):
  ``∂L/∂W₁ = −W₂ᵀR``, ``∂L/∂W₂ = −R W₁ᵀ``; invariant ``W₂ᵀW₂ − W₁W₁ᵀ``.
* **linear CNN** ``M = Σ_c W_c C_{r_c}``: ``C`` circular convolutions (one input channel, ``C`` output
  channels) with ``k×k`` kernels embedded as ``r̃_c`` ``(n, n)``, then a dense layer ``W`` ``(p, C·n²)``,
  held as images ``(p, C, n, n)``. Row ``i`` of ``M`` is ``Σ_c W_ic ⋆ r̃_c`` (circular cross-correlation);
  ``∂L/∂W_ic = −r̃_c ⊛ R_i`` and ``∂L/∂r̃_c = −P Σ_i W_ic ⋆ R_i`` (``P`` projects onto the ``k×k``
  support), all computed with real FFTs (``rfft2``) that each step computes once; invariant (full kernel)
  ``Σ_i |(QW_ic)_j|² − |λ_cj|²`` per channel and frequency, with ``λ_c = Q r̃_c``.

When the training set has fewer items than pixels (``N < n²``) the residual is formed from the data
(``MΣ_xx = w (MXᵀ) X``), otherwise from ``Σ_xx``; both give the same numbers.

Gradients are tested against autograd and finite differences. Computation is in torch (float64 by
default) on the device given; results come back as numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from .data import CueConflictData, DatasetStructure, TrainingSet
from .fourier import kernel_support
from .repro import progress_bar

__all__ = [
    "TrainingRun",
    "aligned_fcnn_init",
    "cnn_end_to_end",
    "cnn_gradients",
    "evaluate_cue_conflict",
    "fit_logistic_rate",
    "train_classifier",
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
        steps: ``(T,)`` recorded step numbers (0 = before the first update; the last step is always recorded).
        mode_strength: ``(T, B, p)`` values of ``a_α``.
        loss: ``(T, B)`` training loss.
        invariant_drift: ``(B,)`` ``max_t ‖I(t) − I(0)‖ / scale(T)`` over *every* step of the model's conserved
            quantity ``I`` (FCNN: ``W₂ᵀW₂ − W₁W₁ᵀ`` relative to ``‖W₁W₁ᵀ‖_F``; CNN: per channel and frequency
            ``Σ_i|(QW_ic)_j|² − |λ_cj|²`` over the ``rfft2`` half-spectrum, relative to ``‖|λ|²‖₂`` there;
            conserved by the gradient flow for a full-size kernel).
        weights: final weights by name (FCNN: ``W1`` ``(B, h, n²)``, ``W2`` ``(B, p, h)``; CNN: ``W``
            ``(B, p, C, n, n)``, ``kernel`` ``(B, C, n, n)`` embedded).
        s: ``(p,)`` singular values of the structure the strengths refer to.
        end_to_end: ``(B, p, n²)`` final end-to-end maps ``M``.
        kernel_power: CNN only, if recorded: ``(T, B, C, n, n)`` values of ``|λ_cj|² = |(Q r̃_c)_j|²``.
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
    seeds: Sequence[int], n: int, kernel_size: int, n_outputs: int, init_scale: float, channels: int = 1
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """I.i.d. ``N(0, init_scale²)`` dense weights and kernel entries (on the centred ``k×k`` support), one generator per seed.

    The same ``σ`` for both layers gives ``E|λ_cj|² = k²σ²`` and ``E Σ_i|(QW_ic)_j|² = p n²σ²``.
    Returns ``W`` ``(B, p, C, n, n)`` and the embedded kernels ``(B, C, n, n)``.
    """
    support = kernel_support(n, kernel_size)
    if n_outputs < 1 or channels < 1 or not init_scale > 0:
        raise ValueError(f"need n_outputs >= 1, channels >= 1, init_scale > 0; got {n_outputs}, {channels}, {init_scale}")
    W, kernels = [], []
    for seed in _check_seeds(seeds):
        rng = np.random.default_rng(seed)
        W.append(init_scale * rng.standard_normal((n_outputs, channels, n, n)))
        r = np.zeros((channels, n, n))
        r[:, support] = init_scale * rng.standard_normal((channels, kernel_size**2))
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
    """``M = Σ_c W_c C_{r_c}`` of the linear CNN as ``(..., p, n²)``: row ``i`` is ``Σ_c W_ic ⋆ r̃_c``.

    Args:
        W: ``(..., p, C, n, n)`` dense weights as images.
        kernel: ``(..., C, n, n)`` embedded kernels ``r̃_c``.
    """
    n = kernel.shape[-1]
    M = torch.fft.irfft2((torch.fft.rfft2(W) * torch.fft.rfft2(kernel).conj().unsqueeze(-4)).sum(-3), s=(n, n))
    return M.flatten(-2)


def cnn_gradients(
    W: torch.Tensor, kernel: torch.Tensor, residual: torch.Tensor, support: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂L/∂W, ∂L/∂r̃)`` of the linear CNN given the residual ``R = Σ_yx − MΣ_xx`` ``(..., p, n²)``.

    ``∂L/∂W_ic = −r̃_c ⊛ R_i`` and ``∂L/∂r̃_c = −P Σ_i W_ic ⋆ R_i``, with ``support`` the ``(n, n)`` 0/1 mask of ``P``.
    Shapes as in :func:`cnn_end_to_end`.
    """
    return _cnn_gradients_hat(torch.fft.rfft2(W), torch.fft.rfft2(kernel), residual, support)


def _cnn_gradients_hat(
    W_hat: torch.Tensor, lam: torch.Tensor, residual: torch.Tensor, support: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    n = support.shape[-1]
    R_hat = torch.fft.rfft2(residual.unflatten(-1, (n, n))).unsqueeze(-3)  # (..., p, 1, n, n//2+1)
    grad_W = -torch.fft.irfft2(lam.unsqueeze(-4) * R_hat, s=(n, n))
    grad_r = -torch.fft.irfft2((W_hat * R_hat.conj()).sum(-4), s=(n, n)) * support
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


class _LinearModel(Protocol):
    """What the shared GD loop needs from a model (parameters are a list of batched tensors)."""

    def forward(self, params: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """End-to-end maps ``M`` ``(B, p, n²)`` and a cache reused by the two methods below."""

    def gradients(self, params: list[torch.Tensor], residual: torch.Tensor, cache: Any) -> list[torch.Tensor]:
        """Loss gradients given ``R = Σ_yx − MΣ_xx``."""

    def invariant(self, params: list[torch.Tensor], cache: Any) -> torch.Tensor:
        """The conserved quantity, ``(B, ...)``."""

    def invariant_scale(self, params: list[torch.Tensor]) -> torch.Tensor:
        """``(B,)`` normalisation of the invariant's drift."""


class _FCNN:
    def forward(self, params: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
        return params[1] @ params[0], None

    def gradients(self, params: list[torch.Tensor], residual: torch.Tensor, cache: Any) -> list[torch.Tensor]:
        return list(fcnn_gradients(params[0], params[1], residual))

    def invariant(self, params: list[torch.Tensor], cache: Any) -> torch.Tensor:
        W1, W2 = params
        return W2.transpose(-1, -2) @ W2 - W1 @ W1.transpose(-1, -2)

    def invariant_scale(self, params: list[torch.Tensor]) -> torch.Tensor:
        return torch.linalg.matrix_norm(params[0] @ params[0].transpose(-1, -2))


@dataclass(frozen=True)
class _CNN:
    support: torch.Tensor  # (n, n) 0/1 mask of the kernel window

    def forward(self, params: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
        W, r = params
        n = r.shape[-1]
        W_hat, lam = torch.fft.rfft2(W), torch.fft.rfft2(r)
        M = torch.fft.irfft2((W_hat * lam.conj().unsqueeze(-4)).sum(-3), s=(n, n)).flatten(-2)
        return M, (W_hat, lam)

    def gradients(self, params: list[torch.Tensor], residual: torch.Tensor, cache: Any) -> list[torch.Tensor]:
        return list(_cnn_gradients_hat(*cache, residual, self.support))

    def invariant(self, params: list[torch.Tensor], cache: Any) -> torch.Tensor:
        W_hat, lam = cache
        return (W_hat.abs() ** 2).sum(-4) - lam.abs() ** 2

    def invariant_scale(self, params: list[torch.Tensor]) -> torch.Tensor:
        return torch.linalg.vector_norm((torch.fft.rfft2(params[1]).abs() ** 2).flatten(1), dim=1)


@dataclass(frozen=True)
class _Trajectory:
    steps: NDArray[np.int64]
    strengths: NDArray[np.floating]
    losses: NDArray[np.floating]
    drift: NDArray[np.floating]
    end_to_end: NDArray[np.floating]
    params: list[torch.Tensor]
    kernel_power: NDArray[np.floating] | None


def _gradient_descent(
    data: TrainingSet,
    structure: DatasetStructure,
    model: _LinearModel,
    params: list[torch.Tensor],
    *,
    lr: float,
    steps: int,
    record_every: int = 1,
    record_kernel_power: bool = False,
    weight_decay: float = 0.0,
) -> _Trajectory:
    """The shared GD loop: record ``a_α`` and the loss every ``record_every`` steps (and at the end).

    With ``weight_decay = λ > 0`` it descends ``L + (λ/2)‖θ‖²`` (every parameter); the recorded loss is ``L``.
    """
    dtype, dev = params[0].dtype, params[0].device
    d, p = data.flat_inputs.shape[1], data.targets.shape[1]
    if structure.p != p or structure.n**2 != d:
        raise ValueError(f"structure (p={structure.p}, n²={structure.n**2}) does not match data (p={p}, n²={d})")
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    if not (np.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")

    def to_torch(a: NDArray[np.floating]) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=dtype, device=dev)

    w = data.item_weight
    phi = to_torch(structure.phi.reshape(p, d)).T  # (d, p)
    sigma_yx = to_torch(data.sigma_yx)
    U = to_torch(structure.U)
    use_items = data.flat_inputs.shape[0] < d
    if use_items:  # M Σ_xx = w (M Xᵀ) X: cheaper than a (d, d) product when N < d
        X = to_torch(data.flat_inputs)
        X_phi = X @ phi  # (N, p)
    else:
        sigma_xx = to_torch(data.sigma_xx)
        probe = sigma_xx @ phi  # (d, p): Σ_xx φ_α
    y_energy = 0.5 * w * float((data.targets**2).sum())

    recorded = list(range(0, steps + 1, record_every))
    if recorded[-1] != steps:
        recorded.append(steps)
    B = params[0].shape[0]
    strengths = torch.empty((len(recorded), B, p), dtype=dtype, device=dev)
    losses = torch.empty((len(recorded), B), dtype=dtype, device=dev)
    powers: list[torch.Tensor] = []
    invariant0: torch.Tensor | None = None
    drift = torch.zeros(B, dtype=dtype, device=dev)
    slot = 0
    for k in range(steps + 1):
        M, cache = model.forward(params)
        if use_items:
            MXt = M @ X.T  # (B, p, N)
            M_sxx = w * MXt @ X
        else:
            M_sxx = M @ sigma_xx
        invariant = model.invariant(params, cache).flatten(1)
        if invariant0 is None:
            invariant0 = invariant
        drift = torch.maximum(drift, torch.linalg.vector_norm(invariant - invariant0, dim=1))
        if slot < len(recorded) and k == recorded[slot]:
            Ma = w * MXt @ X_phi if use_items else M @ probe
            strengths[slot] = torch.einsum("ia,bia->ba", U, Ma)
            losses[slot] = y_energy - (M * sigma_yx).sum((-1, -2)) + 0.5 * (M_sxx * M).sum((-1, -2))
            if record_kernel_power:
                powers.append(torch.fft.fft2(params[1]).abs() ** 2)
            slot += 1
        if k == steps:
            break
        grads = model.gradients(params, sigma_yx - M_sxx, cache)
        params = [x - lr * (g + weight_decay * x) if weight_decay else x - lr * g for x, g in zip(params, grads)]
    return _Trajectory(
        steps=np.asarray(recorded, dtype=np.int64),
        strengths=strengths.cpu().numpy(),
        losses=losses.cpu().numpy(),
        drift=(drift / model.invariant_scale(params)).cpu().numpy(),
        end_to_end=M.cpu().numpy(),
        params=params,
        kernel_power=torch.stack(powers).cpu().numpy() if record_kernel_power else None,
    )


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
    record_every: int = 1,
    weight_decay: float = 0.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> TrainingRun:
    """Train ``B`` two-layer linear FCNNs by full-batch gradient descent.

    Args:
        data: training set; its ``reduction`` sets the loss normalisation.
        structure: the modes in which to measure ``a_α`` (usually ``data.structure()``).
        lr: learning rate η (theory time ``t/τ = η·step``).
        steps: number of GD updates.
        hidden, init_scale, seeds: random init (see :func:`random_fcnn_init`), unless ``init`` is given.
        init: explicit ``(W1, W2)`` of shapes ``(B, h, n²)``, ``(B, p, h)``.
        record_every: record every this many steps (1 when measuring stage widths).
        weight_decay: ``λ ≥ 0``; GD then minimises ``L + (λ/2)(‖W1‖² + ‖W2‖²)`` (see
            :func:`~how_cnns_learn.theory.weight_decay_optimum`).
        dtype: ``torch.float64`` (default) or ``torch.float32``.
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
    _check_dtype(dtype)
    params = [torch.as_tensor(x, dtype=dtype, device=torch.device(device)) for x in (W1_0, W2_0)]
    out = _gradient_descent(
        data, structure, _FCNN(), params, lr=lr, steps=steps, record_every=record_every, weight_decay=weight_decay
    )
    return _training_run(out, seed_list, structure, ("W1", "W2"))


def _training_run(
    out: _Trajectory, seed_list: list[int], structure: DatasetStructure, names: tuple[str, str]
) -> TrainingRun:
    """Package a trajectory as a :class:`TrainingRun`, the final parameters under ``names``."""
    return TrainingRun(
        seeds=np.asarray(seed_list, dtype=np.int64),
        steps=out.steps,
        mode_strength=out.strengths,
        loss=out.losses,
        invariant_drift=out.drift,
        weights={name: param.cpu().numpy() for name, param in zip(names, out.params)},
        s=np.asarray(structure.s, dtype=float),
        end_to_end=out.end_to_end,
        kernel_power=out.kernel_power,
    )


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")


def train_linear_cnn(
    data: TrainingSet,
    structure: DatasetStructure,
    *,
    lr: float,
    steps: int,
    kernel_size: int | None = None,
    channels: int = 1,
    init_scale: float = 1e-4,
    seeds: Sequence[int] = (0,),
    init: tuple[NDArray[np.floating], NDArray[np.floating]] | None = None,
    record_every: int = 1,
    record_kernel_power: bool = False,
    weight_decay: float = 0.0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> TrainingRun:
    """Train ``B`` two-layer linear CNNs (``C`` circular ``k×k`` convolutions, then dense) by full-batch GD.

    Args:
        data, structure, lr, steps, seeds, init_scale, record_every, dtype: as in :func:`train_linear_fcnn`.
        kernel_size: ``k ≤ n`` (default ``n``: full-size kernels); kernels stay on their ``k×k`` support.
        channels: ``C``, the number of convolution output channels.
        init: explicit ``(W, kernel)`` of shapes ``(B, p, C, n, n)`` and ``(B, C, n, n)`` (embedded).
        record_kernel_power: also record ``|λ_cj|²`` at the recorded steps (``(T, B, C, n, n)``).
        weight_decay: ``λ ≥ 0``; GD then minimises ``L + (λ/2)(‖W‖² + ‖kernel‖²)`` (see
            :func:`~how_cnns_learn.theory.weight_decay_optimum`).
    """
    n, p = data.inputs.shape[-1], data.targets.shape[1]
    k = n if kernel_size is None else kernel_size
    if not 1 <= k <= n:
        raise ValueError(f"kernel_size must lie in [1, n = {n}], got {kernel_size}")
    if init is None:
        seed_list = _check_seeds(seeds)
        W0, r0 = random_cnn_init(seed_list, n, k, p, init_scale, channels)
    else:
        W0, r0 = init
        if W0.ndim != 5 or W0.shape[1] != p or W0.shape[3:] != (n, n) or r0.shape != (W0.shape[0], W0.shape[2], n, n):
            raise ValueError(f"init shapes {W0.shape}, {r0.shape} do not fit (B, {p}, C, {n}, {n}), (B, C, {n}, {n})")
        if np.any(r0[..., ~kernel_support(n, k)]):
            raise ValueError(f"the initial kernel has entries outside its {k}x{k} support (see fourier.kernel_support)")
        seed_list = [-1] * W0.shape[0]
    _check_dtype(dtype)
    dev = torch.device(device)
    params = [torch.as_tensor(x, dtype=dtype, device=dev) for x in (W0, r0)]
    model = _CNN(support=torch.as_tensor(kernel_support(n, k), dtype=dtype, device=dev))
    out = _gradient_descent(
        data, structure, model, params, lr=lr, steps=steps, record_every=record_every,
        record_kernel_power=record_kernel_power, weight_decay=weight_decay,
    )
    return _training_run(out, seed_list, structure, ("W", "kernel"))


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


def train_classifier(
    model: torch.nn.Module,
    data: TrainingSet,
    *,
    test_fraction: float = 1 / 6,
    test_data: TrainingSet | None = None,
    epochs: int = 40,
    lr: float = 0.1,
    batch_size: int | None = 32,
    seed: int = 0,
    record: Sequence[int] = (),
    record_every: int = 0,
    loss: str = "cross_entropy",
    optimizer: str = "sgd",
    structure: DatasetStructure | None = None,
    evaluate: Callable[[torch.nn.Module], Mapping[str, float]] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Minibatch SGD (or Adam) for any classifier ``model`` mapping ``(N, 1, n, n)`` images to ``(N, p)`` outputs.

    The book's one classifier trainer: every chapter that trains a torch network on images calls it.

    Args:
        data: training images and targets ``(N, p)``; the labels are ``targets.argmax(1)``.
        test_fraction: share of ``data`` held out for the test accuracy, unless ``test_data`` is given (then every
            item of ``data`` is trained on and the accuracy is measured on ``test_data``).
        loss: ``"cross_entropy"`` (on the labels) or ``"mse"``: ``L = (1/B) Σ_μ ½‖ŷ^μ − y^μ‖²`` on the targets
            themselves (the mean loss of the linear theory, so time is ``t/τ = lr·step`` with full batches).
        batch_size: items per step (``None`` or ``≥ N``: full-batch gradient descent, one step per epoch, a
            discretised gradient flow for ``optimizer="sgd"``; the rows of the batch are still shuffled, which
            changes only the summation order).
        optimizer: ``"sgd"`` (plain steps ``θ ← θ − lr·∇L``) or ``"adam"`` (torch's Adam, default betas).
        record: epochs at which to record (epoch 0 and the last epoch always are); ``record_every``: also every
            this many epochs (0: off).
        structure: if given, also record the mode strengths ``a_α = u_αᵀ Σ_ŷx φ_α`` of the outputs on the trained
            items (columns ``a1 … ap``; :func:`mode_strengths`).
        evaluate: if given, called with the model at every recorded epoch; each ``name: value`` it returns becomes a
            column (e.g. ``lambda m: evaluate_cue_conflict(m, cue).set_index("measure")["value"]``). It must not
            change the model.
        device: where to train (the model is moved there; inputs take the model's dtype).
        progress: show a progress bar over the epochs.

    The split and the batches are drawn from ``seed``. Returns a tidy table, one row per recorded epoch: ``epoch``,
    ``step``, ``train loss``, ``test accuracy``, the first-layer filter norms (``norms``, an array) when the model has
    a ``filter_norms`` property, the mode strengths when ``structure`` is given, and the columns of ``evaluate``.
    """
    if epochs < 1 or (batch_size is not None and batch_size < 1) or not lr > 0 or record_every < 0:
        raise ValueError(f"bad settings: epochs={epochs}, batch_size={batch_size}, lr={lr}, record_every={record_every}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if test_data is None and not 0 < test_fraction < 1:
        raise ValueError(f"bad settings: test_fraction={test_fraction} must lie in (0, 1) when no test_data is given")
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse', got {loss!r}")
    if test_data is not None and test_data.targets.shape[1] != data.targets.shape[1]:
        raise ValueError(f"test_data has {test_data.targets.shape[1]} outputs, data has {data.targets.shape[1]}")
    dev = torch.device(device)
    model.to(dev)
    dtype = next(model.parameters()).dtype

    def tensors(d: TrainingSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        X = torch.as_tensor(d.inputs, dtype=dtype, device=dev).unsqueeze(1)
        Y = torch.as_tensor(d.targets, dtype=dtype, device=dev)
        return X, Y, Y.argmax(1)

    X, Y, y = tensors(data)
    generator = torch.Generator().manual_seed(seed)
    if test_data is None:
        order = torch.randperm(len(y), generator=generator)
        n_test = int(round(test_fraction * len(y)))
        test, train = order[:n_test], order[n_test:]
        X_test, y_test = X[test.to(dev)], y[test.to(dev)]
    else:
        train = torch.arange(len(y))
        X_test, _, y_test = tensors(test_data)
    trained = TrainingSet(data.inputs[train.numpy()], data.targets[train.numpy()], data.reduction)
    if structure is not None and (structure.p, structure.n) != (data.targets.shape[1], data.inputs.shape[-1]):
        raise ValueError(f"structure (p={structure.p}, n={structure.n}) does not match the data {data.targets.shape}")
    optimiser = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(model.parameters(), lr=lr)
    batch_size = len(train) if batch_size is None else batch_size

    def objective(out: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        if loss == "mse":
            return 0.5 * ((out - Y[batch]) ** 2).sum(1).mean()
        return torch.nn.functional.cross_entropy(out, y[batch])

    rows = []
    step = 0

    def snapshot(epoch: int) -> None:
        with torch.no_grad():
            accuracy = (model(X_test).argmax(1) == y_test).to(dtype).mean().item()
            train_idx = train.to(dev)
            out = model(X[train_idx])
            row = {"epoch": epoch, "step": step, "train loss": objective(out, train_idx).item(), "test accuracy": accuracy}
        if hasattr(model, "filter_norms"):
            row["norms"] = model.filter_norms
        if structure is not None:
            strengths = mode_strengths(out.cpu().double().numpy(), trained, structure)
            row.update({f"a{alpha + 1}": value for alpha, value in enumerate(strengths)})
        if evaluate is not None:
            row.update(dict(evaluate(model)))
        rows.append(row)

    snapshot(0)
    for epoch in progress_bar(range(1, epochs + 1), enabled=progress, leave=False, desc="epochs"):
        shuffled = train[torch.randperm(len(train), generator=generator)].to(dev)
        for start in range(0, len(shuffled), batch_size):
            batch = shuffled[start : start + batch_size]
            optimiser.zero_grad()
            objective(model(X[batch]), batch).backward()
            optimiser.step()
            step += 1
        if epoch in record or epoch == epochs or (record_every and epoch % record_every == 0):
            snapshot(epoch)
    return pd.DataFrame(rows)


def evaluate_cue_conflict(model: torch.nn.Module, cue: CueConflictData) -> pd.DataFrame:
    """Accuracy of a trained classifier on each test set of :func:`~how_cnns_learn.data.cue_conflict`, and its cue preference.

    Returns a tidy table with one row per measure (column ``measure``, value in ``value``): the accuracy on
    ``"both cues"``, ``"shape only"``, ``"texture only"``, and, for the conflict images, the fractions classified by
    their shape (``"follows shape"``) and by their texture (``"follows texture"``); the two need not add up to 1.
    """
    parameter = next(model.parameters())
    rows = []
    with torch.no_grad():
        for name, test in cue.tests.items():
            X = torch.as_tensor(test.inputs, dtype=parameter.dtype, device=parameter.device).unsqueeze(1)
            predicted = model(X).argmax(1).cpu().numpy()
            if name == "conflict":
                rows.append({"measure": "follows shape", "value": float(np.mean(predicted == test.targets.argmax(1)))})
                rows.append({"measure": "follows texture", "value": float(np.mean(predicted == cue.conflict_texture))})
            else:
                rows.append({"measure": f"accuracy, {name}", "value": float(np.mean(predicted == test.targets.argmax(1)))})
    return pd.DataFrame(rows)
