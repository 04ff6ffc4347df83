"""Patch-AGOP, filter covariance, and the convolutional Recursive Feature Machine (Beaglehole et al. 2023).

Central objects (notation of the research notes §3.2):

* A **patch** ``x_(p) ∈ R^{C·q²}`` of a layer input ``(N, C, H, W)`` is its ``q×q`` window at position ``p``,
  flattened in (channel, row, col) order, i.e. the order of ``weight.reshape(C_out, -1)``; :func:`extract_patches`
  returns ``(N, P, C·q²)``.
* The **filter covariance** (neural feature matrix) of a conv layer is ``WᵀW`` with ``W`` the ``(C_out, C·q²)``
  reshaped weight (:func:`filter_covariance`).
* The **patch-AGOP** of the network ``f`` (``c`` outputs) from layer ℓ on, every patch an independent variable, is
  ``G = (1/N) Σ_i Σ_c Σ_p ∇_{x_(p)} f_c(x_i) ∇_{x_(p)} f_c(x_i)ᵀ``. Because ``h_p = W x_(p) + b``,
  ``G = Wᵀ Ḡ W`` with ``Ḡ = (1/N) Σ_{i,c,p} ∂f_c/∂h_p ∂f_c/∂h_pᵀ`` (the identity; :func:`patch_agop` computes
  both ways).
* The **CNFA** is ``WᵀW ∝ G`` (or ``∝ G^{1/2}``), measured by the Pearson correlation :func:`pearson`.
* **ConvRFM** (:func:`conv_rfm`) alternates kernel ridge regression with the depth-1 convolutional NTK
  :func:`conv_ntk` on transformed patches ``√M x_(p)`` and the update ``√M ← G^{1/2}/‖G^{1/2}‖_F``.
* **Deep linear CNNs** (:class:`LinearConvChain`, :class:`~how_cnns_learn.models.LinearCNN`) train by full-batch
  gradient descent on the squared loss from the data's second moments (:func:`train_linear_gd`).
* **Trained networks.** :func:`train_cnfa_cnns` trains the CNFA network (:class:`CNFACNN`) for many seeds at once:
  one batched model (``torch.func.stack_module_state`` + ``vmap``), each seed with its own initialisation and
  minibatch order, as :func:`~how_cnns_learn.training.train_classifier` would train it alone.

The ridge of every kernel fit is chosen on a *validation* split (:func:`select_ridge`); the authors' code chooses it
by test accuracy, which this book does not copy.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from .data import TrainingSet
from .repro import check_device, progress_bar, record_device
from .training import plain_optimiser, train_classifier

__all__ = [
    "CNFACNN",
    "CNFARuns",
    "ConvRFMResult",
    "LinearConvChain",
    "PREWITT",
    "channel_energy",
    "conv_ntk",
    "conv_rfm",
    "extract_patches",
    "filter_covariance",
    "filter_response",
    "kernel_ridge",
    "patch_agop",
    "patch_gradients",
    "pearson",
    "prewitt_correlation",
    "prewitt_correlations",
    "psd_power",
    "psd_sqrt",
    "select_ridge",
    "sequential_patch_agop",
    "spatial_dc_energy",
    "train_cnfa_cnns",
    "train_linear_gd",
]

#: The Prewitt kernel for horizontal edges (rows −1, 0, +1); its transpose detects vertical edges.
PREWITT = np.array([[-1.0, -1.0, -1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])


# ----------------------------------------------------------------------------------------------- patches
def _check_images(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}")


def extract_patches(images: torch.Tensor, size: int, padding: int = 0, mode: str = "zeros") -> torch.Tensor:
    """All ``size×size`` patches (stride 1) of ``images`` ``(N, C, H, W)``: ``(N, P, C·size²)``.

    Patches are flattened in (channel, row, col) order, the order of ``conv.weight.reshape(C_out, -1)``, and
    positions ``p`` run row-major over the output map (``P = H'·W'``, ``H' = H + 2·padding − size + 1``).
    ``mode`` is the conv's ``padding_mode``: ``"zeros"`` or ``"circular"``.
    """
    _check_images(images)
    if size < 1 or padding < 0:
        raise ValueError(f"need size >= 1 and padding >= 0, got size={size}, padding={padding}")
    if mode not in ("zeros", "circular"):
        raise ValueError(f"padding mode must be 'zeros' or 'circular', got {mode!r}")
    if mode == "circular" and padding:
        images = F.pad(images, (padding,) * 4, mode="circular")
        padding = 0
    H, W = images.shape[-2:]
    if size > H + 2 * padding or size > W + 2 * padding:
        raise ValueError(f"patch size {size} is larger than the padded image {H + 2 * padding}x{W + 2 * padding}")
    return F.unfold(images, size, padding=padding).transpose(1, 2)


def filter_covariance(weight: torch.Tensor | NDArray[np.floating]) -> NDArray[np.floating]:
    """``WᵀW`` ``(C·q², C·q²)`` for a conv weight ``(C_out, C, q, q)`` reshaped to ``(C_out, C·q²)``."""
    w = torch.as_tensor(weight).detach()
    if w.ndim != 4:
        raise ValueError(f"conv weight must have shape (C_out, C_in, q, q), got {tuple(w.shape)}")
    w = w.reshape(w.shape[0], -1).to(torch.float64)
    return (w.T @ w).cpu().numpy()


def _conv_geometry(conv: nn.Conv2d) -> tuple[int, int, str]:
    """(kernel size q, padding, padding mode) of a stride-1, square, ungrouped conv."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected a torch.nn.Conv2d, got {type(conv).__name__}")
    q = conv.kernel_size[0]
    if conv.kernel_size[1] != q or conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError(f"patch-AGOP needs a square, stride-1, undilated, ungrouped conv; got {conv}")
    if conv.padding == "same":
        if q % 2 == 0:
            raise ValueError(f"padding='same' needs an odd kernel size, got {q}")
        pad = q // 2
    elif conv.padding == "valid":
        pad = 0
    else:
        pad = int(conv.padding[0])
        if conv.padding[1] != pad:
            raise ValueError(f"patch-AGOP needs equal row and column padding, got {conv.padding}")
    if conv.padding_mode not in ("zeros", "circular"):
        raise ValueError(f"padding mode must be 'zeros' or 'circular', got {conv.padding_mode!r}")
    return q, pad, conv.padding_mode


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """Full float32 precision on CUDA: no TF32 in cuDNN convolutions or CUDA matmuls (a no-op on the CPU)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def patch_agop(
    layer_input: torch.Tensor,
    conv: nn.Conv2d,
    tail: Callable[[torch.Tensor], torch.Tensor],
    method: str = "identity",
) -> NDArray[np.floating]:
    """Patch-AGOP ``G`` ``(C·q², C·q²)`` of ``f = tail ∘ conv`` at ``layer_input`` ``(N, C, H, W)``.

    ``tail`` maps the conv's pre-activation ``(N, C_out, H', W')`` to outputs ``(N, c)``.
    ``method="identity"``: one backward pass per output to the pre-activation ``h``, then ``G = Wᵀ Ḡ W``
    (research notes §3.2). ``method="direct"``: every patch is an input of its own (``h = patches·Wᵀ + b``) and
    autograd gives ``∇_{x_(p)} f_c`` for all patches at once; the reference implementation.

    The gradients are computed in the network's dtype; their outer products are summed, and ``G`` formed, in
    float64 (for a float64 network this is the plain computation; for a float32 one, ``G`` carries the float32
    rounding of the gradients, about 10⁻⁷ relative, but ``G = WᵀḠW`` has rank at most ``C_out`` to float64
    rounding and is symmetric to it; on CUDA, TF32 is switched off for the computation).
    """
    _check_images(layer_input, "layer_input")
    if method not in ("identity", "direct"):
        raise ValueError(f"method must be 'identity' or 'direct', got {method!r}")
    _conv_geometry(conv)
    with _no_tf32():
        G = _patch_agop(layer_input, conv, tail, method)
    return G.detach().to(torch.float64).cpu().numpy()


def _patch_agop(layer_input: torch.Tensor, conv: nn.Conv2d, tail: Callable[[torch.Tensor], torch.Tensor],
                method: str) -> torch.Tensor:
    """:func:`patch_agop` as a float64 tensor on the layer input's device (arguments already checked)."""
    x = layer_input.detach()
    N = x.shape[0]
    Wm = conv.weight.reshape(conv.out_channels, -1)
    if method == "identity":
        h = conv(x).detach().requires_grad_(True)
        out = tail(h)
        _check_outputs(out, N)
        gbar = torch.zeros(conv.out_channels, conv.out_channels, dtype=torch.float64, device=h.device)
        for c in range(out.shape[1]):
            (g,) = torch.autograd.grad(out[:, c].sum(), h, retain_graph=c < out.shape[1] - 1)
            g = g.permute(0, 2, 3, 1).reshape(-1, conv.out_channels).to(torch.float64)
            gbar += g.T @ g
        W = Wm.detach().to(torch.float64)
        G = W.T @ (gbar / N) @ W
    else:
        g = patch_gradients(x, conv, tail)  # (N, c, P, d)
        g = g.reshape(-1, g.shape[-1]).to(torch.float64)
        G = g.T @ g / N
    return G


def patch_gradients(layer_input: torch.Tensor, conv: nn.Conv2d, tail: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``∇_{x_(p)} f_c`` for every image, output and patch, ``(N, c, P, C·q²)``: every patch of ``layer_input``
    ``(N, C, H, W)`` is an independent input of ``f = tail(h)``, ``h_p = W x_(p) + b`` (one backward pass per output)."""
    _check_images(layer_input, "layer_input")
    q, pad, mode = _conv_geometry(conv)
    x = layer_input.detach()
    N = x.shape[0]
    patches = extract_patches(x, q, pad, mode).requires_grad_(True)
    Hout = x.shape[-2] + 2 * pad - q + 1
    Wout = x.shape[-1] + 2 * pad - q + 1
    h = patches @ conv.weight.reshape(conv.out_channels, -1).detach().T
    if conv.bias is not None:
        h = h + conv.bias.detach()
    out = tail(h.transpose(1, 2).reshape(N, conv.out_channels, Hout, Wout))
    _check_outputs(out, N)
    grads = []
    for c in range(out.shape[1]):
        (g,) = torch.autograd.grad(out[:, c].sum(), patches, retain_graph=c < out.shape[1] - 1)
        grads.append(g)
    return torch.stack(grads, dim=1)


def _check_outputs(out: torch.Tensor, N: int) -> None:
    if out.ndim != 2 or out.shape[0] != N:
        raise ValueError(f"tail must return outputs of shape (N={N}, c), got {tuple(out.shape)}")


def sequential_patch_agop(model: nn.Sequential, index: int, images: torch.Tensor, method: str = "identity") -> NDArray[np.floating]:
    """Patch-AGOP of conv layer ``model[index]`` of a :class:`torch.nn.Sequential` at ``images``: the layer input is
    ``model[:index](images)`` and the tail is ``model[index + 1:]``."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be a torch.nn.Sequential, got {type(model).__name__}")
    if not 0 <= index < len(model) or not isinstance(model[index], nn.Conv2d):
        raise ValueError(f"model[{index}] is not a Conv2d layer of the model")
    layers = list(model)  # plain Sequentials: slicing a subclass would call its constructor
    with torch.no_grad(), _no_tf32():
        layer_input = nn.Sequential(*layers[:index])(images)
    return patch_agop(layer_input, layers[index], nn.Sequential(*layers[index + 1 :]), method)


# ----------------------------------------------------------------------------------------------- matrices
def _as_square(A: NDArray[np.floating] | torch.Tensor, name: str) -> NDArray[np.floating]:
    a = np.asarray(torch.as_tensor(A).detach().cpu().numpy() if isinstance(A, torch.Tensor) else A, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def pearson(A: NDArray[np.floating], B: NDArray[np.floating], off_diagonal: bool = False) -> float:
    """Pearson correlation of the entries of two equal-shape square matrices (centred by the mean entry).

    ``off_diagonal=True`` uses only the entries off the diagonal (removes the trivial identity-like part).
    Invariant to positive scaling and to adding a constant to every (used) entry; in ``[−1, 1]``.
    """
    a, b = _as_square(A, "A"), _as_square(B, "B")
    if a.shape != b.shape:
        raise ValueError(f"A and B must have the same shape, got {a.shape} and {b.shape}")
    if off_diagonal:
        if a.shape[0] < 2:
            raise ValueError("off-diagonal correlation needs matrices of size >= 2")
        mask = ~np.eye(a.shape[0], dtype=bool)
        a, b = a[mask], b[mask]
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError("Pearson correlation of a constant matrix is undefined")
    return float(a @ b / (na * nb))


def psd_power(A: NDArray[np.floating], power: float) -> NDArray[np.floating]:
    """``A^power`` of a symmetric PSD matrix by eigendecomposition (eigenvalues below 0, round-off, clipped to 0)."""
    a = _as_square(A, "A")
    if not np.allclose(a, a.T, rtol=1e-8, atol=1e-12 * max(1.0, float(np.abs(a).max()))):
        raise ValueError("A must be symmetric")
    if not power > 0:
        raise ValueError(f"power must be > 0, got {power}")
    evals, evecs = np.linalg.eigh((a + a.T) / 2)
    scale = max(float(np.abs(evals).max()), 1e-300)
    if evals.min() < -1e-8 * scale:
        raise ValueError(f"A is not positive semi-definite (smallest eigenvalue {evals.min():.3g})")
    return (evecs * np.clip(evals, 0, None) ** power) @ evecs.T


def psd_sqrt(A: NDArray[np.floating]) -> NDArray[np.floating]:
    """The PSD square root ``A^{1/2}`` (:func:`psd_power` with power ½)."""
    return psd_power(A, 0.5)


# ----------------------------------------------------------------------------------------------- kernels
def _ntk_entries(dots: torch.Tensor, na: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
    """``Θ(a, b) = (‖a‖‖b‖ sin θ + 2(π − θ) a·b)/π`` from the dot products and norms (cos θ clamped)."""
    prod = na * nb
    cos = (dots / prod.clamp_min(1e-300)).clamp(-1 + 1e-6, 1 - 1e-6)
    theta = torch.arccos(cos)
    return (prod * torch.sin(theta) + 2 * (math.pi - theta) * dots) / math.pi


def conv_ntk(x_patches: torch.Tensor, z_patches: torch.Tensor, chunk: int = 2_000_000) -> torch.Tensor:
    """Depth-1 convolutional NTK ``K(x, z) = (1/P) Σ_p Θ(x_(p), z_(p))`` (same positions only), ``(n, m)``.

    ``Θ(a, b) = (‖a‖‖b‖/π)(sin θ + (π − θ) cos θ) + (a·b)(π − θ)/π`` is the NTK of one hidden ReLU layer
    (infinite width) at the patch; the Flatten→Dense readout averages positions. It equals the neural-tangents
    CNTK of ``Conv → √2·ReLU → Flatten → Dense`` up to a constant factor (research notes §3.4, R-c2).
    ``x_patches`` ``(n, P, d)``, ``z_patches`` ``(m, P, d)``; differentiable (``cos θ`` clamped to ±(1 − 10⁻⁶)).
    ``chunk`` bounds the size of the ``(n, m_chunk, P)`` intermediate.
    """
    if x_patches.ndim != 3 or z_patches.ndim != 3 or x_patches.shape[1:] != z_patches.shape[1:]:
        raise ValueError(f"patches must be (n, P, d) and (m, P, d) with equal P, d; got "
                         f"{tuple(x_patches.shape)} and {tuple(z_patches.shape)}")
    n, P, _ = x_patches.shape
    nx = x_patches.norm(dim=-1)  # (n, P)
    nz = z_patches.norm(dim=-1)  # (m, P)
    step = max(1, chunk // max(1, n * P))
    blocks = []
    for s in range(0, z_patches.shape[0], step):
        zb = z_patches[s : s + step]
        dots = torch.einsum("npd,mpd->nmp", x_patches, zb)
        blocks.append(_ntk_entries(dots, nx[:, None, :], nz[s : s + step][None, :, :]).mean(-1))
    return torch.cat(blocks, dim=1)


def _ntk_matrix(x_patches: torch.Tensor, z_patches: torch.Tensor, *, symmetric: bool = False,
                chunk: int = 8_000_000, block: int = 65_536) -> torch.Tensor:
    """:func:`conv_ntk` without autograd, faster: ``(n, m)``, equal to it up to float rounding (tested to 1e-12).

    The dot products of every position come from one batched matrix product per chunk of ``z`` in (position,
    x, z) layout; the entrywise formula then runs on blocks of about ``block`` entries (they stay in cache) with
    ``sin θ = √(1 − cos²θ)`` and in-place operations, and the positions are summed block by block.
    ``symmetric=True`` (``z_patches`` is ``x_patches``): only the blocks on and above the diagonal are computed
    and the rest is mirrored.
    """
    n, P, _ = x_patches.shape
    m = z_patches.shape[0]
    if symmetric and m != n:
        raise ValueError(f"symmetric=True needs z_patches = x_patches, got {n} and {m} items")
    nx = x_patches.norm(dim=-1).T.contiguous()  # (P, n)
    nz = z_patches.norm(dim=-1).T.contiguous()  # (P, m)
    xt = x_patches.transpose(0, 1)  # (P, n, d)
    out = torch.empty(n, m, dtype=x_patches.dtype, device=x_patches.device)
    step = max(1, chunk // max(1, n * P))
    for j in range(0, m, step):
        zb = z_patches[j : j + step].permute(1, 2, 0)  # (P, d, mb)
        mb = zb.shape[-1]
        r = min(n, j + mb) if symmetric else n  # rows on and above the diagonal
        dots = torch.bmm(xt[:, :r], zb)  # (P, r, mb)
        acc = torch.zeros(r, mb, dtype=out.dtype, device=out.device)
        pb = max(1, block // (r * mb))
        for p in range(0, P, pb):
            ab = dots[p : p + pb]
            prod = nx[p : p + pb, :r, None] * nz[p : p + pb, None, j : j + mb]
            prod.clamp_min_(1e-300)
            cos = torch.div(ab, prod).clamp_(-1 + 1e-6, 1 - 1e-6)
            theta = torch.arccos(cos)
            theta.sub_(math.pi).mul_(ab).mul_(-2.0)  # 2(π − θ)·a·b
            cos.mul_(cos).neg_().add_(1.0).sqrt_().mul_(prod)  # ‖a‖‖b‖ sin θ
            acc += theta.add_(cos).sum(0)
        out[:r, j : j + mb] = acc
    out /= math.pi * P
    if symmetric:
        upper = torch.triu_indices(n, n, 1, device=out.device)
        out[upper[1], upper[0]] = out[upper[0], upper[1]]
    return out


def _ntk_predictor_agop(tr: torch.Tensor, z: torch.Tensor, root: torch.Tensor, alpha: torch.Tensor,
                        scale: torch.Tensor) -> torch.Tensor:
    """Patch-AGOP ``(d, d)`` of the kernel predictor ``f_c(z) = Σ_i α_ic K(x_i, z)/scale`` (:func:`conv_ntk`) with
    respect to the raw patches of ``S`` images, the kernel seeing their transformed patches ``z_(p) = raw_(p) @ root``
    ``(S, P, d)`` (given) and the (transformed) training patches ``tr`` ``(n, P, d)``; ``alpha`` ``(n, c)``. With
    ``h_c = ∂f_c/∂z`` the gradient in the raw patch is ``h_c rootᵀ``, so ``G = root (Σ_c h_cᵀh_c) rootᵀ/S``: one
    product with ``root`` for all classes.

    The gradient of ``Θ(a, b) = (‖a‖‖b‖ sin θ + 2(π − θ) a·b)/π`` in ``b`` is written out,
    ``∂Θ/∂b = [(2(π − θ) + a·b/(‖a‖‖b‖ sin θ)) a + (‖a‖ sin θ/‖b‖ − (a·b)²/(‖a‖‖b‖³ sin θ)) b]/π``, with autograd's
    conventions where :func:`conv_ntk` is not differentiable: where ``cos θ`` is clamped (nearly parallel patches)
    ``θ`` is a constant (the terms with ``1/sin θ`` drop), and a zero patch contributes no ``b`` term. All classes
    and positions at once, instead of one backward pass per class through the kernel; equal to autograd through
    :func:`conv_ntk` up to float rounding (tested).
    """
    n, P, _ = tr.shape
    S = z.shape[0]
    xt, zt = tr.transpose(0, 1), z.transpose(0, 1)  # (P, n, d), (P, S, d)
    na, nb = tr.norm(dim=-1).T[:, :, None], z.norm(dim=-1).T[:, None, :]  # (P, n, 1), (P, 1, S)
    dots = torch.bmm(xt, zt.transpose(1, 2))  # (P, n, S)
    prod = (na * nb).clamp_min(1e-300)
    cos = dots / prod
    inside = ((cos >= -1 + 1e-6) & (cos <= 1 - 1e-6)).to(dots.dtype)
    cos = cos.clamp(-1 + 1e-6, 1 - 1e-6)
    theta = torch.arccos(cos)
    sin = torch.sqrt(1 - cos * cos)
    angular = inside * dots / (prod * sin)  # a·b/(‖a‖‖b‖ sin θ) where θ varies, else 0
    coef_a = (2 * (math.pi - theta) + angular) / math.pi  # multiplies a = x_i(p)
    nb_safe = nb.clamp_min(1e-300)
    coef_b = torch.where(nb > 0, (na * sin - angular * dots / nb_safe) / nb_safe, 0.0) / math.pi  # multiplies b
    beta = torch.matmul(alpha.T, coef_b)  # (P, c, S): Σ_i α_ic coef_b
    H = torch.zeros(root.shape, dtype=tr.dtype, device=tr.device)
    for c in range(alpha.shape[1]):
        g = torch.bmm((coef_a * alpha[:, c, None]).transpose(1, 2), xt) + beta[:, c, :, None] * zt  # (P, S, d)
        g = g.reshape(-1, g.shape[-1]) / (scale * P)  # h_c: the gradient in the transformed patch
        H += g.T @ g
    return root @ H @ root.T / S


def kernel_ridge(K_train: torch.Tensor, targets: torch.Tensor, ridge: float) -> torch.Tensor:
    """Coefficients ``α = (K + λI)⁻¹ Y`` ``(n, c)``; ``K`` is the (already normalised) train kernel ``(n, n)``."""
    if not ridge > 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    if K_train.ndim != 2 or K_train.shape[0] != K_train.shape[1] or targets.shape[0] != K_train.shape[0]:
        raise ValueError(f"K_train must be (n, n) and targets (n, c); got {tuple(K_train.shape)}, {tuple(targets.shape)}")
    eye = torch.eye(K_train.shape[0], dtype=K_train.dtype, device=K_train.device)
    return torch.linalg.solve(K_train + ridge * eye, targets)


def _accuracy(pred: torch.Tensor, targets: torch.Tensor) -> float:
    return float((pred.argmax(1) == targets.argmax(1)).double().mean())


def select_ridge(
    K_train: torch.Tensor, y_train: torch.Tensor, K_val: torch.Tensor, y_val: torch.Tensor, grid: Sequence[float]
) -> tuple[float, float]:
    """The ridge of ``grid`` with the best validation accuracy (ties: the larger ridge), and that accuracy.

    ``K_val`` is ``(n_val, n_train)``. The choice never looks at test data.
    """
    if len(grid) == 0 or any(not g > 0 for g in grid):
        raise ValueError(f"ridge grid must be a non-empty list of positive numbers, got {list(grid)}")
    best = (-1.0, 0.0)
    for lam in sorted(grid):
        acc = _accuracy(K_val @ kernel_ridge(K_train, y_train, lam), y_val)
        if acc >= best[0]:
            best = (acc, lam)
    return best[1], best[0]


@dataclass
class ConvRFMResult:
    """Per iteration ``t = 0..T−1``: the ridge chosen on validation, validation/test accuracy, test MSE (sum over
    outputs, mean over images; NaN at iterations not evaluated on the test split, ``conv_rfm(test_at=...)``), and the patch transform ``sqrt_M[t]`` used (``sqrt_M[0] = I``). ``agops[t]`` is the
    patch-AGOP of iteration ``t``'s predictor. :attr:`M` is the last *metric* ``M = (√M)² = G/‖G^{1/2}‖_F²`` (the
    kernel sees ``x_(p)ᵀ M z_(p)``; the authors' notebooks store the transform ``√M`` under the name ``M``)."""

    ridge: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    test_mse: list[float] = field(default_factory=list)
    sqrt_M: list[NDArray[np.floating]] = field(default_factory=list)
    agops: list[NDArray[np.floating]] = field(default_factory=list)

    @property
    def M(self) -> NDArray[np.floating]:
        if not self.agops:
            raise ValueError("no AGOP computed: run at least two iterations")
        G = self.agops[-1]
        return G / np.linalg.norm(psd_sqrt(G)) ** 2


def conv_rfm(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    patch_size: int,
    padding: int = 0,
    iterations: int = 2,
    ridge_grid: Sequence[float] = (1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    agop_samples: int = 20,
    test_at: Sequence[int] | None = None,
    shared: dict | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> ConvRFMResult:
    """ConvRFM (research notes §3.2; metric ``M_t``, transform ``√M_t``): for ``t = 0..iterations−1``: transform every patch by ``√M_t``, fit kernel
    ridge regression with :func:`conv_ntk` (normalised by ``max K_train``; ridge chosen on ``val``), evaluate on
    ``test``, then (except after the last iteration) compute the patch-AGOP of the predictor with respect to the
    *raw* patches of the first ``agop_samples`` training images and set ``√M_{t+1} = G^{1/2}/‖G^{1/2}‖_F``.

    Each split is ``(images (n, C, H, W), one-hot targets (n, c))``, float64 recommended; the splits are moved to
    ``device`` (validated; reported to :func:`~how_cnns_learn.repro.record_device`), where the kernels, the ridge
    solves and the AGOP are computed (the ``d×d`` square root ``G^{1/2}`` is taken on the CPU in float64).

    ``test_at``: the iterations evaluated on ``test`` (negative numbers count from the end, as in Python; ``None``:
    all); at the others the test kernel is not computed and the test accuracy and MSE are recorded as NaN.

    ``shared``: a dict given to several calls on the same ``train`` and ``test`` image tensors and patch geometry
    (runs that differ only in the validation split or the ridge grid). Iteration 0's kernels do not depend on
    either (``√M_0 = I``): the first call stores its train kernel and its test kernel there, the others reuse
    them. A dict filled by a call on other tensors, or on tensors changed in place since, raises ``ValueError``.

    Computation (equal to the plain loop with :func:`conv_ntk` and autograd up to float rounding; tested): kernels by
    :func:`_ntk_matrix` (the train kernel symmetric, half computed; the validation kernel reused when ``val`` is
    ``train``; validation and test patches extracted and transformed in chunks of images), the AGOP by
    :func:`_ntk_predictor_agop` (the kernel's gradient written out, all classes at once, on the AGOP images' patches
    as already transformed for the train kernel, and one product with ``√M_t`` for all classes).
    """
    for name, (X, Y) in (("train", train), ("val", val), ("test", test)):
        _check_images(X, f"{name} images")
        if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
            raise ValueError(f"{name} targets must be one-hot (n, c) matching the images, got {tuple(Y.shape)}")
    if iterations < 1 or agop_samples < 1:
        raise ValueError(f"need iterations >= 1 and agop_samples >= 1, got {iterations}, {agop_samples}")
    if test_at is None:
        tested = set(range(iterations))
    else:
        if any(not -iterations <= int(t) < iterations for t in test_at):
            raise ValueError(f"test_at must hold iterations in [-{iterations}, {iterations}), got {list(test_at)}")
        tested = {int(t) % iterations for t in test_at}
    if shared is not None and not isinstance(shared, dict):
        raise TypeError(f"shared must be a dict (or None), got {type(shared).__name__}")
    dev = check_device(device)
    (Xtr, Ytr), (Xva, Yva), (Xte, Yte) = ((X.to(dev), Y.to(dev)) for X, Y in (train, val, test))
    record_device(Xtr, by="conv_rfm")
    P_tr = extract_patches(Xtr, patch_size, padding)
    d = P_tr.shape[-1]
    val_is_train = val[0] is train[0] and val[1] is train[1]
    images_per_chunk = max(1, 16_000_000 // max(1, P_tr.shape[1] * d))  # patches of one chunk: ~128 MB in float64
    root = torch.eye(d, dtype=Xtr.dtype, device=Xtr.device)
    result = ConvRFMResult()

    def kernel_to(tr: torch.Tensor, X: torch.Tensor, t: int) -> torch.Tensor:
        """conv_ntk(tr, √M_t-transformed patches of X)ᵀ, ``(len(X), n_train)``; patches extracted chunk by chunk."""
        blocks = []
        for start in range(0, X.shape[0], images_per_chunk):
            patches = extract_patches(X[start : start + images_per_chunk], patch_size, padding)
            blocks.append(_ntk_matrix(tr, patches if t == 0 else patches @ root))
        return torch.cat(blocks, dim=1).T

    key = (train[0], test[0], train[0]._version, test[0]._version, patch_size, padding, str(dev))
    if shared and (len(shared.get("key", ())) != len(key)
                   or not all(a is b if isinstance(a, torch.Tensor) else a == b for a, b in zip(shared["key"], key))):
        raise ValueError("shared holds the iteration-0 kernels of other train/test images or patch geometry "
                         "(or the images were changed in place): give a new dict")

    def initial_kernel(name: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Iteration 0's (unscaled) train or test kernel, from ``shared`` when a previous call stored it."""
        if shared is None:
            return compute()
        shared["key"] = key
        if name not in shared:
            shared[name] = compute()
        return shared[name]

    for t in progress_bar(range(iterations), desc="ConvRFM", enabled=progress):
        result.sqrt_M.append(root.cpu().numpy().copy())
        tr = P_tr if t == 0 else P_tr @ root  # skip the identity (the costly step)
        if t == 0:
            K_tr = initial_kernel("train", lambda: _ntk_matrix(tr, tr, symmetric=True))
        else:
            K_tr = _ntk_matrix(tr, tr, symmetric=True)
        scale = K_tr.max()
        K_tr = K_tr / scale
        K_va = K_tr if val_is_train else kernel_to(tr, Xva, t) / scale
        lam, val_acc = select_ridge(K_tr, Ytr, K_va, Yva, ridge_grid)
        alpha = kernel_ridge(K_tr, Ytr, lam)
        result.ridge.append(lam)
        result.val_accuracy.append(val_acc)
        if t in tested:
            K_te = initial_kernel("test", lambda: kernel_to(tr, Xte, t)) if t == 0 else kernel_to(tr, Xte, t)
            pred = (K_te / scale) @ alpha
            result.test_accuracy.append(_accuracy(pred, Yte))
            result.test_mse.append(float(((pred - Yte) ** 2).sum(1).mean()))
        else:
            result.test_accuracy.append(float("nan"))
            result.test_mse.append(float("nan"))
        if t == iterations - 1:
            break
        G = _ntk_predictor_agop(tr, tr[:agop_samples], root, alpha, scale)  # the AGOP images: the first training images
        result.agops.append(G.cpu().numpy())
        root_np = psd_sqrt(G.cpu().numpy())
        root = torch.as_tensor(root_np / np.linalg.norm(root_np), dtype=Xtr.dtype, device=Xtr.device)
    return result


# ----------------------------------------------------------------------------------------------- diagnostics
def _unit(u: NDArray[np.floating], channels: int, size: int) -> NDArray[np.floating]:
    v = np.asarray(u, dtype=float).reshape(-1)
    if v.size != channels * size * size:
        raise ValueError(f"vector of length {v.size} is not a {channels}×{size}×{size} patch")
    norm = np.linalg.norm(v)
    if norm == 0:
        raise ValueError("the zero vector has no direction")
    return v / norm


def spatial_dc_energy(u: NDArray[np.floating], channels: int = 1, size: int = 3) -> NDArray[np.floating]:
    """Per channel, the fraction of ``‖u‖²`` in the spatially constant (DC) component: ``(Σ_j u_cj)²/(q²‖u‖²)``,
    ``(channels,)``. A random unit vector has about ``1/q²`` per channel; an edge detector ≈ 0."""
    v = _unit(u, channels, size).reshape(channels, -1)
    return v.sum(1) ** 2 / size**2


def channel_energy(u: NDArray[np.floating], channels: int, size: int) -> NDArray[np.floating]:
    """Fraction of ``‖u‖²`` in each channel, ``(channels,)`` (sums to 1)."""
    v = _unit(u, channels, size).reshape(channels, -1)
    return (v**2).sum(1)


def prewitt_correlation(u: NDArray[np.floating]) -> float:
    """Largest ``|Pearson|`` of a 3×3 patch vector with :data:`PREWITT` and its transpose (edge detectors ≈ 1)."""
    v = _unit(u, 1, 3)
    out = 0.0
    for k in (PREWITT, PREWITT.T):
        out = max(out, abs(float(np.corrcoef(v, k.ravel())[0, 1])))
    return out


def prewitt_correlations(U: NDArray[np.floating]) -> NDArray[np.floating]:
    """:func:`prewitt_correlation` of every row of ``U`` ``(k, 9)``, ``(k,)``, in a few array operations (equal to it
    up to float rounding; e.g. for the null distribution of many random directions)."""
    u = np.asarray(U, dtype=float)
    if u.ndim != 2 or u.shape[1] != 9:
        raise ValueError(f"U must have shape (k, 9): one 3×3 patch vector per row, got {u.shape}")
    if np.any(np.linalg.norm(u, axis=1) == 0):
        raise ValueError("the zero vector has no direction")
    centred = u - u.mean(1, keepdims=True)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    kernels = np.stack([k.ravel() - k.mean() for k in (PREWITT, PREWITT.T)], axis=1)  # (9, 2)
    kernels /= np.linalg.norm(kernels, axis=0)
    return np.abs(centred @ kernels).max(1)


def filter_response(images: torch.Tensor, u: NDArray[np.floating], size: int, padding: int = 0) -> NDArray[np.floating]:
    """``|⟨u, x_(p)⟩|`` at every position: images ``(N, C, H, W)`` filtered by the patch vector ``u``, ``(N, H', W')``
    (the authors' ``‖u uᵀ x_(p)‖`` for unit ``u``)."""
    _check_images(images)
    C = images.shape[1]
    v = torch.as_tensor(_unit(u, C, size), dtype=images.dtype)
    H = images.shape[-2] + 2 * padding - size + 1
    W = images.shape[-1] + 2 * padding - size + 1
    r = (extract_patches(images, size, padding) @ v).abs()
    return r.reshape(images.shape[0], H, W).detach().cpu().numpy()


# ----------------------------------------------------------------------------------------------- models
class CNFACNN(nn.Sequential):
    """The CNFA test network (R-c1): ``Conv(C_in→width, q×q, pad q//2, no bias) → ReLU → Conv(width→width) → ReLU →
    Flatten → Linear(width·n² → classes)``; every weight ``N(0, init_std²)``, biases zero. Input ``(N, C_in, n, n)``.
    Conv layers are at indices 0 and 2."""

    def __init__(self, n: int = 8, in_channels: int = 1, width: int = 64, classes: int = 10, kernel_size: int = 3,
                 init_std: float = 0.01, dtype: torch.dtype = torch.float32):
        if n < 1 or width < 1 or classes < 2 or kernel_size % 2 == 0 or not init_std > 0:
            raise ValueError(f"need n >= 1, width >= 1, classes >= 2, odd kernel_size, init_std > 0; got "
                             f"{n}, {width}, {classes}, {kernel_size}, {init_std}")
        pad = kernel_size // 2
        super().__init__(
            nn.Conv2d(in_channels, width, kernel_size, padding=pad, bias=False, dtype=dtype), nn.ReLU(),
            nn.Conv2d(width, width, kernel_size, padding=pad, bias=False, dtype=dtype), nn.ReLU(),
            nn.Flatten(), nn.Linear(width * n * n, classes, dtype=dtype),
        )
        with torch.no_grad():
            for m in self:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.normal_(0.0, init_std)
                    if m.bias is not None:
                        m.bias.zero_()

    @property
    def conv_indices(self) -> list[int]:
        return [i for i, m in enumerate(self) if isinstance(m, nn.Conv2d)]


class LinearConvChain(nn.Sequential):
    """A deep linear CNN: ``Conv(1→C, q×q, circular 'same', no bias)``, then ``depth − 2`` ``1×1`` convs ``C→C``,
    then ``Flatten → Linear(C·n² → outputs, no bias)``: ``depth`` weight layers, all linear. Input ``(N, 1, n, n)``.
    Every weight ``N(0, init_std²)``. For ``depth = 2`` this is :class:`~how_cnns_learn.models.LinearCNN`."""

    def __init__(self, n: int, kernel_size: int, outputs: int, channels: int, depth: int, init_std: float,
                 dtype: torch.dtype = torch.float64):
        if depth < 2 or kernel_size % 2 == 0 or not 1 <= kernel_size <= n or channels < 1 or not init_std > 0:
            raise ValueError(f"need depth >= 2, odd kernel_size in [1, n], channels >= 1, init_std > 0; got "
                             f"{depth}, {kernel_size}, {channels}, {init_std}")
        layers: list[nn.Module] = [nn.Conv2d(1, channels, kernel_size, padding="same", padding_mode="circular",
                                             bias=False, dtype=dtype)]
        layers += [nn.Conv2d(channels, channels, 1, bias=False, dtype=dtype) for _ in range(depth - 2)]
        layers += [nn.Flatten(), nn.Linear(channels * n * n, outputs, bias=False, dtype=dtype)]
        super().__init__(*layers)
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0.0, init_std)


# ----------------------------------------------------------------------------------------------- batched training
@dataclass
class CNFARuns:
    """Networks of :func:`train_cnfa_cnns`, one per seed (in the order of ``seeds``): the trained and the initial
    networks (ordinary :class:`CNFACNN` modules on the training device), the final test accuracy ``(S,)`` and the
    device the training ran on."""

    seeds: list[int]
    trained: list[CNFACNN]
    initial: list[CNFACNN]
    test_accuracy: NDArray[np.floating]
    device: str


def train_cnfa_cnns(
    seeds: Sequence[int],
    data: TrainingSet,
    test_data: TrainingSet,
    *,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    init_std: float = 0.01,
    width: int = 64,
    kernel_size: int = 3,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    method: str = "auto",
    progress: bool = False,
) -> CNFARuns:
    """Train one :class:`CNFACNN` per seed with Adam (torch defaults, learning rate ``lr``) on the cross-entropy of
    minibatches of ``batch_size`` training images ``(N, n, n)`` (labels ``data.targets.argmax(1)``), all seeds in
    one batched model.

    Seed ``s`` is exactly the network :func:`~how_cnns_learn.training.train_classifier` trains after
    ``torch.manual_seed(s); CNFACNN(...)`` with ``test_data`` given and ``seed=s``: the initial weights come from
    ``torch.manual_seed(s)`` (drawn on the CPU, then moved to ``device``) and the minibatch order from
    ``torch.Generator().manual_seed(s)``, so a seed's run does not depend on the other seeds of the batch. The
    parameters of the S networks are stacked (``torch.func.stack_module_state``), the per-seed gradients of the
    per-seed losses come from ``vmap(grad(loss))`` in one pass, and one Adam updates the stacked tensors (Adam is
    elementwise, so this is S independent Adams). Equal to S separate runs up to float rounding (tested in float64,
    where the two agree to the last bit; in float32 oneDNN's grouped convolution rounds differently and Adam
    amplifies the difference over the run). Cost per step: that of S networks' forward and backward passes, in one
    call per layer instead of S.

    ``method``: ``"vmap"`` (the batched model), ``"loop"`` (the seeds one after another through
    :func:`~how_cnns_learn.training.train_classifier`) or ``"auto"``: ``"vmap"`` on an accelerator, ``"loop"`` on
    the CPU, where the convolutions are compute-bound and batching saves little (measured on a quiet 2-core machine,
    one thread, 3 seeds × 4 epochs of the digits network: 2.5 s batched vs 3.0 s in a loop once warm, plus about
    1.7 s of one-time warm-up of the batched kernels, so under 10 % over the chapter's 14 (quick) to 60 (full) epochs), while the loop
    keeps the float32 numbers of the one-seed trainer bit for bit.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    if not isinstance(data, TrainingSet) or not isinstance(test_data, TrainingSet):
        raise TypeError("data and test_data must be how_cnns_learn.data.TrainingSet instances")
    p, n = data.targets.shape[1], data.inputs.shape[-1]
    if test_data.targets.shape[1] != p or test_data.inputs.shape[-1] != n:
        raise ValueError(f"test_data ({test_data.inputs.shape}, {test_data.targets.shape[1]} outputs) does not match "
                         f"data ({data.inputs.shape}, {p} outputs)")
    if method not in ("auto", "vmap", "loop"):
        raise ValueError(f"method must be 'auto', 'vmap' or 'loop', got {method!r}")
    dev = check_device(device)
    if method == "loop" or (method == "auto" and dev.type == "cpu"):
        return _train_cnfa_loop(seeds, data, test_data, epochs=epochs, lr=lr, batch_size=batch_size,
                                init_std=init_std, width=width, kernel_size=kernel_size, dtype=dtype, device=dev)
    nets = []
    for s in seeds:
        torch.manual_seed(s)
        nets.append(CNFACNN(n=n, width=width, classes=p, kernel_size=kernel_size, init_std=init_std, dtype=dtype).to(dev))
    initial = [copy.deepcopy(net) for net in nets]
    record_device(nets[0], by="train_cnfa_cnns")
    params, buffers = stack_module_state(nets)  # {name: (S, ...)} leaf tensors
    skeleton = copy.deepcopy(nets[0]).to("meta")

    def loss(param: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(skeleton, (param, buffers), (x,)), y)

    batched_grad = vmap(grad(loss))
    X = torch.as_tensor(data.inputs, dtype=dtype, device=dev).unsqueeze(1)
    y = torch.as_tensor(data.targets, device=dev).argmax(1)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    optimiser = plain_optimiser(list(params.values()), "adam", lr)
    N = len(y)
    for _ in progress_bar(range(epochs), enabled=progress, leave=False, desc="epochs"):
        order = torch.stack([torch.randperm(N, generator=g) for g in generators]).to(dev)  # (S, N)
        for start in range(0, N, batch_size):
            batch = order[:, start : start + batch_size]  # (S, B)
            grads = batched_grad(params, X[batch], y[batch])
            for name, tensor in params.items():
                tensor.grad = grads[name]
            optimiser.step()
    X_test = torch.as_tensor(test_data.inputs, dtype=dtype, device=dev).unsqueeze(1)
    y_test = torch.as_tensor(test_data.targets, device=dev).argmax(1)
    with torch.no_grad():
        out = vmap(lambda prm: functional_call(skeleton, (prm, buffers), (X_test,)))(params)  # (S, N_test, p)
        accuracy = (out.argmax(-1) == y_test).to(torch.float64).mean(1).cpu().numpy()
        for i, net in enumerate(nets):
            for name, param in net.named_parameters():
                param.copy_(params[name][i])
    return CNFARuns(seeds=seeds, trained=nets, initial=initial, test_accuracy=accuracy, device=str(dev))


def _train_cnfa_loop(seeds: list[int], data: TrainingSet, test_data: TrainingSet, *, epochs: int, lr: float,
                     batch_size: int, init_std: float, width: int, kernel_size: int, dtype: torch.dtype,
                     device: torch.device) -> CNFARuns:
    """:func:`train_cnfa_cnns` with ``method="loop"``: each seed through the shared one-network trainer."""
    trained, initial, accuracy = [], [], []
    for s in seeds:
        torch.manual_seed(s)
        net = CNFACNN(n=data.inputs.shape[-1], width=width, classes=data.targets.shape[1], kernel_size=kernel_size,
                      init_std=init_std, dtype=dtype)
        initial.append(copy.deepcopy(net).to(device))
        history = train_classifier(net, data, test_data=test_data, epochs=epochs, lr=lr, batch_size=batch_size,
                                   optimizer="adam", seed=s, device=device)
        trained.append(net)
        accuracy.append(float(history["test accuracy"].iloc[-1]))
    record_device(trained[0], by="train_cnfa_cnns")
    return CNFARuns(seeds=seeds, trained=trained, initial=initial, test_accuracy=np.array(accuracy), device=str(device))


# ----------------------------------------------------------------------------------------------- linear networks
def train_linear_gd(
    model: nn.Module,
    data: TrainingSet,
    *,
    steps: int,
    lr: float,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Full-batch gradient descent ``θ ← θ − lr·∇L`` on the mean squared loss ``L = (1/N) Σ_μ ½‖f(x^μ) − y^μ‖²`` of a
    model that is **linear in its input** (no bias), computed from the data's second moments.

    For ``f(x) = A(θ) x`` (``A``: ``(c, d)``, ``d = n²``) the gradient is ``∇_θ L = (∂A/∂θ)ᵀ(A Σ_xx − Σ_yx)`` with
    ``Σ_xx = XᵀX/N`` ``(d, d)`` and ``Σ_yx = YᵀX/N`` ``(c, d)``, so each step evaluates the network on the ``d``
    basis images (``A = model(E)ᵀ``) instead of the ``N`` data images and backpropagates ``AΣ_xx − Σ_yx``. For
    :class:`~how_cnns_learn.models.LinearCNN` and :class:`LinearConvChain` (odd circular kernels, no biases) ``A``
    and its gradient are written out by hand (a few small tensor products per step, no autograd; ``A`` checked
    against ``model(E)ᵀ`` at the start). This is
    the step of :func:`~how_cnns_learn.training.train_classifier` with ``batch_size=None, loss="mse",
    optimizer="sgd"`` (equal up to float rounding: the sums run in another order; tested to 1e-10 in float64).

    ``model`` maps images ``(N, 1, n, n)`` to ``(N, c)``; ``data`` holds ``inputs (N, n, n)`` and ``targets (N, c)``.
    The model is moved to ``device`` (validated, reported to :func:`~how_cnns_learn.repro.record_device`); its
    dtype is used throughout. Raises ``ValueError`` if the model is not linear in its input (checked on the data to
    1e-9 relative). Returns a table with ``step`` and ``train loss`` (on the data) at step 0 and at the end;
    ``attrs["device"]`` is where it ran.
    """
    if steps < 1 or not lr > 0:
        raise ValueError(f"need steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    if not isinstance(data, TrainingSet):
        raise TypeError("data must be a how_cnns_learn.data.TrainingSet")
    dev = check_device(device)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    dtype = params[0].dtype
    ran_on = record_device(model, by="train_linear_gd")
    n = data.inputs.shape[-1]
    X = torch.as_tensor(data.inputs, dtype=dtype, device=dev).reshape(len(data.inputs), -1)  # (N, d)
    Y = torch.as_tensor(data.targets, dtype=dtype, device=dev)  # (N, c)
    N, d = X.shape
    basis = torch.eye(d, dtype=dtype, device=dev).reshape(d, 1, n, n)
    Sxx, Syx = X.T @ X / N, Y.T @ X / N
    try:
        structured: _ConvChainGD | None = _ConvChainGD(model, n)
    except TypeError:
        structured = None

    def end_to_end() -> torch.Tensor:
        return structured.matrix() if structured is not None else model(basis).T

    def loss_on_data(A: torch.Tensor) -> float:
        return float(0.5 * ((X @ A.T - Y) ** 2).sum(1).mean())

    with torch.no_grad():
        A = model(basis).T
        direct = model(X.reshape(N, 1, n, n))
        if direct.shape != (N, Y.shape[1]):
            raise ValueError(f"model must map (N, 1, {n}, {n}) images to (N, {Y.shape[1]}) outputs, got {tuple(direct.shape)}")
        if float((direct - X @ A.T).abs().max()) > 1e-9 * max(1e-300, float(direct.abs().max())):
            raise ValueError("model is not linear in its input (f(x) != A x with A from the basis images; a bias?)")
        if float((end_to_end() - A).abs().max()) > 1e-12 * max(1e-300, float(A.abs().max())):
            raise AssertionError("internal: the structured end-to-end matrix differs from the network's")  # pragma: no cover
    rows = [{"step": 0, "train loss": loss_on_data(A)}]
    for _ in range(steps):
        if structured is not None:
            structured.step(Sxx, Syx, lr)
            continue
        A = model(basis).T  # (c, d)
        grads = torch.autograd.grad(A, params, grad_outputs=A.detach() @ Sxx - Syx)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    with torch.no_grad():
        rows.append({"step": steps, "train loss": loss_on_data(end_to_end())})
    table = pd.DataFrame(rows)
    table.attrs["device"] = str(ran_on)
    return table



class _ConvChainGD:
    """Hand-written end-to-end matrix and gradient of a :class:`~how_cnns_learn.models.LinearCNN` or
    :class:`LinearConvChain` (odd circular kernel, no biases): a few small tensor products per step, no autograd.

    Weights: filters ``w`` ``(C, k²)``, channel mixers ``M_1 … M_m`` (the ``1×1`` convs, ``(C, C)``), read-out
    ``U`` ``(c, C, n²)``. With ``B = U·M_m⋯M_1`` ``(c, C, n²)`` (mixing over channels) and ``T[o, j, p] = Σ_c w[c, j]
    B[o, c, p]``, the circular 'same' cross-correlation gives ``A[o, q] = Σ_j T[o, j, q − δ_j mod n]`` (``δ_j`` the
    offset of kernel entry ``j`` from the centre). :meth:`step` applies ``θ ← θ − lr·(∂A/∂θ)ᵀ G`` for ``G = ∂L/∂A``.
    """

    def __init__(self, model: nn.Module, n: int) -> None:
        from .models import LinearCNN

        if isinstance(model, LinearCNN):
            conv, mixers, dense = model.conv, [], model.dense
        elif isinstance(model, LinearConvChain):
            layers = list(model)
            conv, mixers, dense = layers[0], [m for m in layers[1:] if isinstance(m, nn.Conv2d)], layers[-1]
        else:
            raise TypeError("not a LinearCNN or LinearConvChain")
        k, C = conv.kernel_size[0], conv.out_channels
        if (k % 2 == 0 or conv.padding_mode != "circular" or conv.bias is not None or conv.in_channels != 1
                or dense.bias is not None or dense.in_features != C * n * n or any(m.bias is not None for m in mixers)):
            raise TypeError("unsupported layer configuration")
        self.conv, self.mixers, self.dense, self.k, self.C, self.n = conv, mixers, dense, k, C, n
        r = k // 2
        rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        src = [((rows - a + r) % n) * n + (cols - b + r) % n for a in range(k) for b in range(k)]  # q ↦ q − δ_j
        dst = [((rows + a - r) % n) * n + (cols + b - r) % n for a in range(k) for b in range(k)]  # p ↦ p + δ_j
        dev = conv.weight.device
        offset = np.arange(k * k)[:, None] * n * n
        self.src = torch.as_tensor((offset + np.stack([s.ravel() for s in src])).ravel(), device=dev)
        self.dst = torch.as_tensor(np.stack([d.ravel() for d in dst]).ravel(), device=dev)

    def _forward(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``[B_m = U, …, B_0]`` (``B_{l−1} = M_lᵀ-mixed B_l``, each ``(c, C, n²)``) and ``A`` ``(c, n²)``."""
        Bs = [self.dense.weight.reshape(-1, self.C, self.n * self.n)]
        for mixer in reversed(self.mixers):
            Bs.append(torch.matmul(mixer.weight[:, :, 0, 0].T, Bs[-1]))    # B_{l−1}[o, i, p] = Σ_j M_l[j, i] B_l[o, j, p]
        T = torch.matmul(self.conv.weight.reshape(self.C, -1).T, Bs[-1])  # T[o, j, p] = Σ_c w[c, j] B_0[o, c, p]
        A = T.reshape(T.shape[0], -1)[:, self.src].reshape(T.shape[0], self.k * self.k, -1).sum(1)
        return Bs, A

    def matrix(self) -> torch.Tensor:
        """The end-to-end matrix ``A`` ``(c, n²)``."""
        with torch.no_grad():
            return self._forward()[1]

    def step(self, Sxx: torch.Tensor, Syx: torch.Tensor, lr: float) -> None:
        """One gradient step of ``L = ½tr(AΣ_xxAᵀ) − tr(Σ_yxAᵀ) + const`` (``∂L/∂A = AΣ_xx − Σ_yx``); all gradients
        from the weights before the step."""
        with torch.no_grad():
            Bs, A = self._forward()
            G = A @ Sxx - Syx
            o, kk = G.shape[0], self.k * self.k
            w = self.conv.weight.reshape(self.C, kk)
            dT = G[:, self.dst].reshape(o, kk, -1)                       # dT[o, j, p] = G[o, p + δ_j]
            grads = [torch.matmul(Bs[-1], dT.transpose(1, 2)).sum(0)]    # ∂L/∂w[c, j] = Σ_{o,p} B_0[o,c,p] dT[o,j,p]
            dB = torch.matmul(w, dT)                                     # ∂L/∂B_0
            for level, mixer in enumerate(self.mixers):                  # M_1 … M_m
                grads.append(torch.matmul(Bs[-2 - level], dB.transpose(1, 2)).sum(0))  # Σ_{o,p} B_l[o,j,p] dB[o,i,p]
                dB = torch.matmul(mixer.weight[:, :, 0, 0], dB)          # ∂L/∂B_l
            self.conv.weight.sub_(lr * grads[0].reshape(self.conv.weight.shape))
            for mixer, g in zip(self.mixers, grads[1:]):
                mixer.weight.sub_(lr * g.reshape(mixer.weight.shape))
            self.dense.weight.sub_(lr * dB.reshape(self.dense.weight.shape))
