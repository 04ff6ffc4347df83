"""Data sets generated in code, and the statistical structure they carry.

Two central objects:

* A **dataset structure** is ``(U, s, φ)``: the SVD ``Σ_yx = U diag(s) Vᵀ`` of the input–output
  correlation, with ``U`` of shape ``(p, p)`` (columns ``u_α``), ``s`` of shape ``(p,)`` in decreasing
  order, and the right singular vectors shown as images ``φ`` of shape ``(p, n, n)``, unit L2 norm.
* A **training set** is ``(inputs, targets, reduction)``: images ``(N, n, n)``, targets ``(N, p)``
  and how the squared loss averages over items (``"sum"``: ``L = ½ Σ_μ ‖e^μ‖²``; ``"mean"``: ``1/N`` times
  that). The correlations use the same weighting: ``Σ_yx = w Σ_μ y^μ x^μᵀ`` with ``w = 1`` or ``1/N``.

Nothing here downloads data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DatasetStructure",
    "TrainingSet",
    "cosine_image",
    "designed_structure",
    "digits",
    "digits_with_grating_cue",
    "noisy_templates",
    "shared_pair_structure",
    "sine_image",
    "structure_items",
    "whitened_pixels",
]

Reduction = Literal["sum", "mean"]


@dataclass(frozen=True)
class DatasetStructure:
    """``Σ_yx = Σ_α s_α u_α φ_αᵀ``: U ``(p, p)``, s ``(p,)`` decreasing, phi ``(p, n, n)`` orthonormal."""

    U: NDArray[np.floating]
    s: NDArray[np.floating]
    phi: NDArray[np.floating]

    def __post_init__(self) -> None:
        p = self.s.shape[0]
        if self.s.ndim != 1 or self.U.shape != (p, p) or self.phi.ndim != 3 or self.phi.shape[0] != p:
            raise ValueError(
                f"inconsistent structure: U {self.U.shape}, s {self.s.shape}, phi {self.phi.shape}; "
                "expected U (p, p), s (p,), phi (p, n, n)"
            )
        if self.phi.shape[1] != self.phi.shape[2]:
            raise ValueError(f"phi images must be square, got {self.phi.shape[1:]}")
        for name, arr in (("U", self.U), ("s", self.s), ("phi", self.phi)):
            if not np.issubdtype(np.asarray(arr).dtype, np.floating):
                raise ValueError(f"{name} must be a real floating array, got dtype {np.asarray(arr).dtype}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contains NaN or infinite values")
        flat = self.phi.reshape(p, -1)
        if not np.allclose(flat @ flat.T, np.eye(p), atol=1e-8):
            raise ValueError("the images phi must be orthonormal (unit norm, mutually orthogonal)")
        if not np.allclose(self.U.T @ self.U, np.eye(p), atol=1e-8):
            raise ValueError("the columns of U must be orthonormal")
        if np.any(self.s < 0):
            raise ValueError(f"singular values must be >= 0, got {self.s}")

    @property
    def n(self) -> int:
        """Image side length."""
        return int(self.phi.shape[-1])

    @property
    def p(self) -> int:
        """Number of modes (= outputs)."""
        return int(self.s.shape[0])

    @property
    def sigma_yx(self) -> NDArray[np.floating]:
        """``Σ_yx`` as a ``(p, n²)`` matrix."""
        return (self.U * self.s) @ self.phi.reshape(self.p, -1)


@dataclass(frozen=True)
class TrainingSet:
    """Full-batch training data: inputs ``(N, n, n)``, targets ``(N, p)``, loss reduction."""

    inputs: NDArray[np.floating]
    targets: NDArray[np.floating]
    reduction: Reduction = "sum"

    def __post_init__(self) -> None:
        if self.inputs.ndim != 3 or self.inputs.shape[1] != self.inputs.shape[2]:
            raise ValueError(f"inputs must have shape (N, n, n), got {self.inputs.shape}")
        if self.targets.ndim != 2 or self.targets.shape[0] != self.inputs.shape[0]:
            raise ValueError(
                f"targets must have shape (N, p) with N = {self.inputs.shape[0]}, got {self.targets.shape}"
            )
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        for name, arr in (("inputs", self.inputs), ("targets", self.targets)):
            if not np.issubdtype(arr.dtype, np.floating):
                raise ValueError(f"{name} must be a real floating array, got dtype {arr.dtype}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contain NaN or infinite values")

    @property
    def item_weight(self) -> float:
        """``w`` in ``L = (w/2) Σ_μ ‖e^μ‖²``: 1 for ``"sum"``, ``1/N`` for ``"mean"``."""
        return 1.0 if self.reduction == "sum" else 1.0 / self.inputs.shape[0]

    @property
    def flat_inputs(self) -> NDArray[np.floating]:
        """Inputs as rows, ``(N, n²)``."""
        return self.inputs.reshape(self.inputs.shape[0], -1)

    @property
    def sigma_yx(self) -> NDArray[np.floating]:
        """``Σ_yx = w Σ_μ y^μ x^μᵀ``, shape ``(p, n²)``."""
        return self.item_weight * self.targets.T @ self.flat_inputs

    @property
    def sigma_xx(self) -> NDArray[np.floating]:
        """``Σ_xx = w Σ_μ x^μ x^μᵀ``, shape ``(n², n²)``."""
        X = self.flat_inputs
        return self.item_weight * X.T @ X

    def structure(self) -> DatasetStructure:
        """SVD of ``Σ_yx`` with signs fixed so that each ``u_α`` has a positive largest-|·| entry."""
        n = self.inputs.shape[-1]
        U, s, Vt = np.linalg.svd(self.sigma_yx, full_matrices=False)
        p = self.targets.shape[1]
        U, s, Vt = U[:, :p], s[:p], Vt[:p]
        signs = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(p)])
        return DatasetStructure(U=U * signs, s=s, phi=(Vt * signs[:, None]).reshape(p, n, n))


def cosine_image(n: int, k1: int, k2: int) -> NDArray[np.floating]:
    """Unit-norm cosine grating ``cos(2π(k1·row + k2·col)/n)``, shape ``(n, n)``.

    Its spectrum is the conjugate pair ``±(k1, k2)`` with ``|Qφ| = n/√2`` (or ``n`` at DC/Nyquist).
    """
    if n < 2:
        raise ValueError(f"image side n must be >= 2, got {n}")
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    img = np.cos(2 * np.pi * (k1 * rows + k2 * cols) / n)  # img[0, 0] = 1, so the norm is > 0
    return img / np.linalg.norm(img)


def sine_image(n: int, k1: int, k2: int) -> NDArray[np.floating]:
    """Unit-norm sine grating ``sin(2π(k1·row + k2·col)/n)``, shape ``(n, n)``: the same frequency pair as
    :func:`cosine_image`, a quarter period shifted (it vanishes for DC and Nyquist frequencies: an error)."""
    if n < 2:
        raise ValueError(f"image side n must be >= 2, got {n}")
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    img = np.sin(2 * np.pi * (k1 * rows + k2 * cols) / n)
    norm = np.linalg.norm(img)
    if norm < 1e-9:
        raise ValueError(f"the sine grating ({k1}, {k2}) vanishes on an {n}x{n} grid (DC or Nyquist frequency)")
    return img / norm


def shared_pair_structure(u_seed: int = 1, n: int = 8) -> DatasetStructure:
    """Three modes, two of which share their dominant frequency pair (research notes §4.10).

    φ₁ = c(0,2) with s = 3 and φ₃ = sin(0,2) with s = 1 share the pair ±(0,2); φ₂ = c(1,1) with s = 2 is
    independent. All three have Φ* = n/√2. ``U`` as in :func:`designed_structure`.
    """
    phi = np.stack([cosine_image(n, 0, 2), cosine_image(n, 1, 1), sine_image(n, 0, 2)])
    U, _ = np.linalg.qr(np.random.default_rng(u_seed).standard_normal((3, 3)))
    return DatasetStructure(U=U, s=np.array([3.0, 2.0, 1.0]), phi=phi)


def designed_structure(u_seed: int = 1, n: int = 8) -> DatasetStructure:
    """Data set **D1** ("designed structure"): ``n = 8`` by default, ``p = 3``, ``s = (3, 2, 1)``.

    * φ₁ = ½[c(0,1) + c(1,0) + c(1,1) + c(1,−1)]: spread over four pairs, Φ* = n/(2√2);
    * φ₂ = c(0,2): a pure cosine, Φ* = n/√2;
    * φ₃ = 0.9 c(2,0) + √0.19 c(2,2): dominant plus secondary pair, Φ* = 0.9·n/√2.

    ``U`` is the Q factor of the QR decomposition of a 3×3 standard-normal matrix drawn with
    ``numpy.random.default_rng(u_seed)`` (research notes §5.2). Other ``n ≥ 6`` keep the same frequencies
    (used to measure how simulators scale with the image size).
    """
    if n < 6:
        raise ValueError(f"D1 needs n >= 6 so that its frequencies are distinct, got n = {n}")
    phi = np.stack(
        [
            0.5 * (cosine_image(n, 0, 1) + cosine_image(n, 1, 0) + cosine_image(n, 1, 1) + cosine_image(n, 1, -1)),
            cosine_image(n, 0, 2),
            0.9 * cosine_image(n, 2, 0) + np.sqrt(0.19) * cosine_image(n, 2, 2),
        ]
    )
    U, _ = np.linalg.qr(np.random.default_rng(u_seed).standard_normal((3, 3)))
    return DatasetStructure(U=U, s=np.array([3.0, 2.0, 1.0]), phi=phi)


def structure_items(structure: DatasetStructure) -> TrainingSet:
    """The p items ``x_α = φ_α`` with targets ``y_α = s_α u_α`` and the sum loss.

    Then ``Σ_yx`` is exactly the given structure and ``Σ_xx`` is the projector onto span{φ}
    (assumption A1 with ``d_α = 1``).
    """
    return TrainingSet(inputs=structure.phi.copy(), targets=(structure.U * structure.s).T.copy(), reduction="sum")


def whitened_pixels(structure: DatasetStructure) -> TrainingSet:
    """Data set **D2** ("whitened"): the ``n²`` one-hot pixel images with targets ``y_i = Σ_yx x_i``, sum loss.

    Then ``Σ_xx = I`` (every pixel direction is in the data) and ``Σ_yx`` is the given structure.
    """
    n = structure.n
    inputs = np.eye(n * n).reshape(n * n, n, n)
    return TrainingSet(inputs=inputs, targets=inputs.reshape(n * n, -1) @ structure.sigma_yx.T, reduction="sum")


def noisy_templates(
    structure: DatasetStructure,
    per_class: int = 40,
    noise: float = 0.05,
    amplitudes: NDArray[np.floating] | None = None,
    seed: int = 0,
) -> TrainingSet:
    """Data set **D3** ("noisy class templates"): class ``c`` images are ``amp_c φ_c + N(0, noise²)`` per pixel.

    One-hot targets ``(N, p)``, mean loss, ``per_class`` items per class (ordered by class). Default
    amplitudes ``√3·(3, 2, 1)`` give ``s ≈ (1.73, 1.15, 0.58)``; the noise adds ``noise²·I`` to ``Σ_xx``.
    """
    p, n = structure.p, structure.n
    amp = np.sqrt(3.0) * np.arange(p, 0, -1, dtype=float) if amplitudes is None else np.asarray(amplitudes, float)
    if amp.shape != (p,) or per_class < 1 or noise < 0:
        raise ValueError(f"need amplitudes of shape ({p},), per_class >= 1 and noise >= 0; got {amp.shape}, {per_class}, {noise}")
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(p), per_class)
    inputs = amp[labels, None, None] * structure.phi[labels] + noise * rng.standard_normal((labels.size, n, n))
    return TrainingSet(inputs=inputs, targets=np.eye(p)[labels], reduction="mean")


def digits() -> TrainingSet:
    """Data set **D5**: scikit-learn's bundled handwritten digits (1,797 images, 8×8, 10 classes; no download).

    Preprocessing: pixels scaled by 1/16 to [0, 1], then centred per pixel (the mean image is removed);
    one-hot targets; mean loss.
    """
    from sklearn.datasets import load_digits  # the data ship inside scikit-learn

    bunch = load_digits()
    images = bunch.images.astype(float) / 16.0
    images -= images.mean(axis=0, keepdims=True)
    return TrainingSet(inputs=images, targets=np.eye(10)[bunch.target], reduction="mean")


def digits_with_grating_cue(amplitude: float = 0.225, seed: int = 0) -> TrainingSet:
    """Digits (D5) plus an independent second task whose cue is a pure grating (the book's discriminating variant).

    Every image gets ``±amplitude`` times the unit-norm checkerboard ``c(4, 4)`` (the Nyquist frequency, almost absent
    from the smooth digits), the sign drawn at random (``seed``); two extra one-hot outputs report the sign. The cue
    adds one structural mode with ``s ≈ 0.71·amplitude`` and ``Φ* ≈ n``: a mid-sized mode that is a near-perfect
    match to the Fourier basis. Pixels are then centred again; targets ``(N, 12)``; mean loss.
    """
    if not amplitude > 0:
        raise ValueError(f"amplitude must be > 0, got {amplitude}")
    base = digits()
    sign = np.random.default_rng(seed).choice([-1.0, 1.0], size=base.inputs.shape[0])
    images = base.inputs + amplitude * sign[:, None, None] * cosine_image(base.inputs.shape[-1], 4, 4)
    images -= images.mean(axis=0, keepdims=True)
    cue = np.stack([sign > 0, sign < 0], axis=1).astype(float)
    return TrainingSet(inputs=images, targets=np.concatenate([base.targets, cue], axis=1), reduction="mean")
