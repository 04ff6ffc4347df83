"""Fourier conventions of the book: the 2-D DFT that diagonalises circular convolution.

One convention everywhere (chapter "Deep linear networks", box "Conventions"):

* ``Q`` is the **unnormalised** 2-D DFT, ``Q = F_n ⊗ F_n`` with ``(F_n)_{ab} = exp(-2πi ab/n)``,
  so ``Q^H Q = n² I``. It is ``numpy.fft.fft2`` applied to an ``(n, n)`` image.
* For a unit-norm image ``φ`` (a right singular vector of Σ_yx), ``Φ = Qφ`` satisfies Parseval
  ``Σ_j |Φ_j|² = n²``, and the *dominant frequency amplitude* ``Φ* = max_j |Φ_j|`` lies in ``[1, n]``:
  ``n`` for a constant image, ``n/√2`` for a pure cosine, ``1`` for a single-pixel delta.

Arrays are numpy; shapes are given as ``(n, n)`` for one image and ``(p, n, n)`` for a stack.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "dft2",
    "dominant_amplitude",
    "dominant_frequency_mask",
    "spectral_concentration",
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


def spectral_concentration(images: NDArray[np.floating]) -> NDArray[np.floating]:
    """Concentration ``Φ*_α / n ∈ [1/n, 1]`` of unit-norm images in the Fourier basis, shape ``(p,)``.

    1 means the image is a single (DC) frequency; ``1/n`` means a spectrally flat image.
    """
    stack = _as_image_stack(images, "images")
    return dominant_amplitude(stack) / stack.shape[-1]
