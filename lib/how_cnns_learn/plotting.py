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
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from numpy.typing import NDArray

__all__ = [
    "bars_with_theory",
    "close",
    "frequency_maps",
    "image_panels",
    "layer_frequency_heatmap",
    "mode_palette",
    "mode_palette_hex",
    "FONT_FAMILY",
    "set_book_style",
    "theory_vs_simulation",
]


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


def close(*figures: Figure) -> None:
    """Release figures drawn by this module (matplotlib keeps every open figure until it is closed)."""
    for figure in figures:
        plt.close(figure)


def mode_palette(n_modes: int) -> list[tuple[float, float, float]]:
    """One colour per mode, the same in every figure.

    Up to six modes: seaborn's colour-blind palette (six clearly distinct hues). More modes (e.g. the nine of
    digits): an ordered viridis ramp, dark for mode 1 to green for the last (its pale yellow end is left out), so
    neighbouring hues that look alike are still told apart by their order.
    """
    if n_modes < 1:
        raise ValueError(f"need at least one mode, got {n_modes}")
    if n_modes <= 6:
        return sns.color_palette("colorblind", n_modes)
    ramp = plt.get_cmap("viridis")
    return [tuple(float(c) for c in ramp(x)[:3]) for x in np.linspace(0.0, 0.8, n_modes)]


FONT_FAMILY = "DejaVu Sans, Bitstream Vera Sans, Verdana, sans-serif"
"""The book's figure font (matplotlib's default sans-serif under the seaborn theme), for figures drawn in the browser
(:mod:`~how_cnns_learn.interactive`)."""


def mode_palette_hex(n_modes: int) -> list[str]:
    """:func:`mode_palette` as ``#rrggbb`` strings (for figures drawn in the browser)."""
    return ["#{:02x}{:02x}{:02x}".format(*(int(round(255 * c)) for c in colour)) for colour in mode_palette(n_modes)]


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
    markers: bool = False,
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
        markers: draw a dot at every x of the simulation and residual curves (for a few measured points, e.g. depths).
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
        ax.plot(x, np.median(sim[:, :, k], axis=1), color=c, marker="o" if markers else None)
        if sim.shape[1] > 1:
            ax.fill_between(x, sim[:, :, k].min(1), sim[:, :, k].max(1), color=c, alpha=0.25, lw=0)
        ax.plot(x, np.median(th[:, :, k], axis=1), color=c, ls="--", lw=1.4)
        axr.plot(x, np.median(residual[:, :, k], axis=1), color=c, marker="o" if markers else None)
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
    """Grouped bars of a measured quantity (mean over rows, with every row as a dot) and the theory as a hollow diamond.

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
    if theory is not None:  # hollow diamonds first, so that the per-network dots stay visible inside them
        ref = frame.groupby([x, hue], sort=False, observed=True)[theory].first().reset_index()
        drawn = len(ax.collections)
        sns.stripplot(ref, x=x, y=theory, hue=hue, dodge=True, marker="D", size=7, jitter=False, legend=False, ax=ax,
                      palette="dark:black")
        for diamonds in ax.collections[drawn:]:
            diamonds.set_facecolor("none")
            diamonds.set_edgecolor("black")
            diamonds.set_linewidth(1.2)
        ax.plot([], [], "D", color="black", markerfacecolor="none", label="theory")
    sns.stripplot(frame, x=x, y=y, hue=hue, dodge=True, palette="dark:0.2", size=3, legend=False, ax=ax)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel if xlabel is not None else x)
    ax.legend(fontsize=8)
    return fig


def frequency_maps(
    maps: dict[str, NDArray[np.floating]], *, outline: NDArray[np.bool_] | None = None, label: str = "share"
) -> Figure:
    """Side-by-side heat maps of per-frequency quantities ``(n, n)`` on the centred frequency grid.

    Each map is divided by its sum (so panels with different units compare as shares); ``outline`` marks a set of
    frequencies (e.g. the dominant pairs) with a small black square, edged in white, inside each marked cell on
    every panel (full-cell outlines of neighbouring marks would seem to box in the cell between them).
    """
    if not maps:
        raise ValueError("maps must hold at least one (n, n) array")
    shapes = {np.shape(m) for m in maps.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every map must be the same (n, n) array, got shapes {sorted(shapes)}")
    n = next(iter(shapes))[0]
    if outline is not None and np.shape(outline) != (n, n):
        raise ValueError(f"outline must have shape {(n, n)}, got {np.shape(outline)}")
    freqs = np.fft.fftshift(np.fft.fftfreq(n, 1 / n)).astype(int)
    fig, axes = plt.subplots(1, len(maps), figsize=(3.0 * len(maps) + 0.8, 3.2), constrained_layout=True)
    axes = np.atleast_1d(axes)
    for ax, (name, values) in zip(axes, maps.items()):
        share = np.fft.fftshift(np.asarray(values, dtype=float) / np.sum(values))
        image = ax.imshow(share, cmap="mako_r", vmin=0, origin="lower", extent=(-0.5, n - 0.5, -0.5, n - 0.5))
        if outline is not None:
            for a, b in zip(*np.nonzero(np.fft.fftshift(outline))):
                ax.add_patch(plt.Rectangle((b - 0.32, a - 0.32), 0.64, 0.64, fill=False, edgecolor="black", linewidth=1.2,
                                           path_effects=[patheffects.withStroke(linewidth=2.6, foreground="white")]))
        ax.set_xticks(range(n), freqs, fontsize=9)
        ax.set_yticks(range(n), freqs, fontsize=9)
        ax.set_xlabel("frequency $j_2$")
        ax.set_ylabel("frequency $j_1$")
        ax.set_title(name, fontsize=9)
        ax.grid(False)
        fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    return fig


def layer_frequency_heatmap(
    panels: dict[str, NDArray[np.floating]],
    *,
    frequency_labels: Sequence[str],
    layer_labels: Sequence[str],
    xlabel: str = "frequency |m|",
    ylabel: str = "layer",
    vmax: float | None = None,
    annotate: bool = False,
) -> Figure:
    """One heat map per panel: rows are layers, columns frequencies (e.g. per-frequency singular values).

    Args:
        panels: colour-bar label → ``(layers, frequencies)`` array; panels sit side by side.
        frequency_labels, layer_labels: tick labels (their lengths must match the arrays).
        vmax: common upper end of the colour scale (default: each panel's maximum).
        annotate: write the values into the cells (small maps only).
    """
    if not panels:
        raise ValueError("need at least one panel")
    arrays = {k: np.asarray(v, dtype=float) for k, v in panels.items()}
    for k, v in arrays.items():
        if v.ndim != 2 or v.shape != (len(layer_labels), len(frequency_labels)):
            expected = (len(layer_labels), len(frequency_labels))
            raise ValueError(f"panel {k!r} has shape {v.shape}, expected {expected}")
    n = len(arrays)
    width = min(14.0, 1.2 + n * (0.45 * len(frequency_labels) + 1.6))
    fig, axes = plt.subplots(1, n, figsize=(width, 0.42 * len(layer_labels) + 1.6), squeeze=False)
    for ax, (label, arr) in zip(axes[0], arrays.items()):
        sns.heatmap(arr, ax=ax, cmap="rocket_r", vmin=0.0, vmax=vmax, annot=annotate, fmt=".2f",
                    annot_kws={"fontsize": 7}, xticklabels=list(frequency_labels), yticklabels=list(layer_labels),
                    cbar_kws={"label": label})
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    return fig


def image_panels(
    panels: Sequence[NDArray[np.floating]], labels: Sequence[str], *, ncols: int | None = None,
    cmap: str = "RdBu_r", symmetric: bool = True, size: float = 1.6,
) -> Figure:
    """Show 2-D arrays (matrices, patches, images) side by side, each labelled underneath (no titles).

    ``symmetric=True``: a diverging map centred on 0 per panel (weights, eigenvectors); otherwise ``cmap`` from the
    panel's min to max (filtered images). RGB panels ``(H, W, 3)`` are shown as they are, rescaled to ``[0, 1]``.
    """
    if len(panels) != len(labels) or not panels:
        raise ValueError(f"need as many labels as panels (> 0), got {len(panels)} panels and {len(labels)} labels")
    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.35) * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, panel, label in zip(axes.ravel(), panels, labels):
        a = np.asarray(panel, dtype=float)
        if a.ndim == 3:
            ax.imshow((a - a.min()) / max(np.ptp(a), 1e-12))
        elif symmetric:
            lim = max(float(np.abs(a).max()), 1e-12)
            ax.imshow(a, cmap=cmap, vmin=-lim, vmax=lim)
        else:
            ax.imshow(a, cmap=cmap)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("on")
        ax.grid(False)
        ax.set_xlabel(label, fontsize=8)
    fig.tight_layout()
    return fig
