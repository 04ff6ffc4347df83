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
    "CUE_CONFLICT_GRATINGS",
    "CueConflictData",
    "cosine_image",
    "cue_conflict",
    "cue_conflict_patterns",
    "designed_structure",
    "digits",
    "digits_with_grating_cue",
    "noisy_templates",
    "RGB_SAMPLE_IMAGES",
    "rgb_crops",
    "row_signal",
    "star_images",
    "shared_pair_structure",
    "sine_image",
    "structure_items",
    "whitened_pixels",
]

Reduction = Literal["sum", "mean"]


def _orthonormality_tolerance(*arrays: NDArray[np.floating]) -> float:
    """Absolute tolerance of an orthonormality check in the arrays' precision: ``√ε`` of their common dtype.

    About half the digits: 1.5e-8 in float64 (an SVD is orthonormal to ~1e-15 there) and 3.5e-4 in float32
    (where an SVD of 8×8 images is orthonormal to ~1e-6 only).
    """
    dtype = np.result_type(*[np.asarray(a).dtype for a in arrays])
    return float(np.sqrt(np.finfo(dtype).eps))


def _real_array(name: str, value: object) -> NDArray[np.floating]:
    """``value`` as a numpy array (lists, tuples, scalars of ints become float64); an error naming ``name`` otherwise."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:  # ragged nested lists
        raise ValueError(f"{name} must be an array of real numbers, got {type(value).__name__}: {err}") from None
    if arr.dtype.kind in "iub":
        arr = arr.astype(float)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be a real floating array, got dtype {arr.dtype}")
    return arr


@dataclass(frozen=True)
class DatasetStructure:
    """``Σ_yx = Σ_α s_α u_α φ_αᵀ``: U ``(p, p)``, s ``(p,)`` decreasing, phi ``(p, n, n)`` orthonormal.

    **One mode order everywhere:** mode 1 has the largest ``s`` (``s`` non-increasing), as
    :meth:`TrainingSet.structure` returns it; an unsorted ``s`` is refused rather than silently re-sorted (which would
    relabel the modes). Array-likes are accepted (lists of numbers; integers become float64); float32 arrays are
    checked at float32 precision (:func:`_orthonormality_tolerance`).

    >>> DatasetStructure(U=[[1.0]], s=[2], phi=[[[0.5, 0.5], [0.5, 0.5]]]).s
    array([2.])
    """

    U: NDArray[np.floating]
    s: NDArray[np.floating]
    phi: NDArray[np.floating]

    def __post_init__(self) -> None:
        for name in ("U", "s", "phi"):
            object.__setattr__(self, name, _real_array(name, getattr(self, name)))
        if self.s.ndim != 1:
            raise ValueError(f"s must be one-dimensional (p,), got shape {self.s.shape}")
        p = self.s.shape[0]
        if self.U.shape != (p, p) or self.phi.ndim != 3 or self.phi.shape[0] != p:
            raise ValueError(
                f"inconsistent structure: U {self.U.shape}, s {self.s.shape}, phi {self.phi.shape}; "
                "expected U (p, p), s (p,), phi (p, n, n)"
            )
        if self.phi.shape[1] != self.phi.shape[2]:
            raise ValueError(f"phi images must be square, got {self.phi.shape[1:]}")
        for name, arr in (("U", self.U), ("s", self.s), ("phi", self.phi)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contains NaN or infinite values")
        tol = _orthonormality_tolerance(self.U, self.phi)
        flat = self.phi.reshape(p, -1)
        error = float(np.abs(flat @ flat.T - np.eye(p)).max())
        if error > tol:
            raise ValueError(
                f"the images phi must be orthonormal (unit norm, mutually orthogonal): max |φφᵀ − I| = {error:.2g} "
                f"exceeds {tol:.2g} (√ε of {np.result_type(self.phi.dtype)})"
            )
        error = float(np.abs(self.U.T @ self.U - np.eye(p)).max())
        if error > tol:
            raise ValueError(f"the columns of U must be orthonormal: max |UᵀU − I| = {error:.2g} exceeds {tol:.2g}")
        if np.any(self.s < 0):
            raise ValueError(f"singular values must be >= 0, got {self.s}")
        if np.any(np.diff(self.s) > 0):
            raise ValueError(
                f"s must be sorted in decreasing order (mode 1 = largest s, the library's one mode order), got {self.s}; "
                "sort it and permute the columns of U and the images phi alike: order = np.argsort(-s); "
                "DatasetStructure(U[:, order], s[order], phi[order])"
            )

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
    """Full-batch training data: inputs ``(N, n, n)``, targets ``(N, p)``, loss reduction.

    Array-likes are accepted; both must be real floating arrays (integer images such as ``uint8`` pixels are
    refused: scale them to floats first).
    """

    inputs: NDArray[np.floating]
    targets: NDArray[np.floating]
    reduction: Reduction = "sum"

    def __post_init__(self) -> None:
        for name in ("inputs", "targets"):
            value = getattr(self, name)
            if not isinstance(value, np.ndarray):  # lists, tuples: as arrays (the dtype is checked below)
                try:
                    object.__setattr__(self, name, np.asarray(value))
                except (TypeError, ValueError) as err:
                    raise ValueError(f"{name} must be an array, got {type(value).__name__}: {err}") from None
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
        """SVD of ``Σ_yx`` with signs fixed so that each ``u_α`` has a positive largest-|·| entry.

        Modes come in the library's one order, decreasing ``s`` (mode 1 = largest); in the precision of the inputs.
        """
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


DIGITS_PREPROCESSING = ("centred", "standardised", "unit")


def digits(preprocessing: str = "centred") -> TrainingSet:
    """Data set **D5**: scikit-learn's bundled handwritten digits (1,797 images, 8×8, 10 classes; no download).

    Pixels are first scaled by 1/16 to [0, 1]; then ``preprocessing``:

    * ``"centred"`` (the linear chapters): the mean image is removed, pixel by pixel;
    * ``"standardised"`` (the CNFA CNN): minus the global pixel mean, over the global standard deviation;
    * ``"unit"`` (ConvRFM): nothing more, so the background is 0 and zero padding adds no artificial border edge.

    One-hot targets (labels are ``targets.argmax(1)``); mean loss.
    """
    if preprocessing not in DIGITS_PREPROCESSING:
        raise ValueError(f"preprocessing must be one of {DIGITS_PREPROCESSING}, got {preprocessing!r}")
    from sklearn.datasets import load_digits  # the data ship inside scikit-learn

    bunch = load_digits()
    images = bunch.images.astype(float) / 16.0
    if preprocessing == "centred":
        images -= images.mean(axis=0, keepdims=True)
    elif preprocessing == "standardised":
        images = (images - images.mean()) / images.std()
    return TrainingSet(inputs=images, targets=np.eye(10)[bunch.target], reduction="mean")


def digits_with_grating_cue(amplitude: float = 0.225) -> TrainingSet:
    """Digits (D5) plus an independent second task whose cue is a pure grating (the book's discriminating variant).

    The unit-norm checkerboard ``c = c(4, 4)`` (the Nyquist frequency, almost absent from the smooth digits) is first
    projected out of every digit image; then every image appears twice, once with ``+amplitude·c`` and once with
    ``−amplitude·c``, and two extra one-hot outputs report the sign. The pairing makes the cue exactly uncorrelated
    with the digits (their cross terms in ``Σ_yx`` and ``Σ_xx`` cancel), and the projection makes the digit rows of
    ``Σ_yx`` orthogonal to ``c``: the SVD splits exactly into the nine digit modes and one cue mode with
    ``φ = c`` (``Φ* = n``), ``s = amplitude/√2`` and ``d = amplitude²``, a mid-sized mode that matches the Fourier
    basis perfectly. Targets ``(2N, 12)``; mean loss; the data are deterministic.
    """
    if not amplitude > 0:
        raise ValueError(f"amplitude must be > 0, got {amplitude}")
    base = digits()
    checker = cosine_image(base.inputs.shape[-1], 4, 4)
    clean = base.inputs - np.einsum("nij,ij->n", base.inputs, checker)[:, None, None] * checker
    images = np.concatenate([clean + amplitude * checker, clean - amplitude * checker])
    images -= images.mean(axis=0, keepdims=True)
    n_items = base.inputs.shape[0]
    cue = np.repeat(np.eye(2), n_items, axis=0)
    targets = np.concatenate([np.concatenate([base.targets, base.targets]), cue], axis=1)
    return TrainingSet(inputs=images, targets=targets, reduction="mean")


CUE_CONFLICT_GRATINGS = ((1, 3), (3, 1), (2, 5), (5, 2))
"""Texture frequencies ``(k1, k2)`` of the four cue-conflict classes (unit-norm cosine gratings, ``Φ* = n/√2``)."""


@dataclass(frozen=True)
class CueConflictData:
    """Data set **D4** ("texture versus shape"): four classes, each a *shape* plus a *texture* of equal energy, plus noise.

    Attributes:
        shapes, textures: ``(4, n, n)`` unit-norm cue images; all eight are mutually orthogonal.
        train: training set (both cues of the same class), one-hot targets ``(N, 4)``, mean loss.
        tests: test sets by name: ``"both cues"``, ``"shape only"``, ``"texture only"`` (targets: the class) and
            ``"conflict"`` (shape of class a with the texture of class b ≠ a; targets: the **shape** class a).
        conflict_texture: ``(N_test,)`` texture class ``b`` of each conflict image.
    """

    shapes: NDArray[np.floating]
    textures: NDArray[np.floating]
    train: TrainingSet
    tests: dict[str, TrainingSet]
    conflict_texture: NDArray[np.int64]


def cue_conflict_patterns(n: int = 16) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """The ``(4, n, n)`` shapes and textures of :func:`cue_conflict` (``n = 16`` only: the shapes are drawn for it).

    Textures: cosine gratings at :data:`CUE_CONFLICT_GRATINGS`, ``Φ* = n/√2 ≈ 11.3`` (one frequency pair each).
    Shapes: a vertical bar, a horizontal bar (1 px × 14 px), a 12×12 square outline and a diagonal line, mean-removed and
    Gram–Schmidt orthogonalised against the textures and each other, unit norm: spread spectra with ``Φ* ≈ 3.3–3.9``.
    """
    if n != 16:
        raise ValueError(f"the cue-conflict shapes are drawn for n = 16, got n = {n}")
    textures = np.stack([cosine_image(n, k1, k2) for k1, k2 in CUE_CONFLICT_GRATINGS])
    raw = np.zeros((4, n, n))
    raw[0, 1:15, 7] = 1.0  # vertical bar
    raw[1, 7, 1:15] = 1.0  # horizontal bar
    raw[2, 2:14, 2:14] = 1.0  # square outline
    raw[2, 3:13, 3:13] = 0.0
    raw[3, np.arange(1, 15), np.arange(1, 15)] = 1.0  # diagonal line
    basis = [t.ravel() for t in textures]
    shapes = []
    for image in raw:
        v = image.ravel() - image.mean()
        for b in basis:
            v = v - (v @ b) * b
        v /= np.linalg.norm(v)
        basis.append(v)
        shapes.append(v.reshape(n, n))
    return np.stack(shapes), textures


def cue_conflict(
    n_train: int = 2000, n_test: int = 1000, noise: float = 0.15, amplitude: float = float(np.sqrt(2.0)), seed: int = 0
) -> CueConflictData:
    """Data set **D4**: image of class ``c`` = ``amplitude·(shape_c + texture_c) + N(0, noise²)`` per pixel (n = 16).

    Shape and texture carry equal energy (``amplitude²`` each); the single-cue test images keep the cue's amplitude;
    a conflict image is ``amplitude·(shape_a + texture_b)`` with ``b ≠ a`` drawn uniformly. Classes are drawn
    uniformly from ``seed`` (one generator for every set). Research notes §5.2 (D4); the book's own experiment.
    """
    if n_train < 4 or n_test < 4 or not noise >= 0 or not amplitude > 0:
        raise ValueError(
            f"need n_train >= 4, n_test >= 4, noise >= 0 and amplitude > 0; got {n_train}, {n_test}, {noise}, {amplitude}"
        )
    shapes, textures = cue_conflict_patterns()
    rng = np.random.default_rng(seed)

    def make(shape_class, texture_class, use_shape=True, use_texture=True):
        images = noise * rng.standard_normal((shape_class.size, 16, 16))
        if use_shape:
            images += amplitude * shapes[shape_class]
        if use_texture:
            images += amplitude * textures[texture_class]
        return images

    def labelled(images, labels):
        return TrainingSet(inputs=images, targets=np.eye(4)[labels], reduction="mean")

    train_labels = rng.integers(0, 4, n_train)
    train = labelled(make(train_labels, train_labels), train_labels)
    tests = {}
    for name, flags in (("both cues", (True, True)), ("shape only", (True, False)), ("texture only", (False, True))):
        labels = rng.integers(0, 4, n_test)
        tests[name] = labelled(make(labels, labels, *flags), labels)
    shape_class = rng.integers(0, 4, n_test)
    texture_class = (shape_class + rng.integers(1, 4, n_test)) % 4
    tests["conflict"] = labelled(make(shape_class, texture_class), shape_class)
    return CueConflictData(shapes=shapes, textures=textures, train=train, tests=tests, conflict_texture=texture_class)


# --- image sets for the patch-AGOP chapters (Beaglehole et al. 2023); images (N, C, H, W), integer labels (N,) ---
def star_images(per_class: int, seed: int = 1717) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The authors' synthetic **star** data (``crfm_src/star_dataset.py`` of ``aradha/agop_feature_learning``).

    ``2·per_class`` images ``(3, 32, 32)`` of ``N(0, 0.3²)`` noise (float32); class 1 additionally has a 7×7 star of
    value 1 drawn in channels 0 and 1 only, at a random offset in ``[0, 17]²``; class 0 is noise. The draws replay the
    authors' generator call for call (Python ``random`` for offsets, numpy's legacy global generator for the noise,
    ``torch.randperm`` for the shuffle, all seeded with ``seed``), so ``seed=1717`` gives their data set.
    """
    import random

    import torch

    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    py = random.Random(seed)
    legacy = np.random.RandomState(seed)
    torch_gen = torch.Generator().manual_seed(seed)
    size = (3, 32, 32)
    star = [(5, slice(7, 14)), (4, slice(9, 12)), (3, slice(10, 11)), (6, slice(8, 13)), (7, slice(9, 12)),
            (8, slice(8, 13)), (9, slice(8, 10)), (9, slice(11, 13))]
    images, labels = [], []
    for _ in range(per_class):
        q, r = py.randint(0, 32 - 15), py.randint(0, 32 - 15)
        ex = (legacy.normal(size=size) * 3e-1).astype(np.float32)
        for row, cols in star:
            ex[:2, row + q, cols.start + r : cols.stop + r] = 1.0
        images.append(ex)
        labels.append(1)
    for _ in range(per_class):
        images.append((legacy.normal(size=size) * 3e-1).astype(np.float32))
        labels.append(0)
    order = torch.randperm(2 * per_class, generator=torch_gen).numpy()
    return np.stack(images)[order], np.asarray(labels, dtype=np.int64)[order]


def row_signal(n: int, sigma: float, seed: int = 0, rows: int = 16, cols: int = 32) -> tuple[NDArray[np.floating], NDArray[np.int64]]:
    """Karp et al.'s "local signal" task as in the authors' ``get_toy``: ``(n, 1, rows, cols)`` images of i.i.d.
    ``N(0, σ/cols)`` pixels with one random row replaced by ``y·1/√cols``, ``y = ±1``; labels ``(y + 1)/2``."""
    if n < 1 or not sigma > 0 or rows < 1 or cols < 1:
        raise ValueError(f"need n >= 1, sigma > 0, rows, cols >= 1; got {n}, {sigma}, {rows}, {cols}")
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, 1, rows, cols)) * np.sqrt(sigma / cols)
    y = rng.choice([-1.0, 1.0], size=n)
    where = rng.integers(0, rows, size=n)
    images[np.arange(n), 0, where] = y[:, None] / np.sqrt(cols)
    return images, ((y + 1) / 2).astype(np.int64)


RGB_SAMPLE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")


def rgb_crops(per_image: int, size: int = 16, seed: int = 0, names: tuple[str, ...] = RGB_SAMPLE_IMAGES
              ) -> tuple[NDArray[np.floating], NDArray[np.int64]]:
    """Random ``size×size`` RGB crops from scikit-image's bundled sample photos (no download), ``(N, 3, size, size)``,
    each channel standardised over the whole set; the label is the index of the source photo in ``names``."""
    from skimage import data as skdata

    if per_image < 1 or size < 2:
        raise ValueError(f"need per_image >= 1 and size >= 2, got {per_image}, {size}")
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for label, name in enumerate(names):
        if not hasattr(skdata, name):
            raise ValueError(f"scikit-image has no sample image {name!r}")
        img = np.asarray(getattr(skdata, name)(), dtype=float)
        if img.ndim != 3 or img.shape[2] < 3:
            raise ValueError(f"sample image {name!r} is not RGB (shape {img.shape})")
        img = img[..., :3] / 255.0
        rows = rng.integers(0, img.shape[0] - size + 1, per_image)
        cols = rng.integers(0, img.shape[1] - size + 1, per_image)
        crops += [img[r : r + size, c : c + size].transpose(2, 0, 1) for r, c in zip(rows, cols)]
        labels += [label] * per_image
    x = np.stack(crops)
    x = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3), keepdims=True)
    return x, np.asarray(labels, dtype=np.int64)
