"""Grid sweeps of the two-layer linear CNN: every grid point simulated, predicted and judged.

A **grid sweep** is a set of grid points, each a combination of

* ``structure``: a :class:`~how_cnns_learn.data.DatasetStructure`, labelled by a number (e.g. its Φ*);
* ``init_scale``: the i.i.d. initial weight scale ``σ``;
* ``kernel_size``: ``k ≤ n``;
* ``step_rate``: ``κ = 2 η max_α s_α Φ*_α``, the per-step logistic rate of the fastest mode (the learning rate is
  ``η = κ / (2 max_α s_α Φ*_α)``; the plateau ``a = s`` of an aligned unit is stable for ``κ < 2``), or instead
  ``learning_rate``: ``η`` itself (then ``κ`` follows each structure's ``Φ*``: the axis to vary when the rate's
  dependence on ``Φ*`` is the point),

with ``B`` networks (seeds) at every point. Each point is trained by the batched simulator
(:func:`~how_cnns_learn.simulate.train_linear_cnn`: the init scales of one (structure, k, κ) share one batch) and
compared with the book's prediction from the *same* initial weights: the gradient-descent form of the reduced
frequency race (:func:`~how_cnns_learn.theory.frequency_race`, ``method="gd"``) started at the aligned initial
contributions (:func:`~how_cnns_learn.theory.aligned_initial_contributions`), i.e. eq. (eq-cnn-logistic) of the stages
chapter in discrete time. Nothing is fitted.

**Tolerance of a point (derived, the same rule everywhere).** Time is discrete: the prediction is resolved to one
gradient-descent step. A mode's tolerance is the largest change of its predicted curve in one step,
``δ_α = max_t |a_α^th(t+1) − a_α^th(t)| / s_α`` (smallest over the networks): a simulation within ``δ_α`` of the
prediction is indistinguishable from it shifted by at most one step. A point is *within tolerance* when every
network's ``max_t |a_α − a_α^th| / s_α ≤ δ_α`` for every mode; its ``ratio`` is the largest residual in units of
``δ_α``.

**Regions, stated before any simulation.** The reduction drops terms whose contribution to any ``a_α`` is bounded by
the initial weight energy ``E = ‖W(0)‖² + ‖r(0)‖²`` (stages chapter), and it assumes a full-size kernel (A4). So

* ``"holds"``: ``k = n`` and ``E ≤ min_α δ_α s_α`` (the bound itself keeps the residual inside the tolerance);
* ``"fails"``: ``k < n`` (A4 broken: small kernels couple frequencies), or ``E ≥ Σ_α s_α`` (the initial weights
  carry more than the whole target: the small-initialisation premise is gone);
* ``"between"``: the rest (the bound says nothing; the page shows what happens).

Times are in gradient-descent steps; mode strengths and residuals are divided by ``s_α``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import fourier, simulate, theory
from .data import DatasetStructure, structure_items

__all__ = ["AXES", "GridSweep", "STABILITY_LIMIT", "grid_claim_arguments", "linear_cnn_grid", "region_fractions"]

AXES = ("structure", "init_scale", "kernel_size", "step_rate")
"""The axes of a grid, in the order points are enumerated (the last varies fastest); a grid over learning rates has
``"learning_rate"`` in place of ``"step_rate"`` (:attr:`GridSweep.axes`)."""

STABILITY_LIMIT = 2.0
"""``κ = 2ηsΦ*`` above which the plateau ``a = s`` of an aligned unit is unstable (its multiplier is ``1 − κ``)."""

MAX_STEPS = 50_000


@dataclass(frozen=True)
class GridSweep:
    """The result of :func:`linear_cnn_grid`.

    Attributes:
        values: axis name → the values along it (every axis of :attr:`axes`; a fixed axis has one value).
        points: one row per grid point, in enumeration order (``point`` = row number): the four axis values, ``lr``,
            ``learning_rate`` (= ``lr``), ``steps``, ``energy`` (largest ``E`` over the networks), ``tolerance`` (``(p,)`` array, ``δ_α``),
            ``residual`` (``(p,)`` array, largest ``|a − a^th|/s_α`` over networks and steps), ``ratio``
            (``max_α residual_α/δ_α``), ``within`` (bool), ``region`` (``"holds"``, ``"fails"``, ``"between"``).
        curves: tidy table, one row per (point, network, mode, step): ``simulated``, ``theory``, ``residual``
            (each divided by ``s_α``), every recorded step.
        seeds: the seeds of the ``B`` networks of every point.
        seconds: wall-clock time of the simulations and predictions.
    """

    values: dict[str, list[float]]
    points: pd.DataFrame
    curves: pd.DataFrame
    seeds: list[int]
    seconds: float

    @property
    def axes(self) -> tuple[str, ...]:
        """The four axes in enumeration order: :data:`AXES`, or with ``"learning_rate"`` for ``"step_rate"``."""
        return tuple(self.values)

    @property
    def varied(self) -> list[str]:
        """The axes with more than one value (the explorer's controls), in :attr:`axes` order."""
        return [axis for axis in self.axes if len(self.values[axis]) > 1]


def _values(name: str, values: Sequence[float], positive: bool = True) -> list[float]:
    out = [float(v) for v in values]
    if not out or len(set(out)) != len(out) or (positive and any(not (np.isfinite(v) and v > 0) for v in out)):
        raise ValueError(f"{name} must be distinct finite numbers > 0 (at least one), got {list(values)!r}")
    return out


def _structures(structures: DatasetStructure | Mapping[float, DatasetStructure]) -> dict[float, DatasetStructure]:
    if isinstance(structures, DatasetStructure):
        return {0.0: structures}
    if not isinstance(structures, Mapping) or not structures:
        raise ValueError("structures must be a DatasetStructure or a non-empty mapping label → DatasetStructure")
    out = {float(k): v for k, v in structures.items()}
    if not all(isinstance(v, DatasetStructure) for v in out.values()):
        raise ValueError("every value of structures must be a DatasetStructure")
    if len({v.n for v in out.values()}) != 1:
        raise ValueError("all structures of a grid must share the image size n")
    return out


def _horizon(structure: DatasetStructure, q0: np.ndarray, lr: float, stretch: float) -> int:
    """Steps for every mode of every network to pass 99 % of ``s_α`` in the closed form, times ``stretch``."""
    phi_star = fourier.dominant_amplitude(structure.phi)
    a0 = np.clip(q0.sum(axis=(2, 3)), 1e-300, None)  # (B, p)
    start = np.log(np.clip(structure.s / a0 - 1.0, 1.0, None))
    t99 = (start + np.log(99.0)) / (2.0 * phi_star * structure.s * lr)
    return int(min(MAX_STEPS, max(20, np.ceil(stretch * t99.max()))))


def linear_cnn_grid(
    structures: DatasetStructure | Mapping[float, DatasetStructure],
    *,
    init_scales: Sequence[float],
    step_rates: Sequence[float] | None = None,
    learning_rates: Sequence[float] | None = None,
    kernel_sizes: Sequence[int] | None = None,
    seeds: Sequence[int] = (0,),
    stretch: float = 1.5,
    device: torch.device | str = "cpu",
) -> GridSweep:
    """Simulate every point of the grid ``structures × init_scales × kernel_sizes × step_rates`` and judge it.

    Args:
        structures: one structure, or ``{label: structure}`` (e.g. ``{Φ*: structure}``) as a grid axis; the training
            data of each is :func:`~how_cnns_learn.data.structure_items`.
        init_scales: ``σ`` values (> 0).
        step_rates: ``κ = 2ηmax_α s_αΦ*_α`` values (> 0), per structure; or
        learning_rates: ``η`` values (> 0), the same for every structure (give exactly one of the two).
        kernel_sizes: ``k`` values in ``[1, n]`` (default ``[n]``).
        seeds: the networks of every point (network ``b`` of every point starts from the same standard-normal draw,
            scaled by ``σ``: the init-scale axis changes only the scale).
        stretch: run each batch for ``stretch`` times the closed form's longest time to 99 % of ``s_α``.
        device: where to train.

    Returns a :class:`GridSweep` (regions and tolerance as in the module docstring).

    >>> from how_cnns_learn import data
    >>> grid = linear_cnn_grid(data.designed_structure(), init_scales=[1e-3], step_rates=[1.0], kernel_sizes=[8, 3])
    >>> grid.points[["kernel_size", "region", "within"]].values.tolist()
    [[8.0, 'holds', True], [3.0, 'fails', False]]
    """
    started = time.perf_counter()
    by_label = _structures(structures)
    n = next(iter(by_label.values())).n
    sigmas = _values("init_scales", init_scales)
    if (step_rates is None) == (learning_rates is None):
        raise ValueError("give exactly one of step_rates (κ = 2ηmax sΦ*) and learning_rates (η)")
    rate_axis = "step_rate" if learning_rates is None else "learning_rate"
    rates = _values(f"{rate_axis}s", step_rates if learning_rates is None else learning_rates)
    ks = _values("kernel_sizes", [n] if kernel_sizes is None else kernel_sizes)
    if any(k != int(k) or not 1 <= k <= n for k in ks):
        raise ValueError(f"kernel_sizes must be integers in [1, n = {n}], got {list(kernel_sizes or [])!r}")
    seed_list = simulate._check_seeds(seeds)
    if not (np.isfinite(stretch) and stretch >= 1):
        raise ValueError(f"stretch must be a finite number >= 1, got {stretch!r}")
    B = len(seed_list)
    results: dict[tuple[float, float, float, float], dict] = {}
    curve_parts: dict[tuple[float, float, float, float], pd.DataFrame] = {}
    for label, structure in by_label.items():
        train = structure_items(structure)
        p = structure.p
        fastest = float((structure.s * fourier.dominant_amplitude(structure.phi)).max())
        for k in ks:
            draws = [simulate.random_cnn_init(seed_list, n, int(k), p, 1.0)]  # standard normal, scaled per σ below
            W1, r1 = draws[0]
            W0 = np.concatenate([sigma * W1 for sigma in sigmas])
            r0 = np.concatenate([sigma * r1 for sigma in sigmas])
            q0 = theory.aligned_initial_contributions(structure, W0, r0)  # (len(σ)·B, p, n, n)
            energy = (W0**2).sum(axis=(1, 2, 3, 4)) + (r0**2).sum(axis=(1, 2, 3))
            for rate in rates:
                lr = rate / (2.0 * fastest) if rate_axis == "step_rate" else rate
                kappa = 2.0 * lr * fastest
                steps = _horizon(structure, q0, lr, stretch)
                run = simulate.train_linear_cnn(train, structure, lr=lr, steps=steps, kernel_size=int(k),
                                                init=(W0, r0), device=device)
                times = run.steps.astype(float)
                with np.errstate(over="ignore", invalid="ignore"):  # a diverging prediction is judged, not fatal
                    predicted = np.stack([theory.frequency_race(structure, q0[b], times, lr, method="gd")[0]
                                          for b in range(W0.shape[0])], axis=1)  # (T, len(σ)·B, p)
                sim = run.mode_strength / structure.s
                pred = predicted / structure.s
                for i, sigma in enumerate(sigmas):
                    block = slice(i * B, (i + 1) * B)
                    s_i, p_i = sim[:, block], pred[:, block]
                    with np.errstate(over="ignore", invalid="ignore"):
                        residual = s_i - p_i
                        tolerance = np.abs(np.diff(p_i, axis=0)).max(axis=0).min(axis=0)  # (p,)
                    worst = np.abs(residual).max(axis=(0, 1))  # (p,)
                    finite = np.all(np.isfinite(worst)) and np.all(tolerance > 0)
                    ratio = float((worst / tolerance).max()) if finite else float("inf")
                    E = float(energy[block].max())
                    if k < n or E >= structure.s.sum():
                        region = "fails"
                    elif E <= float((tolerance * structure.s).min()):
                        region = "holds"
                    else:
                        region = "between"
                    key = (label, sigma, k, rate)
                    results[key] = {"structure": label, "init_scale": sigma, "kernel_size": k, "step_rate": kappa,
                                    "learning_rate": lr, "lr": lr, "steps": steps, "energy": E, "tolerance": tolerance,
                                    "residual": worst, "ratio": ratio, "within": bool(ratio <= 1.0),
                                    "region": region}
                    T = times.size
                    grid_t, grid_b, grid_m = np.meshgrid(run.steps, np.arange(B), np.arange(p) + 1, indexing="ij")
                    curve_parts[key] = pd.DataFrame({
                        "network": grid_b.ravel(), "mode": grid_m.ravel(), "step": grid_t.ravel(),
                        "simulated": s_i.reshape(T * B * p), "theory": p_i.reshape(T * B * p),
                        "residual": residual.reshape(T * B * p),
                    })
    order = [(label, sigma, k, rate) for label in by_label for sigma in sigmas for k in ks for rate in rates]
    points = pd.DataFrame([results[key] for key in order])
    points.index.name = "point"
    curves = pd.concat([curve_parts[key].assign(point=i) for i, key in enumerate(order)], ignore_index=True)
    curves = curves[["point", "network", "mode", "step", "simulated", "theory", "residual"]]
    values = {"structure": list(by_label), "init_scale": sigmas, "kernel_size": ks, rate_axis: rates}
    return GridSweep(values=values, points=points, curves=curves, seeds=seed_list,
                     seconds=time.perf_counter() - started)


def region_fractions(points: pd.DataFrame) -> dict[str, float]:
    """Fraction of points within tolerance in each region, and the region sizes.

    Returns ``{"holds": f, "fails": f, "between": f, "n_holds": N, "n_fails": N, "n_between": N}`` (a fraction is
    NaN for an empty region).
    """
    if not {"region", "within"} <= set(points.columns):
        raise ValueError(f"points must have the columns 'region' and 'within' (a GridSweep.points), got {list(points.columns)}")
    out: dict[str, float] = {}
    for region in ("holds", "fails", "between"):
        rows = points[points["region"] == region]
        out[region] = float(rows["within"].mean()) if len(rows) else float("nan")
        out[f"n_{region}"] = int(len(rows))
    return out


def grid_claim_arguments(points: pd.DataFrame) -> dict:
    """The measured values, expectation, tolerance and rival of a grid claim, for ``ClaimSet.check_close(..., **these)``.

    The claim: every point of the region ``"holds"`` is within tolerance and no point of the region ``"fails"`` is,
    i.e. the fractions ``[f_holds, f_fails]`` are ``[1, 0]``. A fraction of ``N`` points moves in steps of ``1/N``, so
    ``atol = 1/(2N)`` (``N`` the larger region) demands every point. The rival, "the theory holds everywhere",
    predicts ``[1, 1]`` and fails the same tolerance unless some point of the region "fails" is within tolerance.
    Raises if either region is empty (the claim would say nothing about it).
    """
    share = region_fractions(points)
    if share["n_holds"] == 0 or share["n_fails"] == 0:
        raise ValueError(f"a grid claim needs points in both regions, got {share['n_holds']} where the theory is "
                         f"expected to hold and {share['n_fails']} where it is expected to fail; widen the grid")
    return {
        "measured": [share["holds"], share["fails"]],
        "expected": [1.0, 0.0],
        "atol": 0.5 / max(share["n_holds"], share["n_fails"]),
        "alternative": ("the theory holds everywhere (every grid point within tolerance)", [1.0, 1.0]),
        "tolerance_from": "counting: a fraction of N points moves in steps of 1/N; half a step of the larger region "
        "demands every point of each region (tolerance of a point: one step's change of the prediction)",
    }
