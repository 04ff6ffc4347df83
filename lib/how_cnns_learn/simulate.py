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
  support); invariant (full kernel) ``Σ_i |(QW_ic)_j|² − |λ_cj|²`` per channel and frequency, with ``λ_c = Q r̃_c``.
  The simulator holds ``W`` in Fourier coordinates (``Ŵ = rfft2 W``), where the map and the step are per-frequency
  products: with a full-size kernel (``k = n``) the kernel is held as ``λ`` too and a step needs no FFT, and
  :func:`train_linear_cnn` steps only the ``F_a`` frequencies at which the data have power (the others never move
  and never reach the outputs: the book's thesis that a CNN uses only the frequencies its data carry, turned into
  the algorithm; D1 carries 9 of the ``n(n//2+1)``); with ``k < n`` it adds one ``rfft2`` and one ``irfft2`` of the
  ``B·C`` kernels (``O(B·C·n² log n)``; see ``_CNN``).

Cost of a step (``N`` items, ``n²`` pixels): with ``N < n²`` the residual is item-factored, ``R = E X`` with the
``(B, p, N)`` errors ``E``, and a step of either model is a few batched matrix products: CNN ``O(B·p·C·n²·N)``,
FCNN ``O(B·h·n²·N)``; with ``N ≥ n²`` it multiplies by ``Σ_xx`` in the model's coordinates, ``O(B·p·n⁴)``, plus the
model's own step (CNN ``O(B·p·C·n²)`` elementwise, FCNN ``O(B·p·h·n²)``). No step allocates; on CUDA the steps
between two records replay one captured CUDA graph.

Both are :class:`LinearModel` s trained by :func:`simulate_linear_model`, the extension point for a new simulator.
The residual is formed in the model's coordinates from the data: when the training set has fewer items than pixels
(``N < n²``) as ``MΣ_xx = w (MXᵀ) X``, otherwise from ``Σ_xx``; both give the same numbers. Only the recorded steps
compute the mode strengths, the loss, the invariant and the kernel power.

Gradients are tested against autograd and finite differences. Computation is in torch (float64 by
default) on the device given; results come back as numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from .data import DatasetStructure, TrainingSet
from .fourier import kernel_support
from .repro import record_device

__all__ = [
    "DataSupportedModel",
    "ItemFactoredModel",
    "LinearModel",
    "TrainingRun",
    "aligned_fcnn_init",
    "cnn_end_to_end",
    "cnn_gradients",
    "crossing_steps",
    "fit_logistic_rate",
    "fcnn_gradients",
    "mode_strengths",
    "random_cnn_init",
    "train_linear_cnn",
    "measure_transitions",
    "random_fcnn_init",
    "simulate_linear_model",
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
        invariant_drift: ``(B,)`` ``max_t ‖I(t) − I(0)‖ / scale(T)`` over the recorded steps of the model's conserved
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



def _check_seeds(seeds: Sequence[int] | int) -> list[int]:
    seeds = [seeds] if isinstance(seeds, (int, np.integer)) else list(seeds)  # seeds=0: one network, seed 0
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
    return torch.fft.irfft2(_cnn_map_hat(torch.fft.rfft2(W), torch.fft.rfft2(kernel)), s=(n, n)).flatten(-2)


def _cnn_map_hat(W_hat: torch.Tensor, lam: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``M̂_i = Σ_c Ŵ_ic conj(λ_c)`` per frequency: the one forward of the linear CNN (:func:`cnn_end_to_end`, the simulator).

    ``W_hat`` ``(..., p, C, n, n//2+1)`` and ``lam`` ``(..., C, n, n//2+1)`` are ``rfft2`` half-spectra; returns
    ``(..., p, n, n//2+1)`` (into ``out`` if given).
    """
    lam_conj = torch.conj_physical(lam).unsqueeze(-4)  # a conj-bit operand would cost torch a slower copy
    if W_hat.shape[-3] == 1:  # one channel: nothing to sum
        return torch.mul(W_hat.squeeze(-3), lam_conj.squeeze(-3), out=out)
    return torch.sum(W_hat * lam_conj, dim=-3, out=out)


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


class LinearModel(Protocol):
    """The extension point of the full-batch simulators: a batch of ``B`` linear networks and its GD step.

    :func:`simulate_linear_model` trains any object with these members. A linear network predicts ``ŷ = M x`` with
    an end-to-end map ``M`` ``(p, n²)`` that depends on its parameters ``θ``; the loss
    ``L = (w/2) Σ_μ ‖y^μ − M x^μ‖²`` depends on ``θ`` only through ``M``, and ``∂L/∂M = −R`` with the residual
    ``R = Σ_yx − MΣ_xx``. So the loop needs from a model only ``M``, a gradient step given ``R``, and what it
    records; it never looks at the parameters.

    It works in the model's own **coordinates**: a real-linear map ``c`` from images ``ℝ^{n²}`` (the rows of ``M``)
    to ``ℝ^D`` with a diagonal metric ``g`` ``(D,)`` such that ``⟨m, x⟩ = Σ_f g_f c(m)_f c(x)_f``. The loop
    transforms the data (``Σ_yx``, the items or ``Σ_xx``, the modes) into these coordinates once, so that a step
    multiplies ``c(M)`` by fixed matrices only. Pixels are coordinates (``c`` the identity, ``g = 1``: the FCNN);
    the linear CNN uses the real and imaginary parts of the ``rfft2`` half-spectrum (``g = ω_f/n²``, ``ω_f = 1`` on
    the self-conjugate columns, 2 elsewhere), in which its step is a per-frequency product and needs no FFT.

    To add a simulator: hold the ``B`` networks' parameters (batch axis first; one device and dtype, which the
    loop takes from ``metric``), implement the members below (``end_to_end`` and ``step`` run every step and set the
    cost of a run; the others run at recorded steps only), and call :func:`simulate_linear_model`. The two
    simulators of this module (``_FCNN`` and ``_CNN`` in its source) are worked examples.

    Attributes:
        batch: ``B``, the number of networks.
        dim: ``D``, the number of coordinates of a row of ``M``.
        metric: ``(D,)`` the metric ``g`` of the coordinates.
    """

    batch: int
    dim: int
    metric: torch.Tensor

    def coordinates(self, images: torch.Tensor) -> torch.Tensor:
        """``c(x)``: flattened images ``(..., n²)`` → ``(..., D)``; linear."""

    def pixels(self, coords: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`coordinates` on its image: ``(..., D)`` → ``(..., n²)``."""

    def end_to_end(self) -> torch.Tensor:
        """``c(M)`` of the current parameters, ``(B, p, D)``, contiguous (may be a buffer the next call overwrites)."""

    def step(self, residual: torch.Tensor, lr: float, weight_decay: float) -> None:
        """One GD step in place given ``c(R)`` ``(B, p, D)`` (of the parameters of the last :meth:`end_to_end`):
        ``θ ← θ − η(∂L/∂θ + λθ)`` with ``η = lr`` and ``λ = weight_decay``."""

    def invariant(self) -> torch.Tensor:
        """The model's conserved quantity (whose drift the run reports) of the current parameters, ``(B, K)``."""

    def invariant_scale(self) -> torch.Tensor:
        """``(B,)`` normalisation of the invariant's drift, from the current (final) parameters."""

    def weights(self) -> dict[str, torch.Tensor]:
        """The current parameters by name as the user sees them (pixel space), batch axis first."""

    def kernel_power(self) -> torch.Tensor | None:
        """A spectrum to record at recorded steps on request (``(B, ...)``), or ``None`` if the model has none."""


@runtime_checkable
class ItemFactoredModel(LinearModel, Protocol):
    """A :class:`LinearModel` with the optional item-factored step, used when the training set has fewer items than
    pixels (``N < n²``).

    Then ``c(R) = E c(X)`` with the weighted errors ``E = w(Yᵀ − MXᵀ)`` ``(B, p, N)``, and a step needs ``M`` only
    through ``MXᵀ``, which saves the passes that form ``M`` and ``R`` at full size. :func:`simulate_linear_model`
    uses these members whenever the model has them (``isinstance(model, ItemFactoredModel)``).
    """

    def outputs(self, items: torch.Tensor) -> torch.Tensor:
        """``MXᵀ`` ``(B, p, N)`` of the current parameters given ``g ⊙ c(X)`` ``(N, D)`` (the same tensor each call)."""

    def step_factored(self, errors: torch.Tensor, items: torch.Tensor, lr: float, weight_decay: float) -> None:
        """The step of :meth:`LinearModel.step` for ``c(R) = errors @ items``, given ``errors`` ``(B, p, N)`` and
        ``c(X)`` ``(N, D)`` (the same tensor each call), at the parameters of the last :meth:`outputs`."""


@runtime_checkable
class DataSupportedModel(ItemFactoredModel, Protocol):
    """An :class:`ItemFactoredModel` that steps only the coordinates where the data live, and names them.

    Outside ``data_coordinates``, ``c(Σ_yx)``, ``c(X)`` and the probes of the mode strengths vanish (up to rounding),
    so :func:`simulate_linear_model` forms the recorded strengths and loss from ``c(M)`` there only, and the
    invariant's drift from an isometric image of the invariant. Example: the linear CNN with a full-size kernel
    restricted to the frequencies its training items carry.

    Attributes:
        data_coordinates: ``(D_s,)`` the coordinates (indices into ``D``) where the data live.
    """

    data_coordinates: torch.Tensor

    def end_to_end_on_data(self) -> torch.Tensor:
        """``c(M)`` on ``data_coordinates``, ``(B, p, D_s)`` (may be a buffer the next call overwrites)."""

    def drift_invariant(self) -> torch.Tensor:
        """``(B, K')`` whose distance between any two steps equals that of :meth:`LinearModel.invariant` (cheaper
        to form)."""


class _FCNN:
    """The linear FCNN ``M = W₂W₁`` in pixel coordinates (``c`` the identity).

    Cost per step (``W₁`` ``(B, h, n²)``, ``W₂`` ``(B, p, h)``): ``O(B·p·h·n²)`` (three batched matrix products),
    in place, with no allocation.
    """

    def __init__(self, W1: torch.Tensor, W2: torch.Tensor):
        self.W1, self.W2 = W1.clone(), W2.clone()
        self.batch, _, self.dim = W1.shape
        self.metric = torch.ones(self.dim, dtype=W1.dtype, device=W1.device)
        self._M = torch.empty((self.batch, W2.shape[1], self.dim), dtype=W1.dtype, device=W1.device)
        self._grad2 = torch.empty_like(self.W2)

    def coordinates(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def pixels(self, coords: torch.Tensor) -> torch.Tensor:
        return coords

    def end_to_end(self) -> torch.Tensor:
        return torch.bmm(self.W2, self.W1, out=self._M)

    def step(self, residual: torch.Tensor, lr: float, weight_decay: float) -> None:
        # ∂L/∂W₁ = −W₂ᵀR and ∂L/∂W₂ = −R W₁ᵀ (fcnn_gradients), both at the old weights
        torch.bmm(residual, self.W1.transpose(1, 2), out=self._grad2)
        self.W1.baddbmm_(self.W2.transpose(1, 2), residual, beta=1 - lr * weight_decay, alpha=lr)
        if weight_decay:
            self.W2.mul_(1 - lr * weight_decay)
        self.W2.add_(self._grad2, alpha=lr)

    def outputs(self, items: torch.Tensor) -> torch.Tensor:
        # MXᵀ = W₂ (W₁Xᵀ) (the metric is 1): O(B·h·n²·N); W₁Xᵀ serves the step too
        self._hidden = torch.matmul(self.W1, items.T)  # (B, h, N)
        return torch.bmm(self.W2, self._hidden)

    def step_factored(self, errors: torch.Tensor, items: torch.Tensor, lr: float, weight_decay: float) -> None:
        # R = E X: −∂L/∂W₂ = R W₁ᵀ = E (W₁Xᵀ)ᵀ and −∂L/∂W₁ = W₂ᵀR = (W₂ᵀE) X, at the old weights; O(B·h·n²·N)
        torch.bmm(errors, self._hidden.transpose(1, 2), out=self._grad2)
        self.W1.baddbmm_(torch.bmm(self.W2.transpose(1, 2), errors), items.expand(self.batch, *items.shape),
                         beta=1 - lr * weight_decay, alpha=lr)
        if weight_decay:
            self.W2.mul_(1 - lr * weight_decay)
        self.W2.add_(self._grad2, alpha=lr)

    def invariant(self) -> torch.Tensor:
        return (self.W2.transpose(1, 2) @ self.W2 - self.W1 @ self.W1.transpose(1, 2)).flatten(1)

    def invariant_scale(self) -> torch.Tensor:
        return torch.linalg.matrix_norm(self.W1 @ self.W1.transpose(1, 2))

    def weights(self) -> dict[str, torch.Tensor]:
        return {"W1": self.W1, "W2": self.W2}

    def kernel_power(self) -> torch.Tensor | None:
        return None


class _CNN:
    """The linear CNN with its dense weights held in Fourier coordinates (``Ŵ = rfft2 W``, ``(B, p, C, n, n//2+1)``).

    Its end-to-end map is ``M̂_i = Σ_c Ŵ_ic conj(λ_c)`` per frequency (:func:`_cnn_map_hat`, the one forward of the
    linear CNN) and a GD step is, per frequency, ``Ŵ_ic ← Ŵ_ic + η λ_c R̂_i`` and ``λ_c ← λ_c + η Σ_i Ŵ_ic conj(R̂_i)``
    (the Fourier transforms of :func:`cnn_gradients`).

    Cost of a step with ``F = n(n//2+1)`` half-spectrum frequencies (``N`` items; item-factored when ``N < n²``):

    * Full-size kernel (``k = n``, the per-frequency form): the kernel is held as ``λ = rfft2 r̃`` too and a step
      is per frequency: elementwise ``O(B·p·C·F)`` given ``R̂`` (:meth:`step`), or ``O(B·p·C·F·N)`` in batched
      matrix products given the item-factored ``R = E X`` (:meth:`step_factored`); no FFT, no allocation.
      Pixel-space weights are formed only when asked for (:meth:`weights`).
    * Full-size kernel restricted to the data's frequencies (``active``, a ``(n, n//2+1)`` mask with ``F_a`` of the
      ``F`` frequencies set): the gradient at frequency ``f`` is proportional to the items' spectrum there
      (``R̂_f = Σ_μ E_μ x̂_μf``), so where the data have no power ``Ŵ_f`` and ``λ_f`` never move (with weight decay
      they shrink by exactly ``1 − ηλ_wd`` per step) and they enter neither the outputs nor ``R``. The model then
      holds only the active frequencies (``Ŵ`` ``(B, p, C, 1, F_a)``, ``λ`` ``(B, C, 1, F_a)``) and steps them as
      above: ``O(B·p·C·F_a·N)`` item-factored, ``O(B·p·C·F_a)`` given ``R̂`` (whose gather is ``O(B·p·F)``). Its
      interface stays in the full coordinates: :meth:`end_to_end`, :meth:`invariant`, :meth:`weights` and
      :meth:`kernel_power` (recorded steps only) scatter the active part into the frozen one, ``O(B·p·F)``.
    * Small kernel (``k < n``, the FFT form): the kernel stays in pixel space on its ``k×k`` support ``P`` and each
      step adds one ``rfft2`` (``λ`` of the new kernel) and one ``irfft2`` (the projected kernel gradient
      ``P irfft2(Σ_i Ŵ_ic conj(R̂_i))``) of the ``B·C`` kernels: ``O(B·p·C·F·N + B·C·n² log n)`` (``N·`` only
      item-factored). The kernel couples the frequencies, so no restriction applies.
    """

    def __init__(self, W: torch.Tensor, kernel: torch.Tensor, kernel_size: int, fft_kernel: bool = False,
                 active: torch.Tensor | NDArray[np.bool_] | None = None):
        self.batch, self.p, self.channels, n, _ = W.shape
        self.n, self.half = n, n // 2 + 1
        self.full = kernel_size == n and not fft_kernel
        self.support = torch.as_tensor(kernel_support(n, kernel_size), dtype=W.dtype, device=W.device)
        self.W_hat = torch.fft.rfft2(W)  # (B, p, C, n, n//2+1)
        self.kernel = None if self.full else kernel.clone()
        self.lam = torch.fft.rfft2(kernel)  # (B, C, n, n//2+1)
        self.dim = 2 * n * self.half
        omega = torch.full((self.half,), 2.0, dtype=W.dtype, device=W.device)
        omega[0] = 1.0
        if n % 2 == 0:
            omega[-1] = 1.0
        self.metric = (omega / n**2)[None, :, None].expand(n, self.half, 2).flatten()
        self._M_hat = torch.empty((self.batch, self.p, n, self.half), dtype=self.W_hat.dtype, device=W.device)
        self._active = None if active is None else self._restrict(active)
        self._product = torch.empty_like(self.W_hat)
        self._R_conj = torch.empty((self.batch, self.p, 1, *self.lam.shape[2:]), dtype=self.W_hat.dtype,
                                   device=W.device)
        self._kernel_step = torch.empty_like(self.lam)

    def _restrict(self, active: torch.Tensor | NDArray[np.bool_]) -> torch.Tensor | None:
        """Hold only the ``active`` frequencies (see the class docstring); ``None`` (nothing held apart) if all are."""
        mask = torch.as_tensor(np.asarray(active) if not isinstance(active, torch.Tensor) else active)
        if mask.dtype != torch.bool or tuple(mask.shape) != (self.n, self.half):
            raise ValueError(f"active must be a boolean ({self.n}, {self.half}) mask over the rfft2 half-spectrum, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        if bool(mask.all()):
            return None
        if not self.full:
            raise ValueError("active: a frequency restriction needs the full-size kernel (k = n) path")
        if not bool(mask.any()):
            raise ValueError("active: at least one frequency must be active")
        index = torch.nonzero(mask.flatten()).squeeze(1).to(self.W_hat.device)  # (F_a,) into the flattened (n, n//2+1)
        B, p, C = self.batch, self.p, self.channels
        self._W0, self._lam0 = self.W_hat, self.lam  # the frozen frequencies' values at step 0
        _cnn_map_hat(self._W0, self._lam0, out=self._M_hat)  # its inactive part is M̂ at every step (× decay²)
        self._M0 = self._M_hat.clone()
        self._invariant0 = self._invariant_held().view_as(self.lam)  # (B, C, n, n//2+1)
        self.W_hat = self._W0.flatten(-2)[..., index].unsqueeze(-2).contiguous()  # (B, p, C, 1, F_a)
        self.lam = self._lam0.flatten(-2)[..., index].unsqueeze(-2).contiguous()  # (B, C, 1, F_a)
        self._M_active = torch.empty((B, p, 1, index.numel()), dtype=self.W_hat.dtype, device=self.W_hat.device)
        self.data_coordinates = torch.stack([2 * index, 2 * index + 1], 1).flatten()  # (2F_a,) real and imaginary parts
        rest = torch.ones(mask.numel(), dtype=torch.bool, device=index.device)
        rest[index] = False
        self._rest_norm = torch.linalg.vector_norm(self._invariant0.flatten(-2)[..., rest].flatten(1), dim=1,
                                                   keepdim=True)  # (B, 1): ‖I_f(0)‖ over the frozen frequencies
        self._lam_full = self._lam0.clone()
        self._decay = torch.ones((), dtype=self.metric.dtype, device=self.W_hat.device)  # (1 − ηλ_wd)^t
        self._decayed = False
        return index

    def _gather(self, spectrum: torch.Tensor) -> torch.Tensor:
        """``(..., n, n//2+1)`` → the active frequencies ``(..., 1, F_a)`` (unchanged without a restriction)."""
        if self._active is None:
            return spectrum
        return spectrum.flatten(-2)[..., self._active].unsqueeze(-2).contiguous()

    def _full(self, held: torch.Tensor, frozen: torch.Tensor, out: torch.Tensor | None = None,
              power: int = 1) -> torch.Tensor:
        """The full half-spectrum: ``frozen`` (× decay^power after weight decay), the active ``held`` part scattered in.

        Writes into ``out`` if given (whose inactive part must hold ``frozen`` when no step has decayed it)."""
        if out is None or self._decayed:
            out = torch.mul(frozen, self._decay**power, out=out) if self._decayed else frozen.clone()
        out.flatten(-2).index_copy_(-1, self._active, held.flatten(-2))
        return out

    def coordinates(self, images: torch.Tensor) -> torch.Tensor:
        return torch.view_as_real(torch.fft.rfft2(images.unflatten(-1, (self.n, self.n)))).flatten(-3)

    def pixels(self, coords: torch.Tensor) -> torch.Tensor:
        spectrum = torch.view_as_complex(coords.unflatten(-1, (self.n, self.half, 2)).contiguous())
        return torch.fft.irfft2(spectrum, s=(self.n, self.n)).flatten(-2)

    def end_to_end(self) -> torch.Tensor:
        if not self.full:
            self.lam = torch.fft.rfft2(self.kernel)
        if self._active is None:
            _cnn_map_hat(self.W_hat, self.lam, out=self._M_hat)
        else:
            self._full(_cnn_map_hat(self.W_hat, self.lam, out=self._M_active), self._M0, out=self._M_hat, power=2)
        return torch.view_as_real(self._M_hat).view(self.batch, self.p, self.dim)

    def step(self, residual: torch.Tensor, lr: float, weight_decay: float) -> None:
        R_hat = torch.view_as_complex(residual.view(self.batch, self.p, self.n, self.half, 2))
        R_hat = self._gather(R_hat).unsqueeze(2)
        self._step_hat(R_hat, lr, weight_decay)

    def _step_hat(self, R_hat: torch.Tensor, lr: float, weight_decay: float) -> None:
        """The per-frequency step given ``R̂`` ``(B, p, 1, n, n//2+1)`` (restricted: ``(B, p, 1, 1, F_a)``)."""
        # kernel: −∂L/∂λ_c = Σ_i Ŵ_ic conj(R̂_i), at the old Ŵ (conj_physical into a buffer: a conj-bit operand
        # costs torch a slow copy)
        torch.conj_physical(R_hat, out=self._R_conj)
        torch.mul(self.W_hat, self._R_conj, out=self._product)
        torch.sum(self._product, dim=1, out=self._kernel_step)
        if weight_decay:
            self.W_hat.mul_(1 - lr * weight_decay)
        # −∂L/∂Ŵ_ic = λ_c R̂_i, at the old λ (mul + add_: complex addcmul_ is slower on the CPU)
        torch.mul(self.lam.unsqueeze(1), R_hat, out=self._product)
        self.W_hat.add_(self._product, alpha=lr)
        self._update_kernel(lr, weight_decay)

    def _update_kernel(self, lr: float, weight_decay: float) -> None:
        """``λ ← (1 − ηλ_wd)λ + η g`` with ``g = −∂L/∂λ`` in ``_kernel_step`` (``k < n``: projected on the support)."""
        if self.full:
            if weight_decay:
                self.lam.mul_(1 - lr * weight_decay)
                if self._active is not None:  # the frozen frequencies' common factor (a tensor: CUDA graphs replay it)
                    self._decay.mul_(1 - lr * weight_decay)
                    self._decayed = True
            self.lam.add_(self._kernel_step, alpha=lr)
        else:
            projected = torch.fft.irfft2(self._kernel_step, s=(self.n, self.n)).mul_(self.support)
            if weight_decay:
                self.kernel.mul_(1 - lr * weight_decay)
            self.kernel.add_(projected, alpha=lr)

    def _items_hat(self, items: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` coordinates → ``(N, n, n//2+1)`` spectra (restricted: ``(N, 1, F_a)``)."""
        return self._gather(torch.view_as_complex(items.unflatten(-1, (self.n, self.half, 2)).contiguous()))

    def outputs(self, items: torch.Tensor) -> torch.Tensor:
        if self._active is not None:  # F_a frequencies: form M̂ there and take one (B·p, 2F_a) @ (2F_a, N) product
            if getattr(self, "_outputs_items", None) is not items:
                self._outputs_items, self._gx = items, torch.view_as_real(self._items_hat(items)).flatten(1)
                self._outputs = torch.empty((self.batch, self.p, items.shape[0]), dtype=items.dtype,
                                            device=items.device)
            M = torch.view_as_real(_cnn_map_hat(self.W_hat, self.lam, out=self._M_active))
            torch.mm(M.view(self.batch * self.p, -1), self._gx.T, out=self._outputs.view(self.batch * self.p, -1))
            return self._outputs
        # (MXᵀ)_iμ = Σ_c c(Ŵ_ic)·c(λ_c ĝx_μ) with ĝx = g ⊙ x̂ (as M̂ = Σ_c Ŵ_c conj(λ_c)): one batched product
        if getattr(self, "_outputs_items", None) is not items:
            self._outputs_items, self._gx = items, self._items_hat(items)[:, None]  # (N, 1, n, n//2+1)
        if not self.full:
            self.lam = torch.fft.rfft2(self.kernel)
        Z = self.lam.unsqueeze(1) * self._gx  # (B, N, C, n, n//2+1)
        W = torch.view_as_real(self.W_hat).view(self.batch, self.p, -1)
        return torch.bmm(W, torch.view_as_real(Z).view(self.batch, Z.shape[1], -1).transpose(1, 2))

    def step_factored(self, errors: torch.Tensor, items: torch.Tensor, lr: float, weight_decay: float) -> None:
        if self._active is not None:  # F_a frequencies: R̂ = E X̂ (one (B·p, N) @ (N, 2F_a) product), then per frequency
            if getattr(self, "_step_items", None) is not items:
                self._step_items, self._x_hat = items, torch.view_as_real(self._items_hat(items)).flatten(1)
                self._R_hat = torch.empty((self.batch, self.p, 1, 1, self.lam.shape[-1]), dtype=self.W_hat.dtype,
                                          device=items.device)
            torch.mm(errors.view(self.batch * self.p, -1), self._x_hat,
                     out=torch.view_as_real(self._R_hat).view(self.batch * self.p, -1))
            self._step_hat(self._R_hat, lr, weight_decay)
            return
        # R̂_i = Σ_μ E_iμ x̂_μ. Kernel: Σ_i Ŵ_ic conj(R̂_i) = Σ_μ conj(x̂_μ) (EᵀŴ)_μc; dense: Ŵ_ic += η Σ_μ E_iμ λ_c x̂_μ;
        # both at the old parameters; O(B·p·C·n²·N) in batched matrix products, no pass that forms R̂
        if getattr(self, "_step_items", None) is not items:
            x_hat = self._items_hat(items)[:, None]  # (N, 1, n, n//2+1)
            self._step_items, self._x_hat, self._x_conj = items, x_hat, torch.conj_physical(x_hat)
        W = torch.view_as_real(self.W_hat).view(self.batch, self.p, -1)
        EW = torch.view_as_complex(torch.bmm(errors.transpose(1, 2), W).view(*self.lam.shape[:1], -1, *self.lam.shape[1:], 2))
        torch.sum(EW.mul_(self._x_conj), dim=1, out=self._kernel_step)  # (B, C, n, n//2+1)
        Z = self.lam.unsqueeze(1) * self._x_hat  # (B, N, C, n, n//2+1)
        W.baddbmm_(errors, torch.view_as_real(Z).view(self.batch, Z.shape[1], -1), beta=1 - lr * weight_decay, alpha=lr)
        self._update_kernel(lr, weight_decay)

    def invariant(self) -> torch.Tensor:
        held = self._invariant_held().view_as(self.lam)
        if self._active is None:
            return held.flatten(1)
        return self._full(held, self._invariant0, power=2).flatten(1)  # frozen: Σ|Ŵ|² − |λ|² decays by decay²

    def end_to_end_on_data(self) -> torch.Tensor:
        """``c(M)`` on ``data_coordinates`` (restricted only): ``(B, p, 2F_a)``, the real and imaginary parts of ``M̂``."""
        return torch.view_as_real(_cnn_map_hat(self.W_hat, self.lam, out=self._M_active)).view(self.batch, self.p, -1)

    def drift_invariant(self) -> torch.Tensor:
        """Restricted only: ``(B, C·F_a + 1)``, the active invariant and ``‖I_rest(0)‖·decay²``; the frozen
        frequencies' invariant is ``I_f(0)·decay²``, so distances equal those of :meth:`invariant`."""
        rest = self._rest_norm * self._decay**2 if self._decayed else self._rest_norm
        return torch.cat([self._invariant_held(), rest], 1)

    def _invariant_held(self) -> torch.Tensor:
        """``Σ_i|Ŵ_ic|² − |λ_c|²`` at the frequencies held (all, or the active ones), flattened ``(B, ·)``."""
        return (_power(self.W_hat).sum(1) - _power(self.lam)).flatten(1)

    def _lam_all(self) -> torch.Tensor:
        """``λ`` over the whole half-spectrum ``(B, C, n, n//2+1)``."""
        return self.lam if self._active is None else self._full(self.lam, self._lam0, out=self._lam_full)

    def invariant_scale(self) -> torch.Tensor:
        return torch.linalg.vector_norm(_power(self._lam_all()).flatten(1), dim=1)

    def _pixel_kernel(self) -> torch.Tensor:
        return torch.fft.irfft2(self._lam_all(), s=(self.n, self.n)) if self.full else self.kernel

    def weights(self) -> dict[str, torch.Tensor]:
        W_hat = self.W_hat if self._active is None else self._full(self.W_hat, self._W0)
        return {"W": torch.fft.irfft2(W_hat, s=(self.n, self.n)), "kernel": self._pixel_kernel()}

    def kernel_power(self) -> torch.Tensor | None:
        return torch.fft.fft2(self._pixel_kernel()).abs() ** 2


def _power(z: torch.Tensor) -> torch.Tensor:
    """``|z|²`` of a complex tensor (``torch.abs`` of complex is several times slower on the CPU)."""
    return z.real.square() + z.imag.square()


_CUDA_GRAPHS = True  # capture the plain steps of a CUDA run in a graph (set False to run every step eagerly)
_GRAPH_DEVICES = ("cuda",)  # device types whose runs capture (tests add "cpu" with a stand-in capture)


def _capture_cuda_graph(fn: Callable[[], object]) -> Any:
    """``fn`` captured as a ``torch.cuda.CUDAGraph`` (not run), or ``None`` if this device or torch cannot capture it."""
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph
    except Exception:  # noqa: BLE001 - any capture failure falls back to eager steps, which give the same numbers
        return None


def simulate_linear_model(
    data: TrainingSet,
    structure: DatasetStructure,
    model: LinearModel,
    *,
    lr: float,
    steps: int,
    record_every: int = 1,
    record_kernel_power: bool = False,
    weight_decay: float = 0.0,
    seeds: Sequence[int] | None = None,
) -> TrainingRun:
    """Full-batch GD of any :class:`LinearModel`: record ``a_α`` and the loss every ``record_every`` steps (and at the end).

    Each step forms ``c(M)`` (:meth:`LinearModel.end_to_end`), the residual ``c(R) = c(Σ_yx) − c(M)K`` and hands
    it to :meth:`LinearModel.step`. ``K`` is ``Σ_xx`` in the model's coordinates ``(D, D)``, or, when the training
    set has fewer items than pixels (``N < n²``), the product of two ``(D, N)``, ``(N, D)`` factors
    (``MΣ_xx = w (MXᵀ) X``): ``O(B·p·D·min(N, D))`` per step besides the model's own step; no allocation. A model
    with the optional item-factored members (:class:`ItemFactoredModel`) is stepped without ``M`` or ``R`` when
    ``N < n²``: only the errors ``E = w(Yᵀ − MXᵀ)`` ``(B, p, N)`` pass between the loop and the model (and a model
    that names its ``data_coordinates`` is recorded on those only, see :class:`DataSupportedModel`). The mode
    strengths, the loss, the invariant and the kernel power are computed at the recorded steps only; on CUDA the
    steps between two records replay one captured CUDA graph (the same kernels, so the same numbers).

    With ``weight_decay = λ > 0`` it descends ``L + (λ/2)‖θ‖²`` (every parameter); the recorded loss is ``L``.
    ``seeds``: the ``B`` seeds to report in the run (default ``−1`` each: a given init).
    """
    d, p = data.flat_inputs.shape[1], data.targets.shape[1]
    if structure.p != p or structure.n**2 != d:
        raise ValueError(f"structure (p={structure.p}, n²={structure.n**2}) does not match data (p={p}, n²={d})")
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    if not (np.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    g = model.metric
    dtype, dev, B, D = g.dtype, g.device, model.batch, model.dim
    record_device(dev, by="simulate_linear_model")  # the chapter footer reports where the simulation ran
    seed_list = [-1] * B if seeds is None else list(seeds)
    if len(seed_list) != B:
        raise ValueError(f"seeds must name the model's {B} networks, got {len(seed_list)}")

    def coords(a: NDArray[np.floating]) -> torch.Tensor:
        return model.coordinates(torch.as_tensor(np.asarray(a), dtype=dtype, device=dev))

    w = data.item_weight
    S = coords(data.sigma_yx)  # (p, D)
    S_rows = S.repeat(B, 1)  # (B·p, D)
    g_S = g * S
    sigma_xx = data.sigma_xx
    # a_α = Σ_i U_iα ⟨(MΣ_xx)_i, φ_α⟩ = c(M) flattened (B, p·D) @ H
    g_probe = g * coords(structure.phi.reshape(p, d) @ sigma_xx)  # (p, D): c(Σ_xx φ_α)
    U = torch.as_tensor(structure.U, dtype=dtype, device=dev)
    H = (U.T[:, :, None] * g_probe[:, None, :]).reshape(p, p * D)  # used transposed: faster than (p·D, p) in BLAS
    low_rank = data.flat_inputs.shape[0] < d
    factored = low_rank and isinstance(model, ItemFactoredModel)
    if low_rank:  # MΣ_xx = w (M Xᵀ) X: cheaper than a (D, D) product when N < n²
        X = coords(data.flat_inputs)  # (N, D)
        left, right = g * X, w * X  # (N, D) each; left is used transposed (faster in BLAS for small N)
        MX = torch.empty((B * p, X.shape[0]), dtype=dtype, device=dev)
        wYt = (w * torch.as_tensor(data.targets.T, dtype=dtype, device=dev)).expand(B, p, -1).contiguous()
        errors = torch.empty_like(wYt)  # E = w(Yᵀ − MXᵀ), (B, p, N): c(R) = E c(X)
    else:
        basis = model.pixels(torch.eye(D, dtype=dtype, device=dev))  # (D, n²): the image of each coordinate
        K = model.coordinates(basis @ torch.as_tensor(sigma_xx, dtype=dtype, device=dev))  # (D, D)
    y_energy = 0.5 * w * float((data.targets**2).sum())
    on_data = model.data_coordinates if factored and isinstance(model, DataSupportedModel) else None
    if on_data is not None:  # records on the model's data coordinates (LinearModel): the same formulas on D_s of them
        g_r, X_r, S_r = g[on_data], X[:, on_data], S_rows[:, on_data]
        gS_r, H_r = g_S[:, on_data], H.view(p, p, D)[..., on_data].reshape(p, -1)
        R_r = torch.empty((B * p, on_data.numel()), dtype=dtype, device=dev)

    recorded = list(range(0, steps + 1, record_every))
    if recorded[-1] != steps:
        recorded.append(steps)
    strengths = torch.empty((len(recorded), B, p), dtype=dtype, device=dev)
    losses = torch.empty((len(recorded), B), dtype=dtype, device=dev)
    powers: list[torch.Tensor] = []
    invariant0: torch.Tensor | None = None
    drift = torch.zeros(B, dtype=dtype, device=dev)
    R = torch.empty((B * p, D), dtype=dtype, device=dev)

    def residual() -> None:
        """Fill ``errors`` (item-factored) or ``R = c(Σ_yx) − c(M)K`` for the current parameters."""
        if factored:
            torch.add(wYt, model.outputs(left), alpha=-w, out=errors)  # type: ignore[attr-defined]
            return
        M = model.end_to_end().view(B * p, D)
        if low_rank:
            torch.addmm(S_rows, torch.mm(M, left.T, out=MX), right, alpha=-1, out=R)
        else:
            torch.addmm(S_rows, M, K, alpha=-1, out=R)

    def update() -> None:
        if factored:
            model.step_factored(errors, X, lr, weight_decay)  # type: ignore[attr-defined]
        else:
            model.step(R.view(B, p, D), lr, weight_decay)

    graph = None  # on CUDA, the plain steps (between records) replay one captured graph: no per-step launches
    use_graph, eager_steps = dev.type in _GRAPH_DEVICES and _CUDA_GRAPHS, 0
    slot = 0
    for k in range(steps + 1):
        record = k == recorded[slot]
        if not record and use_graph and eager_steps >= 3:
            graph = graph or _capture_cuda_graph(lambda: (residual(), update()))
            if graph is not None:
                graph.replay()
                continue
            use_graph = False
        residual()
        if record and on_data is not None:
            M_r = model.end_to_end_on_data()  # type: ignore[attr-defined]
            M_sxx = (S_r - torch.mm(errors.view(B * p, -1), X_r, out=R_r)).view_as(M_r)
            torch.mm(M_r.reshape(B, -1), H_r.T, out=strengths[slot])
            losses[slot] = y_energy - (M_r * gS_r).sum((1, 2)) + 0.5 * (M_sxx * g_r * M_r).sum((1, 2))
        elif record:
            M = model.end_to_end().view(B * p, D)
            if factored:
                torch.mm(errors.view(B * p, -1), X, out=R)
            M_sxx = (S_rows - R).view(B, p, D)
            M3 = M.view(B, p, D)
            torch.mm(M.view(B, p * D), H.T, out=strengths[slot])
            losses[slot] = y_energy - (M3 * g_S).sum((1, 2)) + 0.5 * (M_sxx * g * M3).sum((1, 2))
        if record:
            invariant = model.drift_invariant() if on_data is not None else model.invariant()  # type: ignore
            if invariant0 is None:
                invariant0 = invariant
            drift = torch.maximum(drift, torch.linalg.vector_norm(invariant - invariant0, dim=1))
            if record_kernel_power:
                power = model.kernel_power()
                if power is None:
                    raise ValueError("record_kernel_power=True needs a model with a kernel (a CNN)")
                powers.append(power)
            slot += 1
        if k == steps:
            break
        update()
        eager_steps += 1
    return TrainingRun(
        seeds=np.asarray(seed_list, dtype=np.int64),
        steps=np.asarray(recorded, dtype=np.int64),
        mode_strength=strengths.cpu().numpy(),
        loss=losses.cpu().numpy(),
        invariant_drift=(drift / model.invariant_scale()).cpu().numpy(),
        weights={name: value.cpu().numpy() for name, value in model.weights().items()},
        s=np.asarray(structure.s, dtype=float),
        end_to_end=model.pixels((model.end_to_end() if on_data is not None else M).view(B, p, D)).cpu().numpy(),
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
    from .theory import check_learning_rate  # refuses η·G ≥ 1 (period-2 oscillation instead of stages)
    check_learning_rate(lr, structure, "fcnn") if isinstance(lr, (int, float, np.floating)) and 0 < lr < float("inf") else None
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
    model = _FCNN(*(torch.as_tensor(x, dtype=dtype, device=torch.device(device)) for x in (W1_0, W2_0)))
    return simulate_linear_model(
        data, structure, model, lr=lr, steps=steps, record_every=record_every, weight_decay=weight_decay, seeds=seed_list
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
    restrict_frequencies: bool = True,
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
        restrict_frequencies: with a full-size kernel, step only the frequencies at which the data have power
            (:func:`_data_frequencies`); the others provably stay at their initial values (times ``(1 − ηλ)^t``
            with weight decay) and never reach the outputs, so the run is the same up to float rounding, at a
            cost per step proportional to the number of active frequencies ``F_a`` instead of ``n(n//2+1)``.
            ``False`` steps every frequency (for comparison; the benchmark reports both).
    """
    from .theory import check_learning_rate  # refuses η·G ≥ 1 (period-2 oscillation instead of stages)
    check_learning_rate(lr, structure, "cnn") if isinstance(lr, (int, float, np.floating)) and 0 < lr < float("inf") else None
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
    active = _data_frequencies(data.inputs) if k == n and restrict_frequencies else None
    model = _CNN(*(torch.as_tensor(x, dtype=dtype, device=dev) for x in (W0, r0)), kernel_size=k, active=active)
    return simulate_linear_model(
        data, structure, model, lr=lr, steps=steps, record_every=record_every,
        record_kernel_power=record_kernel_power, weight_decay=weight_decay, seeds=seed_list,
    )


def _data_frequencies(images: NDArray[np.floating]) -> NDArray[np.bool_]:
    """The ``(n, n//2+1)`` mask of the ``rfft2`` half-spectrum frequencies at which the items ``(N, n, n)`` have power.

    Active: ``P_f = Σ_μ |x̂_μf|² > N·(n²·ε)²·max_f P_f`` with ``ε`` the machine epsilon of the images' dtype. The
    threshold is the rounding level of the transform: an ``n²``-point FFT computes each coefficient with an error
    ``‖δx̂‖₂ ≲ log₂(n²)·ε·‖x̂‖₂ ≤ log₂(n²)·ε·n·max_f|x̂_f|`` (Parseval over ``n²`` frequencies), so
    ``|δx̂_f| ≤ n²·ε·max_f|x̂_f|`` (``log₂(n²) ≤ n``), and summed over the items
    ``Σ_μ|δx̂_μf|² ≤ (n²ε)²·Σ_μ max_f|x̂_μf|² ≤ N·(n²ε)²·max_f P_f``. A frequency below it carries only rounding
    (on D1, n = 8 to 64: at most 1e-31 of the largest power, against the threshold 6e-28 to 2e-24; the active
    ones are at least 0.19 of it). All-zero images: every frequency (nothing to restrict).
    """
    images = np.asarray(images)
    N, n = images.shape[0], images.shape[-1]
    power = (np.abs(np.fft.rfft2(images.reshape(N, n, n))) ** 2).sum(0)
    largest = power.max()
    if not largest > 0:
        return np.ones_like(power, dtype=bool)
    return power > N * (n * n * np.finfo(images.dtype).eps) ** 2 * largest


def measure_transitions(
    steps: NDArray[np.integer], strength: NDArray[np.floating], s: NDArray[np.floating]
) -> pd.DataFrame:
    """Stage timing of each trajectory: first steps above 10 %, 50 %, 90 % of ``s_α``, and the width (on a coarser
    record grid, :func:`crossing_steps` interpolates between records).

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


def crossing_steps(
    steps: NDArray[np.integer], strength: NDArray[np.floating], s: NDArray[np.floating], level: float = 0.5
) -> NDArray[np.floating]:
    """Where each trajectory first crosses ``level·s_α``, linearly interpolated between the two records around the
    crossing: ``t = t_{i−1} + (level − f_{i−1})/(f_i − f_{i−1})·(t_i − t_{i−1})`` with ``f = a/s`` and ``i`` the first
    record above the level. (:func:`measure_transitions` reports the first recorded step above it instead, exact
    only when every step is recorded.)

    For a logistic of rate ``κ`` recorded every ``Δ`` steps the midpoint (``level = ½``) is off by at most
    ``κΔ²/(12√3)`` steps: the interpolation error ``Δ²/8·max|f''|`` with ``max|f''| = κ²/(6√3)``, divided by the
    slope ``κ/4`` at the midpoint.

    Args:
        steps: ``(T,)`` recorded steps, increasing.
        strength: ``(T, B, p)`` mode strengths.
        s: ``(p,)`` asymptotes.
        level: the fraction of ``s_α`` in ``(0, 1)``.
    Returns ``(B, p)`` crossing steps (floats). Raises ``ValueError`` if a trajectory starts above the level or
    never reaches it.
    """
    if strength.ndim != 3 or strength.shape[0] != steps.shape[0] or strength.shape[2] != s.shape[0]:
        raise ValueError(f"strength must be (T, B, p) matching steps {steps.shape} and s {s.shape}, got {strength.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    frac = strength / s  # (T, B, p)
    out = np.empty(strength.shape[1:])
    for b in range(strength.shape[1]):
        for alpha in range(strength.shape[2]):
            f = frac[:, b, alpha]
            above = np.flatnonzero(f > level)
            if above.size == 0 or above[0] == 0:
                where = "never reaches it" if above.size == 0 else "is above it at the first record"
                raise ValueError(f"mode {alpha + 1} of network {b} {where} ({level:.0%} of s, steps {steps[0]}–"
                                 f"{steps[-1]}): record from step 0 and run longer")
            i = above[0]
            out[b, alpha] = steps[i - 1] + (level - f[i - 1]) / (f[i] - f[i - 1]) * (steps[i] - steps[i - 1])
    return out


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
