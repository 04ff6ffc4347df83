"""Fourier conventions of the book: the 2-D DFT that diagonalises circular convolution.

One convention everywhere (chapter "Deep linear networks", box "Conventions"):

* ``Q`` is the **unnormalised** 2-D DFT, ``Q = F_n ⊗ F_n`` with ``(F_n)_{ab} = exp(-2πi ab/n)``,
  so ``Q^H Q = n² I``. It is ``numpy.fft.fft2`` applied to an ``(n, n)`` image.
* A kernel ``r`` of size ``(k, k)``, ``k ≤ n``, acts through its zero-embedding ``r̃ = P r``, an ``(n, n)``
  array supported on the centred offsets ``−⌊k/2⌋ … ⌊(k−1)/2⌋`` (PyTorch's ``padding="same"`` convention). Circular convolution ``h[a] = Σ_m r̃[m] x[(a − m) mod n]`` (2-D
  indices) is the doubly-block-circulant matrix ``C_r = Q^H diag(λ) Q / n²`` with eigenvalues ``λ = Q r̃``.
  Images are flattened row-major (``vec``), so ``Q = F_n ⊗ F_n`` acts on ``vec(x)`` as ``fft2`` acts on ``x``.
* For a unit-norm image ``φ`` (a right singular vector of Σ_yx), ``Φ = Qφ`` satisfies Parseval
  ``Σ_j |Φ_j|² = n²``, and the *dominant frequency amplitude* ``Φ* = max_j |Φ_j|`` lies in ``[1, n]``:
  ``n`` for a constant image, ``n/√2`` for a pure cosine, ``1`` for a single-pixel delta.

Arrays are numpy; shapes are given as ``(n, n)`` for one image and ``(p, n, n)`` for a stack. The transforms
:func:`dft`, :func:`idft`, :func:`rdft`, :func:`irdft` and :func:`power_spectrum` are the same unnormalised DFT over
the last one or two axes of any stack, for numpy arrays *and* torch tensors (differentiable, on the tensor's device):
every module of the book (the Wen & Jacot circular CNNs of :mod:`~how_cnns_learn.bottleneck` included, whose 1-D
signals use ``F_d`` along one axis) transforms through them.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = [
    "circulant_matrix",
    "circular_convolve",
    "cross_correlation_weight_to_kernel",
    "kernel_to_cross_correlation_weight",
    "dft",
    "dft2",
    "dft_matrix",
    "idft",
    "irdft",
    "power_spectrum",
    "rdft",
    "embed_kernel",
    "frequency_block_norms",
    "frequency_coupling",
    "frequency_space_forward",
    "frequency_units",
    "kernel_support",
    "dominant_amplitude",
    "dominant_frequency_mask",
]


def _as_image_stack(images: NDArray[np.floating], name: str) -> NDArray[np.floating]:
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"{name} must have shape (n, n) or (p, n, n) with square images, got {arr.shape}")
    return arr


def dft2(images: NDArray[np.floating]) -> NDArray[np.complexfloating]:
    """Unnormalised 2-D DFT ``Qφ`` of one image ``(n, n)`` or a stack ``(p, n, n)`` (same shape out).

    >>> import numpy as np
    >>> abs(dft2(np.ones((4, 4)) / 4))[0, 0]   # constant unit-norm image: Φ* = n
    np.float64(4.0)
    """
    arr = np.asarray(images)
    if arr.ndim not in (2, 3) or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"dft2 expects (n, n) or (p, n, n) square images, got shape {arr.shape}")
    return np.fft.fft2(arr, axes=(-2, -1))


Signal = TypeVar("Signal", NDArray[np.generic], torch.Tensor)


def _axes(x: NDArray[np.generic] | torch.Tensor, ndim: int, name: str) -> tuple[int, ...]:
    if ndim not in (1, 2):
        raise ValueError(f"ndim must be 1 or 2 (transform over the last one or two axes), got {ndim!r}")
    if x.ndim < ndim:
        raise ValueError(f"{name} must have at least {ndim} axes to transform, got shape {tuple(x.shape)}")
    return tuple(range(-ndim, 0))


def dft(x: Signal, ndim: int = 2) -> Signal:
    """Unnormalised DFT over the last ``ndim`` axes (1 or 2) of a stack ``(..., n)`` or ``(..., n, n)``.

    ``x̂[m] = Σ_j x[j] e^{−2πi j·m/n}`` (``Q`` of the module docstring for ``ndim = 2``). numpy in, numpy out
    (``numpy.fft.fftn``); a torch tensor in, a torch tensor out (``torch.fft.fftn``: differentiable, same device).
    """
    if isinstance(x, torch.Tensor):
        return torch.fft.fftn(x, dim=_axes(x, ndim, "x"))
    arr = np.asarray(x)
    return np.fft.fftn(arr, axes=_axes(arr, ndim, "x"))


def idft(x_hat: Signal, ndim: int = 2) -> Signal:
    """Inverse of :func:`dft` (carries the ``1/n^ndim``); complex out, take ``.real`` for real signals."""
    if isinstance(x_hat, torch.Tensor):
        return torch.fft.ifftn(x_hat, dim=_axes(x_hat, ndim, "x_hat"))
    arr = np.asarray(x_hat)
    return np.fft.ifftn(arr, axes=_axes(arr, ndim, "x_hat"))


def rdft(x: Signal, ndim: int = 2) -> Signal:
    """:func:`dft` of a real stack, keeping the frequencies ``0 … ⌊n/2⌋`` of the last axis (``rfftn``).

    The others follow by conjugate symmetry, ``x̂[−m] = conj(x̂[m])``; shape ``(..., n//2 + 1)`` or
    ``(..., n, n//2 + 1)``.
    """
    if isinstance(x, torch.Tensor):
        return torch.fft.rfftn(x, dim=_axes(x, ndim, "x"))
    arr = np.asarray(x)
    return np.fft.rfftn(arr, axes=_axes(arr, ndim, "x"))


def irdft(x_hat: Signal, size: int | tuple[int, ...], ndim: int = 2) -> Signal:
    """Inverse of :func:`rdft`: the real stack whose last ``ndim`` axes have ``size`` (an int: ``n`` for each)."""
    axes = _axes(x_hat, ndim, "x_hat")
    shape = (size,) * ndim if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if len(shape) != ndim:
        raise ValueError(f"size must give {ndim} spatial size(s), got {size!r}")
    if isinstance(x_hat, torch.Tensor):
        return torch.fft.irfftn(x_hat, s=shape, dim=axes)
    return np.fft.irfftn(np.asarray(x_hat), s=shape, axes=axes)


def power_spectrum(x: Signal, ndim: int = 2, half: bool = False) -> Signal:
    """``|x̂|²``, the power of every frequency of the last ``ndim`` axes (:func:`dft`; ``half``: :func:`rdft`).

    For embedded kernels ``r̃`` ``(..., n, n)`` this is the **kernel power** ``|λ_j|² = |(Q r̃)_j|²`` of the linear
    CNN; for the dense layer's images ``W`` ``(..., p, n, n)``, ``power_spectrum(W).sum(-3)`` is ``Σ_i |(QW_i)_j|²``.
    """
    hat = rdft(x, ndim) if half else dft(x, ndim)
    return abs(hat) ** 2


def dominant_amplitude(images: NDArray[np.floating]) -> NDArray[np.floating]:
    """Dominant frequency amplitude ``Φ*_α = max_j |(Qφ_α)_j|`` for each image of a stack ``(p, n, n)``.

    Returns shape ``(p,)``. Images are used as given: pass unit-norm images for the book's Φ*.
    """
    stack = _as_image_stack(images, "images")
    return np.abs(dft2(stack)).reshape(stack.shape[0], -1).max(axis=1)


def dominant_frequency_mask(images: NDArray[np.floating], rel_tol: float = 1e-3) -> NDArray[np.bool_]:
    """Boolean mask ``(p, n, n)`` of the frequencies whose ``|Qφ|`` is within ``rel_tol`` of the maximum.

    Real images have conjugate-symmetric spectra, so a dominant frequency is a *pair* (j, -j),
    except DC and Nyquist, which are their own conjugates; ties of equal modulus are all kept.
    """
    if not 0 <= rel_tol < 1:
        raise ValueError(f"rel_tol must lie in [0, 1), got {rel_tol}")
    stack = _as_image_stack(images, "images")
    mag = np.abs(dft2(stack))
    peak = mag.reshape(stack.shape[0], -1).max(axis=1)[:, None, None]
    return mag >= (1.0 - rel_tol) * peak



def kernel_support(n: int, k: int) -> NDArray[np.bool_]:
    """The ``(n, n)`` mask of a centred ``k×k`` kernel: offsets ``−⌊k/2⌋ … ⌊(k−1)/2⌋`` (mod ``n``) on both axes.

    This is the support of PyTorch's ``Conv2d(k, padding="same", padding_mode="circular")`` written as a
    circular convolution (see :func:`cross_correlation_weight_to_kernel`); for ``k = n`` it is everything.
    """
    if not 1 <= k <= n:
        raise ValueError(f"kernel size k = {k} must lie in [1, n = {n}] (a kernel cannot be larger than the image)")
    offsets = np.arange(-(k // 2), (k - 1) // 2 + 1) % n
    mask = np.zeros((n, n), dtype=bool)
    mask[np.ix_(offsets, offsets)] = True
    return mask


def embed_kernel(kernel: NDArray[np.floating], n: int) -> NDArray[np.floating]:
    """Zero-embed a centred ``(..., k, k)`` kernel into ``(..., n, n)``: ``r̃ = P r``.

    Entry ``r[i, j]`` goes to offset ``(i − ⌊k/2⌋, j − ⌊k/2⌋) mod n``, so the centre entry sits at the origin
    and the support is :func:`kernel_support`.
    """
    r = np.asarray(kernel)
    if r.ndim < 2 or r.shape[-1] != r.shape[-2]:
        raise ValueError(f"kernel must have shape (..., k, k), got {r.shape}")
    k = r.shape[-1]
    if k > n:
        raise ValueError(f"kernel size k = {k} is larger than the image size n = {n}")
    out = np.zeros(r.shape[:-2] + (n, n), dtype=r.dtype)
    out[..., :k, :k] = r
    return np.roll(out, (-(k // 2), -(k // 2)), axis=(-2, -1))


def circular_convolve(kernel: NDArray[np.floating], images: NDArray[np.floating]) -> NDArray[np.floating]:
    """Circular 2-D convolution ``h = r̃ ⊛ x`` by the FFT product ``h = Re ifft2(Q r̃ · Q x)``.

    Args:
        kernel: ``(n, n)`` embedded kernel ``r̃`` (see :func:`embed_kernel`).
        images: ``(n, n)`` or ``(N, n, n)``.
    """
    r = np.asarray(kernel)
    x = np.asarray(images)
    if r.ndim != 2 or x.shape[-2:] != r.shape:
        raise ValueError(f"kernel (n, n) and images (..., n, n) must agree, got {r.shape} and {x.shape}")
    return np.fft.ifft2(np.fft.fft2(r) * np.fft.fft2(x, axes=(-2, -1)), axes=(-2, -1)).real


def dft_matrix(n: int) -> NDArray[np.complexfloating]:
    """The unnormalised 2-D DFT as an ``(n², n²)`` matrix ``Q = F_n ⊗ F_n`` on row-major ``vec(x)``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    F = np.exp(-2j * np.pi * np.outer(np.arange(n), np.arange(n)) / n)
    return np.kron(F, F)


def circulant_matrix(kernel: NDArray[np.floating]) -> NDArray[np.floating]:
    """The doubly-block-circulant ``(n², n²)`` matrix ``C_r`` with ``C_r vec(x) = vec(r̃ ⊛ x)``.

    Built entry by entry, ``C_r[(a1, a2), (b1, b2)] = r̃[(a1 − b1) mod n, (a2 − b2) mod n]``, independently of
    the FFT, so that its diagonalisation by ``Q`` can be checked.
    """
    r = np.asarray(kernel)
    if r.ndim != 2 or r.shape[0] != r.shape[1]:
        raise ValueError(f"kernel must be an (n, n) embedded kernel, got shape {r.shape}")
    n = r.shape[0]
    idx = np.arange(n)
    d1 = (idx[:, None, None, None] - idx[None, None, :, None]) % n
    d2 = (idx[None, :, None, None] - idx[None, None, None, :]) % n
    return r[d1, d2].reshape(n * n, n * n)


def cross_correlation_weight_to_kernel(weight: NDArray[np.floating], n: int) -> NDArray[np.floating]:
    """The embedded convolution kernel ``r̃`` equivalent to a PyTorch ``Conv2d`` weight ``(k, k)``.

    PyTorch computes a cross-correlation; with ``padding="same"`` and ``padding_mode="circular"`` it pads
    ``pl = (k − 1)//2`` before and ``k − 1 − pl`` after, so ``out[a] = Σ_m w[m] x[(a + m − pl) mod n]``, which is
    the circular convolution with ``r̃[(pl − m) mod n] = w[m]``: a flipped, shifted kernel with the same
    ``|λ|``.
    """
    w = np.asarray(weight)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weight must be (k, k), got {w.shape}")
    k = w.shape[0]
    if k > n:
        raise ValueError(f"kernel size k = {k} is larger than the image size n = {n}")
    pl = (k - 1) // 2
    out = np.zeros((n, n), dtype=w.dtype)
    idx = (pl - np.arange(k)) % n
    out[np.ix_(idx, idx)] = w
    return out


def frequency_units(
    dense: NDArray[np.floating], kernel: NDArray[np.floating]
) -> tuple[NDArray[np.complexfloating], NDArray[np.complexfloating]]:
    """The two-layer linear CNN ``M = W C_r`` as one hidden unit per frequency.

    With the unitary DFT ``F = Q/n``, ``M = Ŵ diag(λ) F`` where ``Ŵ = W F^H``. Frequency ``j`` has input gain
    ``λ_j = (Q r̃)_j`` (shared by all outputs) and output vector ``ŵ_j = (W F^H)_{:, j}``.

    Args:
        dense: ``W`` as images, ``(p, n, n)``.
        kernel: embedded kernel ``r̃``, ``(n, n)``.

    Returns:
        ``(w_hat, lam)``: ``(p, n, n)`` and ``(n, n)`` complex arrays, with ``w_hat[:, j] = conj(Q W_i)_j / n``.
    """
    W = np.asarray(dense)
    r = np.asarray(kernel)
    if W.ndim != 3 or r.ndim != 2 or W.shape[1:] != r.shape or r.shape[0] != r.shape[1]:
        raise ValueError(f"dense (p, n, n) and kernel (n, n) must agree, got {W.shape} and {r.shape}")
    n = r.shape[0]
    return np.conj(dft2(W)) / n, dft2(r)


def frequency_space_forward(
    dense: NDArray[np.floating], kernel: NDArray[np.floating], images: NDArray[np.floating]
) -> NDArray[np.floating]:
    """``ŷ = Σ_j ŵ_j λ_j x̂_j`` with ``x̂ = F x``: the CNN's forward pass computed frequency by frequency.

    ``images``: ``(N, n, n)``; returns ``(N, p)`` (real up to rounding; the real part is returned).
    """
    w_hat, lam = frequency_units(dense, kernel)
    x = np.asarray(images)
    if x.ndim != 3 or x.shape[1:] != lam.shape:
        raise ValueError(f"images must have shape (N, {lam.shape[0]}, {lam.shape[1]}), got {x.shape}")
    x_hat = dft2(x) / lam.shape[0]
    return np.einsum("pjk,jk,Njk->Np", w_hat, lam, x_hat).real


def frequency_coupling(n: int, k: int) -> NDArray[np.complexfloating]:
    """The ``(n², n²)`` matrix ``K = Q P Pᵀ Q^H`` that couples the kernel's frequencies in gradient flow.

    ``τ dλ/dt = K g`` (chapter "gradient flow"): ``K_{jl} = Σ_{m ∈ support} e^{−2πi (j−l)·m / n}``, a 2-D
    Dirichlet kernel in ``j − l``. ``K = n² I`` for a full kernel (``k = n``: frequencies decouple) and all
    ones for ``k = 1`` (every ``λ_j`` is the same number).
    """
    support = kernel_support(n, k).reshape(-1)
    QP = dft_matrix(n)[:, support]
    return QP @ QP.conj().T


def kernel_to_cross_correlation_weight(kernel: NDArray[np.floating], k: int) -> NDArray[np.floating]:
    """Inverse of :func:`cross_correlation_weight_to_kernel`: the PyTorch ``(k, k)`` weight of an embedded kernel."""
    r = np.asarray(kernel)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or not 1 <= k <= r.shape[0]:
        raise ValueError(f"kernel must be (n, n) with 1 <= k <= n, got shape {r.shape} and k = {k}")
    idx = ((k - 1) // 2 - np.arange(k)) % r.shape[0]
    return r[np.ix_(idx, idx)].copy()


def frequency_block_norms(end_to_end: NDArray[np.floating], n: int) -> NDArray[np.floating]:
    """Per-frequency norms ``‖M̂_j‖`` of linear maps ``M`` from ``n×n`` images to ``p`` outputs, ``(..., n, n)``.

    ``end_to_end`` has shape ``(..., p, n²)`` (rows flattened row-major) or ``(..., p, n, n)``; ``M̂_j`` is the
    unnormalised DFT of the ``p`` rows at frequency ``j`` (a ``p``-vector: one input channel). Three readings of the
    same numbers: the singular value of the Fourier block ``j`` (whose count of non-zeros is the CBN rank of Wen &
    Jacot); ``‖M̂_j‖²/n²``, the Fourier diagonal of the input AGOP ``MᵀM`` of ``x ↦ Mx`` (Beaglehole et al.); and,
    for a balanced two-layer CNN, the kernel power ``|λ_j|²``.
    """
    M = np.asarray(end_to_end, dtype=float)
    if M.ndim < 2:
        raise ValueError(f"end_to_end must have shape (..., p, n²) or (..., p, n, n), got {M.shape}")
    if M.shape[-1] == n * n:
        M = M.reshape(*M.shape[:-1], n, n)
    if M.shape[-2:] != (n, n):
        raise ValueError(f"end_to_end of shape {np.asarray(end_to_end).shape} does not hold n×n = {n}×{n} images")
    return np.sqrt((np.abs(np.fft.fft2(M)) ** 2).sum(axis=-3))
