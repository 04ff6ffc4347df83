"""The book's one figure style, and its standard figures (the only module that imports matplotlib).

Rules (house style): no in-figure titles (captions live in the chapter), lowercase axis labels with
units, theory dashed and simulation solid in the same colour, and a residual panel under every
theory-vs-simulation plot, with the claim's tolerance drawn on it when there is one.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import NDArray

__all__ = ["bars_with_theory", "mode_palette", "set_book_style", "theory_vs_simulation"]


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
    x: NDArray[np.floating],
    simulated: NDArray[np.floating],
    theory: NDArray[np.floating],
    *,
    labels: Sequence[str],
    ylabel: str,
    xlabel: str = "training step",
    residual_label: str = "sim. − theory",
    tolerance: float | None = None,
) -> Figure:
    """Simulation (solid) against theory (dashed), with a residual panel underneath.

    Args:
        x: ``(T,)`` shared x values (e.g. steps): each curve is drawn as the median over networks with a
            min–max band; or ``(T, B, K)`` x values per curve (e.g. a mode's progress ``a/s``): every
            network is drawn as its own line.
        simulated: ``(T, B, K)`` (``B`` networks, ``K`` curves) or ``(T, K)``.
        theory: ``(T, K)`` or ``(T, B, K)`` (a theory curve per network).
        labels: ``K`` legend labels.
        tolerance: if given, the residual panel shows the band ``±tolerance``.
    """
    T = np.asarray(x).shape[0]
    sim = _as_tbk("simulated", simulated, T)
    th = np.broadcast_to(_as_tbk("theory", theory, T), sim.shape)
    K = sim.shape[2]
    if len(labels) != K:
        raise ValueError(f"{len(labels)} labels for {K} curves")
    per_curve_x = np.asarray(x).ndim == 3
    if per_curve_x and np.shape(x) != sim.shape:
        raise ValueError(f"per-curve x must have the shape of simulated {sim.shape}, got {np.shape(x)}")
    residual = sim - th
    colours = mode_palette(K)
    fig, (ax, axr) = plt.subplots(
        2, 1, sharex=True, figsize=(7.0, 5.0), gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.08}
    )
    for k in range(K):
        c = colours[k]
        if per_curve_x:
            for b in range(sim.shape[1]):
                ax.plot(x[:, b, k], sim[:, b, k], color=c, alpha=0.8)
                ax.plot(x[:, b, k], th[:, b, k], color=c, ls="--", lw=1.4)
                axr.plot(x[:, b, k], residual[:, b, k], color=c, alpha=0.8)
            continue
        ax.plot(x, np.median(sim[:, :, k], axis=1), color=c)
        if sim.shape[1] > 1:
            ax.fill_between(x, sim[:, :, k].min(1), sim[:, :, k].max(1), color=c, alpha=0.25, lw=0)
        ax.plot(x, np.median(th[:, :, k], axis=1), color=c, ls="--", lw=1.4)
        axr.plot(x, np.median(residual[:, :, k], axis=1), color=c)
        if residual.shape[1] > 1:
            axr.fill_between(x, residual[:, :, k].min(1), residual[:, :, k].max(1), color=c, alpha=0.25, lw=0)
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


def bars_with_theory(
    frame: pd.DataFrame, *, x: str, y: str, hue: str, theory: str | None = None, ylabel: str, xlabel: str | None = None
) -> Figure:
    """Grouped bars of a measured quantity (mean over rows, with every row as a dot) and the theory as a marker.

    Args:
        frame: tidy table, one row per measurement (e.g. per network × mode × model).
        x, hue: columns for the groups on the axis and the bars within a group.
        y: column of the measured value.
        theory: optional column with the theory value of each (x, hue) group (drawn as a black diamond).
    """
    for column in [x, y, hue] + ([theory] if theory else []):
        if column not in frame.columns:
            raise ValueError(f"column {column!r} not in the table (columns: {list(frame.columns)})")
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    sns.barplot(frame, x=x, y=y, hue=hue, errorbar=None, alpha=0.75, ax=ax)
    sns.stripplot(frame, x=x, y=y, hue=hue, dodge=True, color="0.2", size=3, legend=False, ax=ax)
    if theory is not None:
        ref = frame.groupby([x, hue], sort=False, observed=True)[theory].first().reset_index()
        sns.stripplot(ref, x=x, y=theory, hue=hue, dodge=True, marker="D", color="black", size=7, jitter=False,
                      legend=False, ax=ax)
        ax.plot([], [], "D", color="black", label="theory")
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel if xlabel is not None else x)
    ax.legend(fontsize=8)
    return fig
