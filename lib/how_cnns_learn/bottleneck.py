"""Emergent convolution bottleneck (Wen & Jacot 2024): deep circular CNNs in Fourier coordinates.

The central object is a **depth-L circular CNN with full-size filters** acting on signals
``x ∈ R^{C_0 × d}`` (1-D) or images ``x ∈ R^{C_0 × d × d}`` (2-D): layer ``ℓ`` has filters
``W_ℓ`` of shape ``(C_ℓ, C_{ℓ−1}, *spatial)`` whose support is the whole signal, an optional per-channel
bias ``b_ℓ ∈ R^{C_ℓ}`` (spatially constant, so it lives at frequency 0) and an optional ReLU (all layers but the
last). Its parameter norm is ``‖θ‖² = Σ_ℓ ‖W_ℓ‖_F² + ‖b_ℓ‖²`` (what weight decay penalises).

**Convention.** The book's one DFT (:mod:`~how_cnns_learn.fourier`): the *unnormalised* DFT along space,
``x̂[c, m] = Σ_j x[c, j] e^{−2πi jm/d}`` (:func:`~how_cnns_learn.fourier.dft` over the last one or two axes; every
transform of this module goes through :mod:`~how_cnns_learn.fourier`). The layer is a true circular convolution
``y[c, j] = Σ_{c', k} W[c, c', k] x[c', (j − k) mod d]``, so, frequency by frequency,

    ŷ[:, m] = Ŵ_m x̂[:, m],      Ŵ_m = Σ_k W[:, :, k] e^{−2πi km/d} ∈ C^{C_ℓ × C_{ℓ−1}},

and Parseval reads ``‖W‖_F² = (1/d) Σ_m ‖Ŵ_m‖_F²`` (the sum runs over all ``d`` frequencies ``m = 0 … d−1``).
Per-frequency blocks are returned as arrays of shape ``(F, C_out, C_in)``, ``F = d`` (1-D) or ``d²`` (2-D,
row-major over ``(m_1, m_2)``). Real filters give Hermitian pairs ``Ŵ_{d−m} = conj(Ŵ_m)`` with equal singular values.

**Representation cost of a linear map.** A linear, translation-equivariant ``H`` is a family of ``d`` independent
matrices ``Ĥ_m``; with the deep-linear identity ``min{Σ_ℓ ‖A_ℓ‖_F² : A_L⋯A_1 = A} = L Σ_i s_i(A)^{2/L}``
applied at each frequency and Parseval,

    R(H; L) = (L/d) Σ_{m=0}^{d−1} Σ_i s_i(Ĥ_m)^{2/L} = L·R⁽⁰⁾ + R⁽¹⁾ + O(1/L),
    R⁽⁰⁾ = (1/d) Σ_m rank Ĥ_m,   R⁽¹⁾ = (2/d) Σ_m Σ_{i ≤ rank Ĥ_m} log s_i(Ĥ_m).

We call ``Σ_{m=0}^{d−1} rank Ĥ_m`` the **CBN rank** of ``H``: a conjugate pair ``±m`` (``m ≠ 0, d/2``) counts
twice, ``m = 0`` and ``m = d/2`` once, so the CBN rank equals the real dimension of the band the map keeps
(``{0, ±1, ±2}`` → 5). This counting is *our choice*; the paper's definition ("the number and type of frequencies")
could not be read (research notes §6, open item 1).

**Weight decay** follows the book's one convention (:mod:`~how_cnns_learn.training`): ``weight_decay = λ`` is the
penalty ``(λ/2)‖θ‖²``. Networks are trained with :func:`~how_cnns_learn.training.train_weight_decay`; many *linear*
networks on the population loss at once with :func:`train_linear_cnns` (networks of equal shape stacked along a
leading axis, one Adam: the same iterates as training each alone, up to float rounding). The networks and data of
this module take ``device``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from .fourier import dft, idft, irdft, power_spectrum, rdft
from .repro import check_device, record_device
from .training import plain_optimiser

__all__ = [
    "CIRCULANT_MAX_POSITIONS",
    "CircularCNN",
    "activation_power_spectrum",
    "balanced_factorisation",
    "band_mask",
    "band_power_fraction",
    "circular_conv",
    "conjugate_classes_2d",
    "conv_matrix",
    "cost_expansion",
    "downsample",
    "effective_number",
    "end_to_end_blocks",
    "frequency_blocks",
    "frequency_singular_values",
    "gaussian_signals",
    "lowpass",
    "lowpass_blocks",
    "population_mse",
    "regularised_optimum_cost",
    "representation_cost",
    "train_linear_cnns",
    "transplant_to_half_resolution",
    "upsample",
]


# ----------------------------------------------------------------------------------------------- the convolution
def _spatial_dims(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0))


#: Largest number of spatial positions ``F`` for which :func:`circular_conv` multiplies by the explicit
#: block-circulant matrix (``F²·C_out·C_in`` entries) instead of going through the FFT.
CIRCULANT_MAX_POSITIONS = 64

_SELECTORS: dict[tuple[tuple[int, ...], torch.dtype, torch.device], torch.Tensor] = {}


def _circulant_selector(size: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``P`` of shape ``(F, F·F)``, ``P[k, j·F + l] = 1`` iff ``k ≡ j − l`` (per spatial axis, mod its length)."""
    key = (size, dtype, device)
    if key not in _SELECTORS:
        grids = torch.meshgrid(*[torch.arange(n) for n in size], indexing="ij")
        k = torch.zeros((), dtype=torch.long)
        for g, n in zip(grids, size):
            a = g.reshape(-1)
            k = k * n + (a[:, None] - a[None, :]) % n        # (F, F): flat index of (j − l) mod size
        F = math.prod(size)
        P = torch.zeros(F, F * F, dtype=dtype)
        P[k.reshape(-1), torch.arange(F * F)] = 1
        _SELECTORS[key] = P.to(device)
    return _SELECTORS[key]


def circular_conv(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Full-size circular convolution, ``ŷ[:, m] = Ŵ_m x̂[:, m]`` in Fourier coordinates.

    Small signals (``F = d`` or ``d² ≤`` :data:`CIRCULANT_MAX_POSITIONS`) are multiplied by the explicit
    block-circulant matrix ``A[(c, j), (c', l)] = W[c, c', (j − l) mod d]`` (two real matrix products, exact entries:
    at these sizes faster than the FFT and its backward on the CPU); larger ones go through the real FFT, one
    matrix product per frequency. Both compute the same map (unit test, float64 ≤ 1e-12).

    Args:
        x: ``(N, C_in, d)`` or ``(N, C_in, d, d)``.
        W: ``(C_out, C_in, d)`` or ``(C_out, C_in, d, d)``, the same spatial shape as ``x``.
    Returns:
        ``(N, C_out, *spatial)``, ``y[n, c, j] = Σ_{c', k} W[c, c', k] x[n, c', (j − k) mod d]``.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(W, torch.Tensor):
        raise TypeError(f"x and W must be torch tensors, got {type(x).__name__} and {type(W).__name__}")
    ns = W.ndim - 2
    if ns not in (1, 2) or x.ndim != ns + 2:
        raise ValueError(f"need x (N, C_in, *spatial) and W (C_out, C_in, *spatial) with 1 or 2 spatial dims, "
                         f"got x {tuple(x.shape)} and W {tuple(W.shape)}")
    if x.shape[1] != W.shape[1] or x.shape[2:] != W.shape[2:]:
        raise ValueError(f"x {tuple(x.shape)} does not fit W {tuple(W.shape)}: channels and spatial size must match "
                         "(filters are full-size)")
    size = tuple(x.shape[2:])
    co, ci, F = W.shape[0], W.shape[1], math.prod(size)
    if F <= CIRCULANT_MAX_POSITIONS:
        P = _circulant_selector(size, W.dtype, W.device)
        A = (W.reshape(co * ci, F) @ P).reshape(co, ci, F, F).permute(0, 2, 1, 3).reshape(co * F, ci * F)
        return (x.reshape(x.shape[0], ci * F) @ A.T).reshape(x.shape[0], co, *size)
    xh = rdft(x, ns)  # (N, C_in, *freq)
    wh = rdft(W, ns)  # (C_out, C_in, *freq)
    freq = xh.shape[2:]
    # one matrix product per frequency: (F, N, C_in) @ (F, C_in, C_out)
    yh = xh.flatten(2).permute(2, 0, 1) @ wh.flatten(2).permute(2, 1, 0)
    return irdft(yh.permute(1, 2, 0).reshape(x.shape[0], W.shape[0], *freq), size, ns)


def conv_matrix(W: NDArray[np.floating]) -> NDArray[np.floating]:
    """The explicit block-circulant matrix of a 1-D full-size circular convolution (reference implementation).

    ``W``: ``(C_out, C_in, d)``. Returns ``A`` of shape ``(C_out·d, C_in·d)`` with
    ``A[c·d + j, c'·d + l] = W[c, c', (j − l) mod d]``, so ``vec(y) = A vec(x)`` (channel-major).
    """
    W = np.asarray(W, dtype=float)
    if W.ndim != 3:
        raise ValueError(f"W must have shape (C_out, C_in, d), got {W.shape}")
    co, ci, d = W.shape
    j = np.arange(d)
    idx = (j[:, None] - j[None, :]) % d  # (d, d)
    return W[:, :, idx].transpose(0, 2, 1, 3).reshape(co * d, ci * d)


def frequency_blocks(W: torch.Tensor | NDArray[np.floating]) -> NDArray[np.complexfloating]:
    """Per-frequency weight blocks ``Ŵ_m`` (unnormalised full DFT along space), shape ``(F, C_out, C_in)``.

    ``W``: ``(C_out, C_in, d)`` (``F = d``) or ``(C_out, C_in, d, d)`` (``F = d²``, row-major over ``(m_1, m_2)``).
    """
    arr = W.detach().cpu().numpy() if isinstance(W, torch.Tensor) else np.asarray(W)
    if arr.ndim not in (3, 4):
        raise ValueError(f"W must have shape (C_out, C_in, *spatial) with 1 or 2 spatial dims, got {arr.shape}")
    hat = dft(arr, arr.ndim - 2)
    return np.moveaxis(hat.reshape(arr.shape[0], arr.shape[1], -1), -1, 0)


def frequency_singular_values(W: torch.Tensor | NDArray[np.floating]) -> NDArray[np.floating]:
    """Singular values of every block ``Ŵ_m``, descending: shape ``(F, min(C_out, C_in))``."""
    return np.linalg.svd(frequency_blocks(W), compute_uv=False)


def end_to_end_blocks(filters: Sequence[torch.Tensor | NDArray[np.floating]]) -> NDArray[np.complexfloating]:
    """``Ĥ_m = Ŵ_{L,m} ⋯ Ŵ_{1,m}`` of a linear CNN given its filters (first layer first), ``(F, C_L, C_0)``."""
    if len(filters) == 0:
        raise ValueError("need at least one layer")
    H = frequency_blocks(filters[0])
    for W in filters[1:]:
        Wh = frequency_blocks(W)
        if Wh.shape[0] != H.shape[0] or Wh.shape[2] != H.shape[1]:
            raise ValueError(f"layer blocks {Wh.shape} do not chain with {H.shape}")
        H = Wh @ H
    return H


# ------------------------------------------------------------------------------------------- the closed forms
def _check_blocks(H_hat: NDArray[np.complexfloating]) -> NDArray[np.complexfloating]:
    H = np.asarray(H_hat)
    if H.ndim != 3 or H.shape[0] < 1:
        raise ValueError(f"H_hat must have shape (F, C_out, C_in), got {H.shape}")
    if not np.all(np.isfinite(H)):
        raise ValueError("H_hat contains NaN or infinite values")
    return H


def representation_cost(H_hat: NDArray[np.complexfloating], L: int) -> float:
    """Minimal parameter norm of a depth-``L`` linear circular CNN computing ``H``: ``(L/F) Σ_m Σ_i s_i(Ĥ_m)^{2/L}``.

    ``H_hat``: ``(F, C_out, C_in)`` blocks over *all* ``F`` frequencies (the unnormalised DFT convention above).
    """
    if not isinstance(L, (int, np.integer)) or isinstance(L, bool) or L < 1:
        raise ValueError(f"depth L must be a positive integer, got {L!r}")
    H = _check_blocks(H_hat)
    s = np.linalg.svd(H, compute_uv=False)
    return float(L / H.shape[0] * np.sum(s ** (2.0 / L)))


def cost_expansion(H_hat: NDArray[np.complexfloating], rank_tol: float = 1e-9) -> tuple[float, float, int]:
    """``(R⁽⁰⁾, R⁽¹⁾, CBN rank)`` of ``H``: ``R⁽⁰⁾ = rank/F``, ``R⁽¹⁾ = (2/F) Σ log s_i`` over the nonzero ``s_i``.

    A singular value counts as nonzero when it exceeds ``rank_tol`` times the largest one.
    """
    H = _check_blocks(H_hat)
    s = np.linalg.svd(H, compute_uv=False)
    kept = s > rank_tol * max(float(s.max()), np.finfo(float).tiny)
    rank = int(kept.sum())
    return rank / H.shape[0], float(2.0 / H.shape[0] * np.log(s[kept]).sum()), rank


def regularised_optimum_cost(
    targets: NDArray[np.floating], L: int, weight_decay: float, F: int
) -> tuple[NDArray[np.floating], float, float]:
    """Exact optimum of ``(1/F) Σ_m [(s_m^L − t_m)² + (λ/2) L s_m²]`` over balanced ``s_m ≥ 0``: ``(s, ‖θ‖², MSE·C_out)``.

    The population objective ``MSE + (λ/2)‖θ‖²`` (``λ = weight_decay``, the book's one convention; what
    :func:`~how_cnns_learn.training.train_weight_decay` minimises with :func:`population_mse`) of a depth-``L``
    linear CNN whose target blocks have singular values ``t`` (one per kept (frequency, channel) pair; the ``F``
    frequencies without any contribute 0). Returns the per-layer singular values ``s`` (0 where weight decay removes
    the frequency), ``‖θ‖² = (L/F) Σ s_m²`` and the data term ``(1/F) Σ (s_m^L − t_m)²`` at the optimum
    (golden-section search; the objective is unimodal on ``s > 0``, and ``s = 0`` is taken when it is lower).
    """
    t = np.asarray(targets, dtype=float).reshape(-1)
    if weight_decay <= 0 or L < 1 or F < 1 or np.any(t < 0):
        raise ValueError(f"need weight_decay > 0, L >= 1, F >= 1 and targets >= 0, got weight_decay={weight_decay}, "
                         f"L={L}, F={F}")
    lam = weight_decay / 2  # the penalty (λ/2)‖θ‖²
    norm, err, out = 0.0, 0.0, []
    for tm in t:
        def f(s: float, tm: float = tm) -> float:
            return (s**L - tm) ** 2 + lam * L * s**2
        lo, hi = 0.0, max(tm, 1.0) ** (1.0 / L) * 1.5
        g = (math.sqrt(5) - 1) / 2
        for _ in range(200):
            a, b = hi - g * (hi - lo), lo + g * (hi - lo)
            if f(a) < f(b):
                hi = b
            else:
                lo = a
        s = 0.5 * (lo + hi)
        s = s if f(s) < f(0.0) else 0.0
        out.append(s)
        norm += L * s**2 / F
        err += (s**L - tm) ** 2 / F
    return np.array(out), norm, err


def balanced_factorisation(H_hat: NDArray[np.complexfloating], L: int, width: int) -> list[NDArray[np.floating]]:
    """Real 1-D filters of the minimal-norm depth-``L`` CNN computing ``H`` (each layer ``Ŵ_ℓ,m`` has s.v. ``s^{1/L}``).

    Per frequency ``Ĥ_m = U S V^H``: ``Ŵ_1 = S^{1/L} V^H``, ``Ŵ_ℓ = S^{1/L}`` (middle), ``Ŵ_L = U S^{1/L}``, padded to
    ``width`` channels; the SVD at ``d − m`` is the conjugate of the one at ``m``, so the filters are real.
    Returns ``L`` filters ``(C_ℓ, C_{ℓ−1}, d)`` with ``C_0, C_L`` from ``H_hat`` and ``C_ℓ = width`` in between.
    """
    H = _check_blocks(H_hat)
    d, co, ci = H.shape
    if L < 2 or width < min(co, ci):
        raise ValueError(f"need L >= 2 and width >= min(C_out, C_in) = {min(co, ci)}, got L={L}, width={width}")
    r = min(co, ci)
    blocks = [np.zeros((d, width, ci), complex)] + [np.zeros((d, width, width), complex) for _ in range(L - 2)]
    blocks.append(np.zeros((d, co, width), complex))
    for m in range(d // 2 + 1):
        U, s, Vh = np.linalg.svd(H[m], full_matrices=False)
        if m == 0 or 2 * m == d:  # real blocks: a real SVD keeps the filters real
            U, s, Vh = np.linalg.svd(H[m].real, full_matrices=False)
        root = np.diag(s ** (1.0 / L))
        layer_blocks = [root @ Vh] + [root] * (L - 2) + [U @ root]
        for ell, B in enumerate(layer_blocks):
            target = blocks[ell]
            if ell == 0:
                target[m, :r, :] = B
            elif ell == L - 1:
                target[m, :, :r] = B
            else:
                target[m, :r, :r] = B
            if 0 < m and 2 * m != d:
                target[d - m] = np.conj(target[m])
    return [idft(np.moveaxis(B, 0, -1), 1).real for B in blocks]


# ---------------------------------------------------------------------------------------------- resolution changes
def downsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Keep every ``factor``-th sample along the last axis: ``x[..., ::factor]`` (commutes with a pointwise ReLU)."""
    if x.shape[-1] % factor:
        raise ValueError(f"length {x.shape[-1]} is not divisible by factor {factor}")
    return x[..., ::factor]


def upsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Band-limited interpolation along the last axis (zero-padding in Fourier), with ``upsample(x)[..., ::f] == x``.

    For a signal of length ``n`` whose band is ``|m| < n/2`` this is the ideal (Nyquist) interpolation; the
    Nyquist bin of an even ``n`` is split evenly between ``±n/2`` of the fine grid.
    """
    n = x.shape[-1]
    xh = rdft(x, 1) * factor
    if n % 2 == 0:
        xh = torch.cat([xh[..., :-1], xh[..., -1:] / 2], dim=-1)
    return irdft(xh, n * factor, 1)


# --------------------------------------------------------------------------------------------------- the network
class CircularCNN(torch.nn.Module):
    """A depth-``L`` circular CNN with full-size filters (linear or ReLU, optional biases, optional head).

    Args:
        widths: ``(C_0, C_1, …, C_L)`` channel counts; ``L = len(widths) − 1`` conv layers.
        size: spatial length ``d`` (1-D) or ``(d, d)`` (2-D).
        relu: ReLU after every conv layer but the last (with ``head``: after every conv layer).
        bias: per-channel, spatially constant biases.
        downsample: 1-D only; ``(first, last)``: conv layers ``first … last`` (``2 ≤ first ≤ last ≤ L − 1``) run at
            half resolution ``d/2`` with full-size filters of length ``d/2``: the activation of layer ``first − 1``
            is subsampled (:func:`downsample`), the input of layer ``last + 1`` is band-limited upsampled
            (:func:`upsample`). A coarse layer applies ``sqrt(2)·V`` for its parameter ``V``: then ``‖V‖²`` equals
            ``(1/d) Σ_m ‖Ŵ_m‖_F²`` over its ``d/2`` frequencies, the same Fourier-coordinate cost as a fine layer
            with the same blocks (the fine filter that acts identically on band-limited signals has half the norm
            of the coarse one).
        head: if given, a linear map from the last conv layer to ``head`` outputs (logits), after ``pool``.
        pool: ``"mean"`` (global average pooling: the head reads frequency 0 only) or ``"flatten"`` (the head reads
            the whole last activation, ``C_L · d^k`` features).
        init_scale: filters start as ``init_scale · N(0, 1)/sqrt(d_ℓ)`` (``d_ℓ`` the layer's filter size), biases 0.
        seed: seed of the initial weights. ``dtype``: float64 by default (precision claims).
        device: where the parameters live (drawn on the CPU from ``seed``, then moved: the same network anywhere).
    """

    def __init__(
        self,
        widths: Sequence[int],
        size: int | tuple[int, int],
        *,
        relu: bool = False,
        bias: bool = False,
        downsample: tuple[int, int] | None = None,
        head: int | None = None,
        pool: Literal["mean", "flatten"] = "mean",
        init_scale: float = 0.3,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        dev = check_device(device)
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths must list at least 2 positive channel counts, got {widths}")
        spatial = (size,) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
        if len(spatial) not in (1, 2) or min(spatial) < 2:
            raise ValueError(f"size must be d >= 2 or (d, d), got {size!r}")
        if downsample is not None:
            first, last = downsample
            if len(spatial) != 1 or spatial[0] % 2 or not 2 <= first <= last <= len(widths) - 2:
                raise ValueError(f"downsample=(first, last) needs 1-D signals of even length and "
                                 f"2 <= first <= last <= L - 1, got size={size!r}, downsample={downsample!r}, "
                                 f"L={len(widths) - 1}")
        if pool not in ("mean", "flatten"):
            raise ValueError(f"pool must be 'mean' or 'flatten', got {pool!r}")
        if init_scale <= 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        self.widths, self.spatial, self.relu, self.downsample = widths, spatial, relu, downsample
        self.L = len(widths) - 1
        gen = torch.Generator().manual_seed(int(seed))
        self.filters = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList() if bias else None
        for ell in range(self.L):
            sp = self.layer_size(ell + 1)
            numel = math.prod(sp)
            w = torch.randn(widths[ell + 1], widths[ell], *sp, generator=gen, dtype=dtype)
            w = init_scale * w / math.sqrt(numel)
            self.filters.append(torch.nn.Parameter(w))
            if self.biases is not None:
                self.biases.append(torch.nn.Parameter(torch.zeros(widths[ell + 1], dtype=dtype)))
        self.head, self.pool = None, pool
        if head is not None:
            features = widths[-1] * (math.prod(spatial) if pool == "flatten" else 1)
            lin = torch.nn.Linear(features, int(head), dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen, dtype=dtype) / math.sqrt(features))
                lin.bias.zero_()
            self.head = lin
        self.to(dev)

    def layer_size(self, ell: int) -> tuple[int, ...]:
        """Spatial size on which conv layer ``ell`` (1-based) acts."""
        if self.downsample is not None and self.downsample[0] <= ell <= self.downsample[1]:
            return (self.spatial[0] // 2,)
        return self.spatial

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[α_1, …, α_L]``: post-nonlinearity activations of every conv layer (``α_L`` the conv output)."""
        if x.ndim != len(self.spatial) + 2 or tuple(x.shape[1:]) != (self.widths[0], *self.spatial):
            raise ValueError(f"input must have shape (N, {self.widths[0]}, {', '.join(map(str, self.spatial))}), "
                             f"got {tuple(x.shape)}")
        out, a = [], x
        coarse = self.downsample if self.downsample is not None else (0, -1)
        for ell in range(1, self.L + 1):
            if ell == coarse[1] + 1:
                a = upsample(a)
            w = self.filters[ell - 1]
            z = circular_conv(a, math.sqrt(2.0) * w if coarse[0] <= ell <= coarse[1] else w)
            if self.biases is not None:
                z = z + self.biases[ell - 1].view(-1, *([1] * len(self.spatial)))
            if self.relu and (ell < self.L or self.head is not None):
                z = torch.relu(z)
            if ell == coarse[0] - 1:
                z = downsample(z)
            out.append(z)
            a = z
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output ``(N, C_L, *spatial)``; with a head, logits ``(N, head)``."""
        a = self.activations(x)[-1]
        if self.head is not None:
            pooled = a.mean(dim=_spatial_dims(len(self.spatial))) if self.pool == "mean" else a.flatten(1)
            return self.head(pooled)
        return a

    def sq_norm(self) -> torch.Tensor:
        """``‖θ‖²``: the sum of squares of all parameters (filters, biases, head)."""
        return sum((p**2).sum() for p in self.parameters())  # type: ignore[return-value]

    def filter_sq_norms(self) -> NDArray[np.floating]:
        """``‖W_ℓ‖_F²`` per conv layer, ``(L,)``."""
        return np.array([float((w.detach() ** 2).sum()) for w in self.filters])


def transplant_to_half_resolution(model: CircularCNN, downsample: tuple[int, int]) -> CircularCNN:
    """The same network with conv layers ``downsample[0] … downsample[1]`` moved to half resolution (Nyquist).

    A coarse layer gets the blocks ``Ŵ'_m = Ŵ_m`` for ``|m| < d/4`` and the real part of ``Ŵ_{d/4}`` at the coarse
    Nyquist frequency, stored as ``V = w'/√2`` (see :class:`CircularCNN`); the other layers and all biases are copied.
    On activations band-limited to ``|m| < d/4`` the result computes exactly what ``model`` computes (unit test).
    """
    if model.downsample is not None or len(model.spatial) != 1 or model.head is not None:
        raise ValueError("transplant needs a full-resolution 1-D model without head")
    d = model.spatial[0]
    out = CircularCNN(model.widths, d, relu=model.relu, bias=model.biases is not None, downsample=downsample,
                      dtype=model.filters[0].dtype, device=model.filters[0].device)
    with torch.no_grad():
        for ell, (w_new, w_old) in enumerate(zip(out.filters, model.filters), start=1):
            if downsample[0] <= ell <= downsample[1]:
                wh = rdft(w_old, 1)[..., : d // 4 + 1].clone()
                wh[..., -1] = wh[..., -1].real
                w_new.copy_(irdft(wh, d // 2, 1) / math.sqrt(2.0))
            else:
                w_new.copy_(w_old)
        if model.biases is not None and out.biases is not None:
            for b_new, b_old in zip(out.biases, model.biases):
                b_new.copy_(b_old)
    return out


# ------------------------------------------------------------------------------------------------- losses and data
def population_mse(model: CircularCNN, target_blocks: NDArray[np.complexfloating] | torch.Tensor) -> torch.Tensor:
    """Exact population MSE of a *linear* bias-free model for ``x ~ N(0, I)``: ``Σ_m ‖Ĥ_m − Ĥ*_m‖_F² / (C_L·F)``.

    Because ``E‖Ax‖² = ‖A‖_F²`` for ``x ~ N(0, I)`` and the block-circulant ``A`` has ``‖A‖_F² = Σ_m ‖Â_m‖_F²``,
    this equals ``E_x mean_{c, j} (f_θ(x) − H* x)²`` exactly (unit test ``test_population_mse_is_exact``).
    Differentiable in the filters (autograd through ``torch.fft``).
    """
    if model.relu or model.biases is not None or model.head is not None or model.downsample is not None:
        raise ValueError("population_mse needs a linear model without biases, head or downsampling")
    F = math.prod(model.spatial)
    device = model.filters[0].device
    target = torch.as_tensor(np.asarray(target_blocks), dtype=torch.complex128).to(device)
    if tuple(target.shape) != (F, model.widths[-1], model.widths[0]):
        raise ValueError(f"target blocks must have shape ({F}, {model.widths[-1]}, {model.widths[0]}), "
                         f"got {tuple(target.shape)}")
    H = None
    for w in model.filters:
        wh = dft(w, len(model.spatial)).reshape(w.shape[0], w.shape[1], F).permute(2, 0, 1)
        H = wh if H is None else wh @ H
    assert H is not None
    diff = H - target.to(H.dtype)
    return (diff.abs() ** 2).sum() / (model.widths[-1] * F)


def _dft_matrix(spatial: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``E`` of shape ``(F, F)`` with ``Ŵ[..., m] = Σ_k W[..., k] E[k, m]`` (the book's DFT, flattened row-major)."""
    F = math.prod(spatial)
    E = dft(np.eye(F).reshape(F, *spatial), len(spatial)).reshape(F, F)
    return torch.as_tensor(E, dtype=dtype, device=device)


def _conjugate_index(spatial: tuple[int, ...]) -> NDArray[np.int_]:
    """``(F,)``: the flat (row-major) index of the frequency ``−m`` for every flat frequency ``m``."""
    grids = np.meshgrid(*[np.arange(n) for n in spatial], indexing="ij")
    return np.ravel_multi_index([(-g.ravel()) % n for g, n in zip(grids, spatial)], spatial)


def _conjugate_half(spatial: tuple[int, ...]) -> tuple[NDArray[np.int_], NDArray[np.floating]]:
    """One flat frequency ``m`` per conjugate pair ``{m, −m}`` (the self-conjugate ones included) and its
    multiplicity (2 for a pair, 1 for ``m = −m``): a sum over all ``F`` frequencies of a quantity equal at ``m`` and
    ``−m`` is the weighted sum over these."""
    conj = _conjugate_index(spatial)
    m = np.arange(conj.size)
    half = m[m <= conj]
    return half, np.where(conj[half] == half, 1.0, 2.0)


def train_linear_cnns(
    nets: Sequence[CircularCNN],
    targets: Sequence[NDArray[np.complexfloating]],
    *,
    weight_decay: float | Sequence[float],
    steps: int,
    lr: float,
    lr_final: float | None = None,
    optimizer: Literal["adam", "gd"] = "adam",
    record_every: int | None = None,
    on_record: Callable[[CircularCNN], Mapping[str, Any]] | None = None,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Train many linear bias-free CNNs on their population losses with weight decay, all at once (full-batch Adam).

    Network ``n`` minimises ``population_mse(nets[n], targets[n]) + (λ_n/2)‖θ_n‖²`` (:func:`population_mse`; the
    book's weight-decay convention, ``λ_n = weight_decay`` or ``weight_decay[n]``) for ``steps`` Adam steps with the
    learning rate decaying geometrically from ``lr`` to ``lr_final`` (default constant), or plain gradient descent
    (``optimizer="gd"``): the same objective, optimiser, schedule and recording as
    :func:`~how_cnns_learn.training.train_weight_decay` run on each network alone. Networks of equal
    type (``C_0, w, C_L``, size, dtype) are stacked along a leading network axis, the shallower ones padded with exact
    identity blocks; the objective is the *sum* of the networks' objectives, so each network's gradient is its own,
    and Adam is elementwise, so the iterates equal the one-network trainer's up to float rounding (unit test, float64
    ≤ 1e-10). Each step multiplies the filters by the DFT matrix, chains the ``(F, C_out, C_in)`` blocks of every
    stack and runs the chain back for the gradient (written out, no autograd graph: half the time of autograd on the
    CPU), then one optimiser step for all (:func:`~how_cnns_learn.training.plain_optimiser`: torch's arithmetic, no
    ``torch.optim`` object, whose first construction in a process imports ``torch._dynamo``, about 1.4 s).

    Args:
        nets: linear :class:`CircularCNN` s without biases, head or downsampling, widths ``(C_0, w, …, w, C_L)``
            with ``L ≥ 2`` (any depths); their filters are overwritten with the trained ones.
        targets: per network, target blocks ``(F, C_L, C_0)`` as for :func:`population_mse`.
        weight_decay: ``λ ≥ 0`` for all networks, or one per network.
        steps, lr, lr_final: steps (≥ 1) and the learning-rate schedule.
        optimizer: ``"adam"`` (torch's Adam, β = (0.9, 0.999), ε = 1e-8) or ``"gd"`` (``θ ← θ − η∇``).
        record_every: record every this many steps (and at step 0); ``None``: only at the end.
        on_record: called as ``on_record(nets[n])`` at every recorded step with the network's current filters (under
            ``torch.no_grad()``); the ``name: value`` pairs it returns become columns.
        device: where to train (the networks are moved there).
    Returns:
        A tidy table, one row per network and recorded step (at the end always): ``network`` (index into ``nets``),
        ``step``, ``loss`` (population MSE), ``sq_norm`` (``‖θ‖²``), ``objective``, and the columns of ``on_record``;
        with ``record_every=None`` one row per network, in order. ``attrs["device"]`` is where it ran.
    """
    nets, targets = list(nets), list(targets)
    if len(nets) == 0 or len(targets) != len(nets):
        raise ValueError(f"need one target per network and at least one network, got {len(nets)} networks and "
                         f"{len(targets)} targets")
    decays = [float(weight_decay)] * len(nets) if np.ndim(weight_decay) == 0 else [float(w) for w in weight_decay]
    if len(decays) != len(nets):
        raise ValueError(f"weight_decay must be a number or one per network, got {len(decays)} for {len(nets)}")
    if optimizer not in ("adam", "gd"):
        raise ValueError(f"optimizer must be 'adam' or 'gd', got {optimizer!r}")
    if record_every is not None and record_every < 1:
        raise ValueError(f"record_every must be >= 1 or None, got {record_every}")
    if steps < 1 or lr <= 0 or min(decays) < 0 or (lr_final is not None and lr_final <= 0):
        raise ValueError(f"need steps >= 1, lr > 0, lr_final > 0 (or None) and weight_decay >= 0; got steps={steps}, "
                         f"lr={lr}, lr_final={lr_final}, weight_decay={weight_decay}")
    for i, net in enumerate(nets):
        if not isinstance(net, CircularCNN) or net.relu or net.biases is not None or net.head is not None \
                or net.downsample is not None:
            raise ValueError(f"nets[{i}] must be a linear CircularCNN without biases, head or downsampling")
        if net.L < 2 or len(set(net.widths[1:-1])) != 1:
            raise ValueError(f"nets[{i}] must have L >= 2 layers and widths (C_0, w, …, w, C_L), got {net.widths}")
    dev = check_device(device)
    for net in nets:
        net.to(dev)
    ran_on = record_device(nets[0], by="train_linear_cnns")
    groups: dict[tuple, list[int]] = {}
    for i, net in enumerate(nets):
        c0, w, cl = net.widths[0], net.widths[1], net.widths[-1]
        groups.setdefault((c0, w, cl, net.spatial, net.filters[0].dtype), []).append(i)
    stacks = []
    for (c0, w, cl, spatial, dtype), members in groups.items():
        F, G = math.prod(spatial), len(members)
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        slots = max(nets[i].L for i in members) - 2          # middle layers of the deepest member
        first = torch.stack([nets[i].filters[0].detach().reshape(w, c0, F) for i in members])
        last = torch.stack([nets[i].filters[-1].detach().reshape(cl, w, F) for i in members])
        middle = torch.zeros(G, slots, w, w, F, dtype=dtype, device=dev)
        live = torch.zeros(G, slots, 1, 1, 1, dtype=torch.bool, device=dev)   # slot ℓ < L_n − 2 is a real layer
        for g, i in enumerate(members):
            for ell, W in enumerate(nets[i].filters[1:-1]):
                middle[g, ell] = W.detach().reshape(w, w, F)
                live[g, ell] = True
        T = []
        for i in members:
            t = torch.as_tensor(np.asarray(targets[i]), dtype=cdtype, device=dev)
            if tuple(t.shape) != (F, cl, c0):
                raise ValueError(f"targets[{i}] must have shape ({F}, {cl}, {c0}), got {tuple(t.shape)}")
            T.append(t)
        T_all = torch.stack(T)                                                  # (G, F, C_L, C_0)
        half, mult = _conjugate_half(spatial)
        if not torch.equal(T_all[:, torch.as_tensor(_conjugate_index(spatial), device=dev)], T_all.conj()):
            half, mult = np.arange(F), np.ones(F)                # a target of no real map: every frequency
        E = _dft_matrix(spatial, cdtype, dev)[:, torch.as_tensor(half, device=dev)].contiguous()   # (F, M)
        stacks.append({
            "members": members, "params": [first, middle, last],
            "live": live, "eye": torch.eye(w, dtype=cdtype, device=dev), "targets": T_all[:, half],
            "lam": torch.tensor([decays[i] / 2 for i in members], dtype=dtype, device=dev),   # (λ/2)‖θ‖²
            "E": E, "EH": E.mH.contiguous(),
            "weight": torch.as_tensor(mult / (cl * F), dtype=dtype, device=dev).view(1, -1, 1, 1)})   # (1, M, 1, 1)
    params = [p for st in stacks for p in st["params"]]
    update = plain_optimiser(params, optimizer, lr)  # torch.optim's arithmetic, no torch.optim object
    gamma = (lr_final / lr) ** (1.0 / steps) if lr_final is not None else 1.0

    def objective(grad: bool) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Sum of the networks' objectives and per group ``(loss, ‖θ‖²)``; with ``grad``, sets every ``.grad``.

        The gradient is written out (no autograd graph: a few block products per layer). With ``g_X`` the gradient
        of the real loss in ``dℓ = Re Σ conj(g_X)·dX``: ``g_Ĥ = 2(Ĥ − Ĥ*)/(C_L F)``, through ``Ĥ = A X B`` it is
        ``A^H g_Ĥ B^H``, and a real filter ``W`` with blocks ``Ŵ = W E`` gets ``Re(g_Ŵ E^H)``; the penalty adds
        ``λW``. Real filters give Hermitian blocks (``Ŵ_{−m} = conj(Ŵ_m)``), and so does the target of a real map:
        then the terms at ``m`` and ``−m`` of the loss and of ``Re(g_Ŵ E^H)`` are equal, and only one frequency per
        conjugate pair is computed, weighted by its multiplicity (``E`` has those columns; the same sums, up to float
        rounding, in about half the block products). Padding: a network shallower than its group's deepest has
        identity blocks in its unused middle slots (exact in floating point: 1·v + 0·u = v); their filters get zero
        gradient and no penalty, so Adam leaves them at 0 and each network's objective and gradient are its own
        (tested against autograd through :func:`population_mse`).
        """
        total, parts = None, []
        for st in stacks:
            first, middle, last = st["params"]
            E, EH, lam = st["E"], st["EH"], st["lam"]
            B1 = (first.to(E.dtype) @ E).permute(0, 3, 1, 2)                        # (G, F, w, C_0)
            Ms = []
            if middle.shape[1]:
                Mh = torch.where(st["live"], middle.to(E.dtype) @ E, st["eye"][..., None])    # (G, slots, w, w, F)
                Ms = list(Mh.permute(0, 1, 4, 2, 3).unbind(1))                      # slots × (G, F, w, w)
            prefix = [B1]                                                            # P_s = M_s ⋯ M_1 B_1
            for M in Ms:
                prefix.append(M @ prefix[-1])
            BL = (last.to(E.dtype) @ E).permute(0, 3, 1, 2)                         # (G, F, C_L, w)
            D = BL @ prefix[-1] - st["targets"]                                      # (G, M, C_L, C_0)
            loss = (torch.view_as_real(D).square().sum(-1) * st["weight"]).sum((1, 2, 3))   # (G,): population MSE
            sq = first.square().sum((1, 2, 3)) + last.square().sum((1, 2, 3)) \
                + (middle.square() * st["live"]).sum((1, 2, 3, 4))                    # (G,): ‖θ_n‖²
            obj = (loss + lam * sq).sum()
            total = obj if total is None else total + obj
            parts.append((loss, sq))
            if grad:
                gH = D * (2 * st["weight"])
                last.grad = (((gH @ prefix[-1].mH).permute(0, 2, 3, 1) @ EH).real
                             + 2 * lam.view(-1, 1, 1, 1) * last)
                gP = BL.mH @ gH
                gMs = []
                for M, P in zip(reversed(Ms), reversed(prefix[:-1])):
                    gMs.append(gP @ P.mH)
                    gP = M.mH @ gP
                first.grad = (gP.permute(0, 2, 3, 1) @ EH).real + 2 * lam.view(-1, 1, 1, 1) * first
                if Ms:
                    gM = (torch.stack(gMs[::-1], dim=1).permute(0, 1, 3, 4, 2) @ EH).real
                    middle.grad = gM * st["live"] + 2 * lam.view(-1, 1, 1, 1, 1) * middle
                else:
                    middle.grad = torch.zeros_like(middle)
        assert total is not None
        return total, parts

    def record(step: int, parts: list[tuple[torch.Tensor, torch.Tensor]], write_back: bool) -> None:
        for st, (loss, sq) in zip(stacks, parts):
            first, middle, last = st["params"]
            for g, i in enumerate(st["members"]):
                row = {"network": i, "step": step, "loss": float(loss[g]), "sq_norm": float(sq[g]),
                       "objective": float(loss[g] + st["lam"][g] * sq[g])}
                if write_back or on_record is not None:
                    current = [first[g]] + [middle[g, ell] for ell in range(nets[i].L - 2)] + [last[g]]
                    for w_net, W in zip(nets[i].filters, current):
                        w_net.copy_(W.reshape(w_net.shape))
                    if on_record is not None:
                        row.update(dict(on_record(nets[i])))
                rows.append(row)

    rows: list[dict[str, Any]] = []
    with torch.no_grad():
        for step in range(steps):
            total, parts = objective(grad=True)
            if record_every is not None and step % record_every == 0:
                record(step, parts, write_back=False)
            if not torch.isfinite(total):
                raise FloatingPointError(f"objective became {total.item()} at step {step}; lower the learning rate")
            update.step()
            update.lr = update.lr * gamma             # torch's ExponentialLR: lr ← lr·γ after every step
        record(steps, objective(grad=False)[1], write_back=True)
    table = pd.DataFrame(rows).sort_values(["network", "step"], kind="stable").reset_index(drop=True)
    table.attrs["device"] = str(ran_on)
    return table


def band_mask(d: int, K: int) -> NDArray[np.bool_]:
    """``(d,)`` mask of the band ``|m| ≤ K`` (``m`` and ``d − m`` both marked)."""
    if d < 2 or K < 0 or 2 * K >= d:
        raise ValueError(f"need d >= 2 and 0 <= K < d/2, got d={d}, K={K}")
    m = np.arange(d)
    return np.minimum(m, d - m) <= K


def lowpass_blocks(d: int, K: int) -> NDArray[np.complexfloating]:
    """Target blocks ``ĥ_m = 1`` for ``|m| ≤ K``, else 0: shape ``(d, 1, 1)`` (CBN rank ``2K + 1``)."""
    return band_mask(d, K).astype(complex).reshape(d, 1, 1)


def lowpass(x: torch.Tensor, K: int) -> torch.Tensor:
    """Ideal low-pass filter along the last axis: keep ``|m| ≤ K``."""
    d = x.shape[-1]
    mask = torch.as_tensor(band_mask(d, K)[: d // 2 + 1], dtype=x.dtype, device=x.device)
    return irdft(rdft(x, 1) * mask, d, 1)


def gaussian_signals(
    n: int, d: int, channels: int = 1, seed: int = 0, dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """``n`` white Gaussian signals ``x ~ N(0, I)``, shape ``(n, channels, d)``, from their own generator.

    Drawn on the CPU (the same numbers on every device), then moved to ``device``.
    """
    if n < 1 or d < 2 or channels < 1:
        raise ValueError(f"need n >= 1, d >= 2, channels >= 1, got n={n}, d={d}, channels={channels}")
    dev = check_device(device)
    return torch.randn(n, channels, d, generator=torch.Generator().manual_seed(int(seed)), dtype=dtype).to(dev)


def activation_power_spectrum(a: torch.Tensor | NDArray[np.floating]) -> NDArray[np.floating]:
    """Centred power spectrum of activations, folded over ``±m`` and normalised to sum 1.

    ``a``: ``(N, C, d)`` (returns ``(d//2 + 1,)``, index ``|m|``) or ``(N, C, d, d)`` (returns ``(d, d)`` unfolded).
    The mean over samples (a spatially constant offset for a translation-equivariant net) is removed first, so the
    trivial DC offset of biased ReLU activations is not counted.
    """
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=float)
    if arr.ndim not in (3, 4):
        raise ValueError(f"activations must have shape (N, C, *spatial), got {arr.shape}")
    arr = arr - arr.mean(axis=0, keepdims=True)
    power = power_spectrum(arr, arr.ndim - 2).sum(axis=(0, 1))
    total = power.sum()
    if not total > 0:
        raise ValueError("activations have zero variance over samples")
    power = power / total
    if arr.ndim == 4:
        return power
    d = arr.shape[-1]
    folded = power[: d // 2 + 1].copy()
    folded[1 : (d + 1) // 2] += power[d - 1 : d // 2 : -1]
    return folded


def conjugate_classes_2d(d: int) -> tuple[list[tuple[int, int]], NDArray[np.int_]]:
    """The 2-D frequencies of a ``d × d`` grid up to conjugation ``m ≡ −m``, ordered by radius ``|m|``.

    Returns the representatives ``(m_1, m_2)`` (signed, in ``(−d/2, d/2]``) and an index array ``(d, d)`` mapping
    each frequency of ``numpy.fft.fft2`` order to its class (real signals have equal power and singular values
    on a class).
    """
    if d < 2:
        raise ValueError(f"need d >= 2, got {d}")
    signed = [(m if m <= d // 2 else m - d) for m in range(d)]
    classes: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i in range(d):
        for j in range(d):
            key = min((i, j), ((-i) % d, (-j) % d))
            classes.setdefault(key, []).append((i, j))
    keys = sorted(classes, key=lambda k: (signed[k[0]] ** 2 + signed[k[1]] ** 2, abs(signed[k[0]]), k))
    index = np.zeros((d, d), dtype=int)
    for c, key in enumerate(keys):
        for i, j in classes[key]:
            index[i, j] = c
    return [(signed[k[0]], signed[k[1]]) for k in keys], index


def effective_number(p: NDArray[np.floating]) -> float:
    """Participation number ``(Σ p)² / Σ p²`` of a nonnegative spectrum: how many frequencies carry it."""
    q = np.asarray(p, dtype=float).ravel()
    if q.size == 0 or np.any(q < 0) or not q.sum() > 0:
        raise ValueError("need a nonnegative, nonzero spectrum")
    return float(q.sum() ** 2 / (q**2).sum())


def band_power_fraction(spectrum: NDArray[np.floating], K: int) -> float:
    """Share of a folded spectrum (index ``|m|``) on ``|m| ≤ K``."""
    s = np.asarray(spectrum, dtype=float)
    if s.ndim != 1 or K < 0 or K >= s.size:
        raise ValueError(f"need a 1-D folded spectrum and 0 <= K < {s.size}, got shape {s.shape}, K={K}")
    return float(s[: K + 1].sum() / s.sum())
