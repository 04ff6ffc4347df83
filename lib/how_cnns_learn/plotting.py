"""The book's one figure style, and its standard figures (the only module that imports matplotlib).

Rules (house style): no in-figure titles (captions live in the chapter), lowercase axis labels with
units, theory dashed and simulation solid in the same colour, and a residual panel under every
theory-vs-simulation plot, with the claim's tolerance drawn on it when there is one.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import NDArray

__all__ = ["set_book_style", "theory_vs_simulation", "mode_palette"]


def set_book_style() -> None:
    """Apply the book's seaborn theme (call once at the top of each chapter)."""
    sns.set_theme(
        context="notebook",
        style="whitegrid",
        palette="colorblind",
        rc={
            "figure.figsize": (7.0, 4.2),
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
            "lines.linewidth": 1.8,
            "axes.titlesize": 11,
            "legend.frameon": False,
        },
    )


def mode_palette(n_modes: int) -> list[tuple[float, float, float]]:
    """One colour per mode, the same in every figure."""
    return sns.color_palette("colorblind", n_modes)


def _as_tbk(name: str, arr: NDArray[np.floating], T: int) -> NDArray[np.floating]:
    a = np.asarray(arr, dtype=float)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3 or a.shape[0] != T:
        raise ValueError(f"{name} must be (T, K) or (T, B, K) with T = {T}, got {np.shape(arr)}")
    return a


def theory_vs_simulation(
    steps: NDArray[np.integer],
    simulated: NDArray[np.floating],
    theory: NDArray[np.floating],
    *,
    labels: Sequence[str],
    ylabel: str,
    xlabel: str = "training step",
    residual_label: str = "sim. − theory",
    tolerance: float | None = None,
) -> Figure:
    """Simulation (solid; median over networks with a min–max band) against theory (dashed), plus residuals.

    Args:
        steps: ``(T,)`` x values.
        simulated: ``(T, B, K)`` (``B`` networks, ``K`` curves) or ``(T, K)``.
        theory: ``(T, K)`` or ``(T, B, K)`` (a theory curve per network, e.g. aligned at its own midpoint).
        labels: ``K`` legend labels.
        tolerance: if given, the residual panel shows the band ``±tolerance``.
    """
    T = np.asarray(steps).shape[0]
    sim = _as_tbk("simulated", simulated, T)
    th = _as_tbk("theory", theory, T)
    K = sim.shape[2]
    if th.shape[2] != K or len(labels) != K:
        raise ValueError(f"theory has {th.shape[2]} curves and labels {len(labels)}; simulated has {K}")
    residual = sim - th
    colours = mode_palette(K)
    fig, (ax, axr) = plt.subplots(
        2, 1, sharex=True, figsize=(7.0, 5.0), gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.08}
    )
    for k in range(K):
        c = colours[k]
        ax.plot(steps, np.median(sim[:, :, k], axis=1), color=c)
        if sim.shape[1] > 1:
            ax.fill_between(steps, sim[:, :, k].min(1), sim[:, :, k].max(1), color=c, alpha=0.25, lw=0)
        ax.plot(steps, np.median(th[:, :, k], axis=1), color=c, ls="--", lw=1.4)
        axr.plot(steps, np.median(residual[:, :, k], axis=1), color=c)
        if residual.shape[1] > 1:
            axr.fill_between(steps, residual[:, :, k].min(1), residual[:, :, k].max(1), color=c, alpha=0.25, lw=0)
    if tolerance is not None:
        axr.axhspan(-tolerance, tolerance, color="0.85", zorder=0, label=f"tolerance ±{tolerance:g}")
        axr.legend(loc="upper right", fontsize=8)
    axr.axhline(0.0, color="0.3", lw=0.8)
    ax.set_ylabel(ylabel)
    axr.set_ylabel(residual_label)
    axr.set_xlabel(xlabel)
    handles = [Line2D([], [], color=colours[k], label=labels[k]) for k in range(K)] + [
        Line2D([], [], color="0.3", label="simulation"),
        Line2D([], [], color="0.3", ls="--", lw=1.4, label="theory"),
    ]
    ax.legend(handles=handles, fontsize=8, loc="best")
    fig.align_ylabels([ax, axr])
    return fig
