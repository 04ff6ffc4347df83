"""Closed forms of the mode dynamics of two-layer linear networks.

The central object is a **mode**: one singular triplet ``(s_α, u_α, φ_α)`` of the input–output
correlation ``Σ_yx = U S Vᵀ``, with *mode strength* ``a_α(t) = u_αᵀ Σ_ŷx(t) φ_α``.

Under aligned, balanced, small initialisation and shared right singular vectors (assumption A1),
each mode of a two-layer linear network obeys the logistic ODE

    τ da/dt = 2 g a (s − a)                                   (mode ODE)

with *rate factor* ``g = 1`` for the fully connected network (Saxe, McClelland & Ganguli 2014) and
``g = Φ*_α`` for the two-layer linear CNN with a full-size circular kernel (derived in the book;
the per-frequency form is Eq. (1) of He et al. 2024, restating Pinson et al. 2023).

Time is measured in **gradient-descent steps**: ``t/τ = η · step`` with learning rate ``η``.
All functions are pure numpy and vectorise over array arguments.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .data import DatasetStructure
from .fourier import dft2, dft_matrix, dominant_frequency_mask, kernel_support

__all__ = [
    "LN9",
    "check_learning_rate",
    "dominant_power_fraction",
    "learning_order",
    "shared_dominant_frequencies",
    "stage_gains",
    "dominant_frequency_map",
    "fcnn_limit_map",
    "small_kernel_growth_modes",
    "subdominant_share_exponent",
    "frequency_growth_rate",
    "frequency_race",
    "frequency_targets",
    "aligned_initial_contributions",
    "aligned_initial_strengths",
    "whitened_units_gd",
    "frequency_growth_per_step",
    "mode_strength",
    "mode_strength_discrete",
    "transition_width",
    "transition_time",
    "logistic_through",
    "weight_decay_optimum",
]

LN9 = float(np.log(9.0))
"""``ln 9``: the 10 %→90 % rise of a logistic takes ``ln 9`` units of its rate's inverse."""


def _positive(name: str, value: ArrayLike) -> NDArray[np.floating]:
    arr = np.asarray(value, dtype=float)
    if np.any(~np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return arr


def mode_strength(
    steps: ArrayLike, s: ArrayLike, a0: ArrayLike, lr: float, rate_factor: ArrayLike = 1.0
) -> NDArray[np.floating]:
    """Closed-form solution of the mode ODE ``τ da/dt = 2 g a (s − a)`` (Saxe et al. 2014, eq. 9 form).

    ``a(t) = s e^{2 g s t/τ} / (e^{2 g s t/τ} − 1 + s/a₀)`` with ``t/τ = lr · steps``.

    Args:
        steps: gradient-descent steps, any shape; broadcast against ``s``, ``a0``, ``rate_factor``.
        s: singular value(s) ``s_α > 0``.
        a0: initial mode strength(s) ``0 < a₀``.
        lr: learning rate η (τ = 1/η).
        rate_factor: ``g``: 1 for the FCNN, ``Φ*_α`` for the full-kernel linear CNN.

    >>> float(mode_strength(0, 2.0, 1e-3, 0.01))
    0.001
    >>> round(float(mode_strength(1e6, 2.0, 1e-3, 0.01)), 12)
    2.0
    """
    s_ = _positive("s", s)
    a0_ = _positive("a0", a0)
    g = _positive("rate_factor", rate_factor)
    _positive("lr", lr)
    x = 2.0 * g * s_ * lr * np.asarray(steps, dtype=float)
    # Stable form: a = s / (1 + (s/a0 - 1) e^{-x}).
    return s_ / (1.0 + (s_ / a0_ - 1.0) * np.exp(-x))


def mode_strength_discrete(
    n_steps: int, s: ArrayLike, a0: ArrayLike, lr: float, rate_factor: ArrayLike = 1.0
) -> NDArray[np.floating]:
    """Exact gradient-descent trajectory of one aligned, balanced mode, shape ``(n_steps + 1, *s.shape)``.

    For the FCNN an aligned balanced mode has both layers' singular values equal to ``c = √a``, and one
    GD step maps ``c ← c + η c (s − c²)``. The continuous closed form :func:`mode_strength` is its
    ``η → 0`` limit; the difference between the two is ``O(η)``. Only ``rate_factor = 1`` is exact here
    (the CNN's per-frequency units carry different norms); other values are rejected.
    """
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    if np.any(np.asarray(rate_factor) != 1.0):
        raise ValueError("mode_strength_discrete implements the FCNN map only (rate_factor must be 1)")
    s_ = _positive("s", s)
    c = np.sqrt(_positive("a0", a0)) * np.ones_like(s_)
    out = np.empty((n_steps + 1,) + s_.shape)
    out[0] = c**2
    for k in range(n_steps):
        c = c + lr * c * (s_ - c**2)
        out[k + 1] = c**2
    return out


def transition_width(
    s: ArrayLike | DatasetStructure, lr: float, rate_factor: ArrayLike = 1.0, *, model: str | None = None
) -> NDArray[np.floating]:
    """10 %→90 % width of a stage, in steps: ``Δt = τ ln 9 / G`` with the stage gain ``G`` (independent of a₀).

    Two ways to call it:

    * ``transition_width(s, lr, rate_factor)``: the one-mode formula ``G = g s`` (``g = 1`` FCNN, ``g = Φ*_α`` CNN).
      It is only right for a CNN mode whose dominant frequencies no other mode uses; it cannot check that.
    * ``transition_width(structure, lr, model="cnn" | "fcnn")``: the widths of all modes of a data set, with the
      gains of :func:`stage_gains`, which detects modes that share dominant frequencies and gives them the merged
      gain ``n‖t_j‖`` of the unit they share (chapter "shared dominant frequency", eq. (eq-merged)). Modes with
      ``s_α = 0`` have no stage: width ``inf``.

    >>> round(float(transition_width(3.0, 0.01)), 1)   # FCNN mode s = 3 at η = 0.01
    73.2
    >>> from how_cnns_learn.data import shared_pair_structure
    >>> transition_width(shared_pair_structure(), 0.01, model="cnn").round(1)   # modes 1 and 3 merge
    array([12.3, 19.4, 12.3])
    """
    if isinstance(s, DatasetStructure):
        if np.any(np.asarray(rate_factor) != 1.0):
            raise ValueError("transition_width(structure, ...) takes the gains from the structure: pass model=, not rate_factor")
        gains = stage_gains(s, model if model is not None else "")
        lr_ = _positive("lr", lr)
        with np.errstate(divide="ignore"):
            return np.where(gains > 0, LN9 / (lr_ * np.where(gains > 0, gains, 1.0)), np.inf)
    if model is not None:
        raise ValueError("model= is for transition_width(structure, lr, model=...); with s given use rate_factor")
    return LN9 / (_positive("rate_factor", rate_factor) * _positive("s", s) * _positive("lr", lr))


def shared_dominant_frequencies(structure: DatasetStructure, rel_tol: float = 1e-3) -> list[tuple[int, int]]:
    """Pairs ``(α, β)``, ``α < β`` (1-based mode numbers), of modes whose dominant frequencies coincide.

    A dominant frequency of mode ``α`` is one where ``|Φ_αj|`` is within ``rel_tol`` of ``Φ*_α``
    (:func:`~how_cnns_learn.fourier.dominant_frequency_mask`). Modes with ``s_α = 0`` carry no structure and are
    left out. The one-mode stage formula ``τ ln 9/(s_αΦ*_α)`` assumes this list is empty.

    >>> from how_cnns_learn.data import designed_structure, shared_pair_structure
    >>> shared_dominant_frequencies(shared_pair_structure()), shared_dominant_frequencies(designed_structure())
    ([(1, 3)], [])
    """
    masks = dominant_frequency_mask(structure.phi, rel_tol)
    live = structure.s > 0
    return [
        (a + 1, b + 1)
        for a in range(structure.p)
        for b in range(a + 1, structure.p)
        if live[a] and live[b] and bool(np.any(masks[a] & masks[b]))
    ]


def stage_gains(structure: DatasetStructure, model: str) -> NDArray[np.floating]:
    """Gain ``G_α`` of each mode's stage, ``(p,)``: rate ``2ηG_α`` per step, width ``τ ln 9/G_α``.

    * ``"fcnn"``: ``G_α = s_α`` (Saxe et al. 2014).
    * ``"cnn"`` (full-size kernel): mode ``α`` is learned by the frequency units at its dominant frequencies; the
      unit at ``j`` learns the whole target ``t_j`` of :func:`frequency_targets` in one sigmoid of gain ``n‖t_j‖``.
      So ``G_α = max_{j dominant for α} n‖t_j‖``. For a mode that has its dominant frequencies to itself this is
      ``s_αΦ*_α``; for modes that share them (:func:`shared_dominant_frequencies`) it is the merged gain, e.g.
      ``n√((s_a² + s_b²)/2)`` for a cosine and a sine on one pair; this merged gain is derived for inputs with the
      same power on the modes that share the unit (``Σ_xx`` ∝ I there, as for the structure items), and is not
      reliable when their ``d_α = φ_αᵀΣ_xxφ_α`` differ. Other modes' weaker components at ``j`` enter
      ``‖t_j‖`` as well: on real data ``G_α`` can exceed ``s_αΦ*_α`` slightly without any exact sharing.

    Modes with ``s_α = 0`` have gain 0 (no stage).
    """
    if model == "fcnn":
        return np.asarray(structure.s, dtype=float).copy()
    if model != "cnn":
        raise ValueError(f"model must be 'cnn' or 'fcnn', got {model!r}")
    unit_gain = structure.n * np.linalg.norm(frequency_targets(structure), axis=0)  # (n, n): n‖t_j‖
    masks = dominant_frequency_mask(structure.phi)
    gains = np.array([unit_gain[masks[a]].max() for a in range(structure.p)])
    return np.where(structure.s > 0, gains, 0.0)


def check_learning_rate(lr: float, structure: DatasetStructure, model: str) -> float:
    """Refuse a learning rate at which gradient descent cannot settle on the stages; return ``η·max_α G_α``.

    Derivation. An aligned, balanced stage of gain ``G`` (:func:`stage_gains`) is the one-dimensional GD map
    ``c ← f(c) = c + ηc(G − c²)`` (:func:`mode_strength_discrete`; the CNN's frequency unit obeys the same map with
    ``G = n‖t_j‖``). Its fixed point ``c² = G`` has multiplier ``f'(c) = 1 + η(G − 3c²) = 1 − 2ηG``, so it is
    stable iff ``|1 − 2ηG| < 1``, i.e. ``ηG < 1``. For ``ηG > 1`` the mode never settles: it oscillates with
    period 2 around ``s`` (or diverges), silently, since the loss stays bounded. (Equivalently the loss Hessian at
    the end of the stage has eigenvalue ``2G`` along the mode, and GD needs ``η·2G < 2``.) The limit assumes A1 (the
    modes diagonalise ``Σ_xx``) and a full-size kernel for the CNN; smaller kernels have smaller gains.

    Raises ``ValueError`` naming the mode, ``ηG`` and the largest stable ``η`` when ``ηG ≥ 1`` for any mode.

    >>> from how_cnns_learn.data import designed_structure
    >>> round(check_learning_rate(0.01, designed_structure(), "cnn"), 3)   # η s₂Φ*₂ = 0.01 · 2 · 8/√2
    0.113
    """
    lr_ = float(_positive("lr", lr))
    gains = stage_gains(structure, model)
    worst = int(np.argmax(gains))
    margin = lr_ * float(gains[worst])
    if margin >= 1.0:
        raise ValueError(
            f"lr = {lr_:g} is above the stability limit of gradient descent for the linear {model.upper()}: mode "
            f"{worst + 1} has gain G = {gains[worst]:.4g} and η·G = {margin:.3g} ≥ 1, so it would oscillate with period 2 "
            f"instead of converging; use lr < {1.0 / gains[worst]:.4g} (see theory.check_learning_rate)"
        )
    return margin


def learning_order(run: object, n_modes: int | None = None) -> NDArray[np.int64]:
    """The order in which a run learned its modes: 1-based mode numbers sorted by measured midpoint ``t50``.

    ``run`` is a :class:`~how_cnns_learn.simulate.TrainingRun` (or anything with ``steps`` ``(T,)``,
    ``mode_strength`` ``(T, B, p)`` and ``s`` ``(p,)``); ``t50`` is the first recorded step with ``a_α > s_α/2``.
    Only the first ``n_modes`` modes are ranked (default: those with ``s_α > 0``). Ties keep the mode order.
    Returns ``(B, n_modes)``: row ``b`` lists network ``b``'s modes, first learned first. Raises if a mode never
    reaches its midpoint (the run was too short).
    """
    steps = np.asarray(getattr(run, "steps"))
    strength = np.asarray(getattr(run, "mode_strength"))
    s = np.asarray(getattr(run, "s"), dtype=float)
    if strength.ndim != 3 or strength.shape[0] != steps.shape[0] or strength.shape[2] != s.shape[0]:
        raise ValueError(f"run.mode_strength must be (T, B, p) matching steps {steps.shape} and s {s.shape}")
    k = int((s > 0).sum()) if n_modes is None else int(n_modes)
    if not 1 <= k <= s.shape[0]:
        raise ValueError(f"n_modes must lie in [1, {s.shape[0]}], got {n_modes}")
    above = strength[:, :, :k] > s[:k] / 2  # (T, B, k)
    if not np.all(above.any(axis=0)):
        b, a = np.argwhere(~above.any(axis=0))[0]
        raise ValueError(f"mode {a + 1} of network {b} never reaches s/2 within {steps[-1]} steps; run longer")
    t50 = steps[np.argmax(above, axis=0)]  # (B, k)
    return np.argsort(t50, axis=1, kind="stable") + 1


def dominant_power_fraction(kernel_power: ArrayLike, structure: DatasetStructure, modes: ArrayLike | None = None) -> NDArray[np.floating]:
    """Fraction of a kernel's power ``|λ_j|²`` that lies on the dominant frequencies of the modes, ``(...)``.

    ``kernel_power``: ``(..., n, n)`` values of ``|λ_j|² = |(Q r̃)_j|²`` (e.g. ``TrainingRun.kernel_power`` of shape
    ``(T, B, C, n, n)``); the result drops the last two axes. The dominant frequencies are the union of
    :func:`~how_cnns_learn.fourier.dominant_frequency_mask` over ``modes`` (1-based; default: every mode with
    ``s_α > 0``). The dominant frequency bias (Prop. 2) predicts a fraction near 1 after training from small init.
    """
    power = np.asarray(kernel_power, dtype=float)
    n = structure.n
    if power.ndim < 2 or power.shape[-2:] != (n, n) or np.any(power < 0):
        raise ValueError(f"kernel_power must be non-negative with shape (..., {n}, {n}), got {power.shape}")
    chosen = np.flatnonzero(structure.s > 0) if modes is None else np.asarray(modes, dtype=int) - 1
    if chosen.size == 0 or np.any((chosen < 0) | (chosen >= structure.p)):
        raise ValueError(f"modes must be 1-based mode numbers in [1, {structure.p}], got {modes}")
    mask = dominant_frequency_mask(structure.phi)[chosen].any(axis=0)
    total = power.sum(axis=(-2, -1))
    if np.any(total <= 0):
        raise ValueError("kernel_power has zero total power; the fraction is undefined")
    return (power * mask).sum(axis=(-2, -1)) / total


def transition_time(s: ArrayLike, a0: ArrayLike, lr: float, rate_factor: ArrayLike = 1.0) -> NDArray[np.floating]:
    """Step at which the closed form crosses ``s/2``: ``t50 = τ ln(s/a₀ − 1) / (2 g s)``."""
    s_ = _positive("s", s)
    a0_ = _positive("a0", a0)
    if np.any(a0_ >= s_ / 2):
        raise ValueError("transition_time needs a0 < s/2 (the mode must start below its midpoint)")
    return np.log(s_ / a0_ - 1.0) / (2.0 * _positive("rate_factor", rate_factor) * s_ * _positive("lr", lr))


def logistic_through(
    steps: ArrayLike, s: ArrayLike, t50: ArrayLike, lr: float, rate_factor: ArrayLike = 1.0
) -> NDArray[np.floating]:
    """The closed form re-parametrised by its midpoint: ``a(t) = s / (1 + e^{−2 g s η (t − t50)})``.

    Used to compare a simulation from *random* small init (whose alignment transient shifts the
    effective a₀) with the theory's shape, aligned at the measured midpoint ``t50``.
    """
    s_ = _positive("s", s)
    x = 2.0 * _positive("rate_factor", rate_factor) * s_ * _positive("lr", lr) * (
        np.asarray(steps, dtype=float) - np.asarray(t50, dtype=float)
    )
    return s_ / (1.0 + np.exp(-x))


def frequency_growth_rate(phi_amplitude: ArrayLike, s: ArrayLike, a: ArrayLike) -> NDArray[np.floating]:
    """Per-frequency growth law (Prop. 1; Eq. (1) of He et al. 2024, restating Pinson et al. 2023):

    ``d ln|λ_j|² / d(t/τ) = 2 |Φ_αj| (s_α − a_α)``, with ``λ = Q r̃`` and ``Φ_α = Q φ_α`` (unnormalised DFT).
    Valid for a full-size kernel under assumptions A1–A4 (aligned, balanced units). Broadcasts.
    """
    return 2.0 * np.asarray(phi_amplitude, dtype=float) * (np.asarray(s, dtype=float) - np.asarray(a, dtype=float))


def frequency_growth_per_step(phi_amplitude: ArrayLike, s: ArrayLike, a: ArrayLike, lr: float) -> NDArray[np.floating]:
    """One gradient-descent step of an aligned, balanced frequency unit: ``(|λ'|² − |λ|²) / (η |λ|²) = 2x + η x²``.

    With ``x = |Φ_αj| (s_α − a_α)`` the unit's gain is multiplied by ``1 + η x`` per step, so the relative growth
    of ``|λ_j|²`` per unit of ``t/τ`` exceeds the flow law :func:`frequency_growth_rate` by the Euler term ``η x²``.
    """
    x = 0.5 * frequency_growth_rate(phi_amplitude, s, a)
    return 2.0 * x + _positive("lr", lr) * x**2


def subdominant_share_exponent(rho: ArrayLike) -> NDArray[np.floating]:
    """Exponent of the dominant frequency bias: the final share ``q_j/q_{j*}`` of a frequency at amplitude ratio
    ``ρ_j = |Φ_αj|/Φ*_α`` scales as ``σ^{2(1−ρ_j)}`` with the initial weight scale ``σ`` (Prop. 2)."""
    rho_ = np.asarray(rho, dtype=float)
    if np.any((rho_ < 0) | (rho_ > 1)):
        raise ValueError(f"ρ must lie in [0, 1], got {rho}")
    return 2.0 * (1.0 - rho_)


def _mode_gains(structure: DatasetStructure, d: ArrayLike | None) -> NDArray[np.floating]:
    d_ = np.ones(structure.p) if d is None else np.asarray(d, dtype=float)
    if d_.shape != (structure.p,) or np.any(d_ <= 0):
        raise ValueError(f"d must be {structure.p} positive numbers, got {d}")
    return structure.s / d_


def fcnn_limit_map(structure: DatasetStructure, d: ArrayLike | None = None) -> NDArray[np.floating]:
    """End-to-end map the FCNN converges to under A1 from small init: ``M = Σ_α (s_α/d_α) u_α φ_αᵀ``, ``(p, n²)``."""
    flat = structure.phi.reshape(structure.p, -1)
    return (structure.U * _mode_gains(structure, d)) @ flat


def dominant_frequency_map(structure: DatasetStructure, d: ArrayLike | None = None) -> NDArray[np.floating]:
    """End-to-end map of the full-kernel linear CNN in the small-init limit (dominant frequency bias, Prop. 2).

    Mode ``α`` is implemented through its dominant frequencies only: with ``P_α`` the projector onto them,
    ``M = Σ_α (s_α/d_α) u_α (P_α φ_α)ᵀ / ‖P_α φ_α‖²``, ``(p, n²)``. It fits the training structure
    (``M φ_α = (s_α/d_α) u_α`` when the modes' supports are disjoint, A3) but is a different interpolant from
    :func:`fcnn_limit_map`. When several pairs tie for the maximum, the network splits the mode among them in
    proportion to their initial gains; this formula then gives the even split, not the learned one.
    """
    masks = dominant_frequency_mask(structure.phi)
    projected = np.fft.ifft2(dft2(structure.phi) * masks, axes=(-2, -1)).real.reshape(structure.p, -1)
    norms = (projected**2).sum(axis=1)
    return (structure.U * (_mode_gains(structure, d) / norms)) @ projected


def frequency_race(
    structure: DatasetStructure,
    q0: NDArray[np.floating],
    steps: ArrayLike,
    lr: float,
    method: str = "flow",
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """The reduced per-frequency dynamics under A1–A4, integrated to any set of times.

    Each frequency's contribution ``q_j = d_α |λ_j|²|Φ_αj|/n²`` (balanced, aligned units) obeys
    ``dq_j/dt = 2η|Φ_αj| q_j (s_α − a_α)`` with ``a_α = Σ_{j ∈ supp Φ_α} q_j`` (Prop. 1). All frequencies of a mode
    share the clock ``I_α(t) = ∫ (s_α − a_α)``, so ``q_j(t) = q_j(0) e^{2η|Φ_αj| I_α(t)}`` exactly, and only the
    scalar ODE ``dI_α/dt = s_α − Σ_j q_j(0) e^{2η|Φ_αj| I_α}`` is integrated (scipy ``solve_ivp``, rtol 1e-10).

    ``method="gd"`` iterates instead the exact gradient-descent map of aligned, balanced units,
    ``q_j ← q_j (1 + η|Φ_αj|(s_α − a_α))²``, step by step (``steps`` must then be integers); it differs from
    the flow by the Euler term, ``O(η)``.

    Args:
        structure: modes with disjoint Fourier supports (A3).
        q0: ``(p, n, n)`` initial contributions; entries outside each mode's support are ignored.
        steps: ``(T,)`` increasing times in GD steps (``t/τ = η·step``), starting at 0.
        lr: learning rate η.
        method: ``"flow"`` (gradient flow, any times) or ``"gd"`` (gradient descent, integer steps).

    Returns:
        ``a`` ``(T, p)`` and ``q`` ``(T, p, n, n)``.
    """
    from scipy.integrate import solve_ivp

    p, n = structure.p, structure.n
    q_init = np.asarray(q0, dtype=float)
    if q_init.shape != (p, n, n) or np.any(q_init < 0):
        raise ValueError(f"q0 must be non-negative with shape ({p}, {n}, {n}), got {q_init.shape}")
    t = np.asarray(steps, dtype=float)
    if t.ndim != 1 or t[0] != 0 or np.any(np.diff(t) <= 0):
        raise ValueError("steps must be a 1-D increasing array starting at 0")
    _positive("lr", lr)
    amplitude = np.abs(dft2(structure.phi))
    support = amplitude > 1e-9 * amplitude.reshape(p, -1).max(1)[:, None, None]
    overlap = support.sum(axis=0) > 1
    if np.any(overlap):
        raise ValueError("the modes' Fourier supports overlap (assumption A3); the race is not separable")
    q_start = np.where(support, q_init, 0.0)
    if method == "gd":
        if np.any(t != np.round(t)):
            raise ValueError("method='gd' needs integer steps")
        wanted = np.zeros(int(t[-1]) + 1, dtype=bool)
        wanted[t.astype(int)] = True
        q_now, out = q_start.copy(), []
        for k in range(int(t[-1]) + 1):
            if wanted[k]:
                out.append(q_now)
            a_now = q_now.sum(axis=(1, 2))
            q_now = q_now * (1.0 + lr * amplitude * (structure.s - a_now)[:, None, None]) ** 2
        q = np.stack(out)
        return q.sum(axis=(2, 3)), q
    if method != "flow":
        raise ValueError(f"method must be 'flow' or 'gd', got {method!r}")
    rates = 2.0 * lr * amplitude  # per step

    def rhs(_: float, clock: NDArray[np.floating]) -> NDArray[np.floating]:
        a = (q_start * np.exp(rates * clock[:, None, None])).sum(axis=(1, 2))
        return structure.s - a

    solution = solve_ivp(rhs, (0.0, t[-1]), np.zeros(p), t_eval=t, rtol=1e-10, atol=1e-12, method="LSODA")
    if not solution.success:
        raise RuntimeError(f"frequency_race: the ODE solver failed: {solution.message}")
    q = q_start[None] * np.exp(rates[None] * solution.y.T[:, :, None, None])
    return q.sum(axis=(2, 3)), q


def small_kernel_growth_modes(
    structure: DatasetStructure, kernel_size: int
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Early growth of a ``k×k`` kernel (Prop. 6): eigenpairs of ``A = Pᵀ Q^H diag(D) Q P``, ``D_j = Σ_α s_α²|Φ_αj|²/n²``.

    While ``a_α ≈ 0`` the residual is ``Σ_yx`` and the kernel obeys ``r̈ = η² A r`` on its ``k²`` free entries (in the
    order of ``kernel_support(n, k)`` flattened): it grows along the top eigenvector, its power at rate ``2η√μ_max``
    per unit of ``t/τ`` (gradient descent: ``2 ln(1 + η√μ_max)`` per step). ``A`` is the ``k×k``-lag-restricted
    autocorrelation of the structure power; for ``k = n``, ``√μ_max = max_α s_α Φ*_α``.
    Valid under A1 with ``Σ_xx`` the projector onto the structure (D1); returns eigenvalues ``(k²,)`` in decreasing
    order and eigenvectors as columns ``(k², k²)``.
    """
    n = structure.n
    support = kernel_support(n, kernel_size).reshape(-1)
    power = (structure.s[:, None, None] ** 2 * np.abs(dft2(structure.phi)) ** 2).sum(axis=0).reshape(-1) / n**2
    QP = dft_matrix(n)[:, support]
    A = (QP.conj().T * power) @ QP
    if not np.allclose(A.imag, 0, atol=1e-9 * max(1.0, np.abs(A).max())):
        raise RuntimeError("the growth matrix is not real: the structure's spectrum is not conjugate-symmetric")
    mu, vectors = np.linalg.eigh(A.real)
    order = np.argsort(mu)[::-1]
    return mu[order], vectors[:, order]


def frequency_targets(structure: DatasetStructure) -> NDArray[np.complexfloating]:
    """Per-frequency target of the CNN's hidden unit at ``j``: ``t_j = Σ_α s_α u_α conj(Φ_αj) / n``, ``(p, n, n)``.

    At one frequency the network's map is the single complex vector ``ŵ_j λ_j``, so whatever modes use frequency
    ``j`` are learned *together* by one unit with target ``t_j`` (a Saxe sigmoid of rate ``2η n‖t_j‖`` per step).
    For a frequency used by one mode only, ``n‖t_j‖ = s_α|Φ_αj|``; for a cosine and a sine sharing a pair,
    ``n‖t_j‖ = n √((s_a² + s_b²)/2)``.
    """
    spectrum = dft2(structure.phi)  # (p, n, n)
    return np.einsum("ia,ajk->ijk", structure.U * structure.s, np.conj(spectrum)) / structure.n


def aligned_initial_contributions(
    structure: DatasetStructure, W: ArrayLike, kernel: ArrayLike
) -> NDArray[np.floating]:
    """Effective initial contributions ``q_j(0)`` of a one-channel linear CNN from random init, ``(B, p, n, n)``.

    While ``a_α ≈ 0`` the loss is bilinear in the weights and, at frequency ``j`` of mode ``α``, only two numbers
    move: ``λ_j = (Q r̃)_j`` and ``ω_j = u_αᵀ(Q W)_j e^{−iθ_j}`` (``θ_j`` the phase of ``Φ_αj``). Gradient descent maps
    ``(ω, λ) ← (ω + η s_α|Φ_αj| λ, λ + η s_α|Φ_αj| ω)``, so the balanced part ``z_j = (ω_j + λ_j)/2`` grows by
    ``1 + η s_α|Φ_αj|`` per step and the unbalanced part ``(ω_j − λ_j)/2`` decays. The mode strength is then carried
    by the aligned, balanced units with contributions ``q_j(0) = |Φ_αj| |z_j|²/n²``: the initial condition of the
    reduced race (:func:`frequency_race`) that reproduces the network from ``t = 0``. The neglected parts (the
    decaying combination, the output components orthogonal to ``u_α``) are of relative size ``O(σ²/q)``.

    Args:
        structure: modes with disjoint Fourier supports (A3), orthonormal ``φ_α`` and ``u_α``.
        W: ``(B, p, 1, n, n)`` initial dense weights (one channel).
        kernel: ``(B, 1, n, n)`` initial embedded kernels.
    """
    W_ = np.asarray(W, dtype=float)
    r_ = np.asarray(kernel, dtype=float)
    p, n = structure.p, structure.n
    if W_.ndim != 5 or W_.shape[1:] != (p, 1, n, n) or r_.shape != (W_.shape[0], 1, n, n):
        raise ValueError(f"need W (B, {p}, 1, {n}, {n}) and kernel (B, 1, {n}, {n}), got {W_.shape}, {r_.shape}")
    spectrum = dft2(structure.phi)  # (p, n, n)
    lam = np.fft.fft2(r_[:, 0])  # (B, n, n)
    omega = np.einsum("ia,bijk->bajk", structure.U, np.fft.fft2(W_[:, :, 0]))  # (B, p, n, n): u_αᵀ Ŵ_j
    amplitude = np.abs(spectrum)
    phase = np.where(amplitude > 0, np.conj(spectrum) / np.where(amplitude > 0, amplitude, 1.0), 0.0)
    z = 0.5 * (omega * phase[None] + lam[:, None])
    return amplitude[None] * np.abs(z) ** 2 / n**2


def aligned_initial_strengths(structure: DatasetStructure, W1: ArrayLike, W2: ArrayLike) -> NDArray[np.floating]:
    """Effective initial mode strengths of a two-layer linear FCNN from random init, ``(B, p)``.

    With ``x_α = W₂ᵀu_α`` and ``y_α = W₁φ_α`` (both ``(h,)``), early gradient descent maps
    ``(x, y) ← (x + η s_α y, y + η s_α x)``: ``(x + y)/2`` grows by ``1 + η s_α`` per step and ``a_α = x·y`` becomes
    ``|x₀ + y₀|²/4 · (1 + η s_α)^{2t}``. ``|x₀ + y₀|²/4`` is the ``a₀`` of the aligned closed form
    (:func:`mode_strength_discrete`) that reproduces the network. Needs ``Σ_xx φ_α = φ_α`` and orthonormal modes.
    """
    W1_, W2_ = np.asarray(W1, dtype=float), np.asarray(W2, dtype=float)
    p = structure.p
    if W1_.ndim != 3 or W2_.ndim != 3 or W2_.shape[1] != p or W1_.shape[2] != structure.n**2:
        raise ValueError(f"need W1 (B, h, {structure.n ** 2}) and W2 (B, {p}, h), got {W1_.shape}, {W2_.shape}")
    x = np.einsum("ia,bih->bah", structure.U, W2_)
    y = np.einsum("bhd,ad->bah", W1_, structure.phi.reshape(p, -1))
    return (np.abs(x + y) ** 2).sum(-1) / 4


def whitened_units_gd(
    structure: DatasetStructure, q0: ArrayLike, steps: int, lr: float
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Exact GD map of the independent frequency units of a one-channel full-kernel CNN on whitened data (``Σ_xx = I``).

    With ``Σ_xx = I`` every frequency ``j`` of mode ``α`` is its own aligned, balanced unit with target contribution
    ``h_j = s_α|Φ_αj|²/n²`` and rate ``2η s_α|Φ_αj|`` per step: ``q_j ← q_j (1 + η|Φ_αj|(s_α − n² q_j/|Φ_αj|²))²``
    (the A1 race of :func:`frequency_race` with the shared ``a_α`` replaced by the unit's own ``n² q_j/|Φ_αj|²``).

    Args:
        structure: modes with disjoint Fourier supports (A3).
        q0: ``(p, n, n)`` initial contributions (e.g. :func:`aligned_initial_contributions`); entries outside each
            mode's support are ignored.
        steps: number of GD steps; every step is returned.
        lr: learning rate η.

    Returns ``a`` ``(steps + 1, p)`` and ``q`` ``(steps + 1, p, n, n)``.
    """
    p, n = structure.p, structure.n
    q_init = np.asarray(q0, dtype=float)
    if q_init.shape != (p, n, n) or np.any(q_init < 0):
        raise ValueError(f"q0 must be non-negative with shape ({p}, {n}, {n}), got {q_init.shape}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    _positive("lr", lr)
    amplitude = np.abs(dft2(structure.phi))
    support = amplitude > 1e-9 * amplitude.reshape(p, -1).max(1)[:, None, None]
    if np.any(support.sum(axis=0) > 1):
        raise ValueError("the modes' Fourier supports overlap (assumption A3); the units are not separable")
    safe = np.where(support, amplitude, 1.0)
    q_now = np.where(support, q_init, 0.0)
    out = np.empty((steps + 1, p, n, n))
    out[0] = q_now
    for k in range(steps):
        q_now = q_now * (1.0 + lr * amplitude * (structure.s[:, None, None] - n**2 * q_now / safe**2)) ** 2
        out[k + 1] = q_now
    return out.sum(axis=(2, 3)), out


def weight_decay_optimum(
    structure: DatasetStructure, weight_decay: float, model: str
) -> tuple[NDArray[np.floating], float]:
    """Global minimum of ``L + (λ/2)‖θ‖²`` for a two-layer linear network on the structure items (D1-like data).

    The data are :func:`~how_cnns_learn.data.structure_items` (``Σ_xx`` the projector onto span{φ}, sum loss). Over
    all factorisations of one end-to-end map ``M``, the smallest ``‖θ‖²`` is that of the balanced one:

    * FCNN (``M = W2 W1``): ``min ‖W1‖² + ‖W2‖² = 2‖M‖_*`` (nuclear norm), so every mode shrinks by the same
      amount, ``g_α = (s_α − λ)₊``;
    * CNN with one full-size circular kernel (any number of channels): ``min ‖W‖² + ‖r‖² = (2/n²) Σ_j ‖M̂_j‖``,
      a group lasso over the frequencies (``M̂_j`` the unnormalised DFT of the ``p`` rows of ``M`` at ``j``). As
      ``‖M φ_α‖ ≤ (Φ*_α/n²) Σ_{j ∈ supp α} ‖M̂_j‖`` (Parseval, then Hölder), mode ``α`` is carried by its
      **dominant frequencies only** and shrinks by ``λ/Φ*_α``: ``g_α = (s_α − λ/Φ*_α)₊``.

    Needs modes whose Fourier supports are disjoint (A3) for the CNN. Returns the mode strengths at the optimum,
    ``a_α = u_αᵀ M φ_α = g_α`` ``(p,)``, and the parameter norm there, ``‖θ‖² = 2Σ g_α`` (FCNN) or
    ``2Σ g_α/Φ*_α`` (CNN).
    """
    if not (np.isfinite(weight_decay) and weight_decay > 0):
        raise ValueError(f"weight_decay must be a finite number > 0, got {weight_decay}")
    if model == "fcnn":
        shrink = np.full(structure.p, float(weight_decay))
        g = np.maximum(structure.s - shrink, 0.0)
        return g, float(2 * g.sum())
    if model != "cnn":
        raise ValueError(f"model must be 'fcnn' or 'cnn', got {model!r}")
    supports = np.abs(dft2(structure.phi)) > 1e-9
    if np.any(supports.sum(axis=0) > 1):
        raise ValueError("the modes' Fourier supports overlap (A3 fails): the CNN optimum is not mode by mode")
    phi_star = np.abs(dft2(structure.phi)).reshape(structure.p, -1).max(axis=1)
    g = np.maximum(structure.s - weight_decay / phi_star, 0.0)
    return g, float(2 * (g / phi_star).sum())
