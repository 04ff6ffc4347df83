"""Interactive figures for a static site: a grid sweep shipped with the page, explored with sliders.

An **explorer** is one HTML fragment: a Plotly figure (simulation solid, theory dashed, the residual underneath with
the tolerance of each mode dotted, the claim status of the point as a line of text) with one slider per varied
axis of a :class:`~how_cnns_learn.sweeps.GridSweep`, and the precomputed curves of *every* grid point in the
figure's JSON (``layout.meta.explorer``). Moving a slider runs a few lines of JavaScript that read the sliders'
positions and swap in that point's curves: no kernel, no server.

Why Plotly: its figures are plain JSON drawn by one self-contained file, ``plotly.min.js``, which the site serves
itself (the stage step copies it to ``_extra/plotly/``: :func:`write_plotly_js`; pages load it from
:data:`SITE_PLOTLY_JS`), like MathJax; no request leaves the site. Vega-Lite through Altair would need three
libraries (vega, vega-lite, vega-embed) served the same way, and its selections bind to one parameter per widget
with no built-in sliders over precomputed frames. The figure is written as JSON here, without importing plotly, so
a chapter runs where plotly is not installed (Colab); ``tests/test_interactive.py`` validates the JSON with plotly's
own schema. Colours and fonts are those of :mod:`~how_cnns_learn.plotting` (seaborn's colour-blind palette).

Where the page is opened without the site's plotly.js (a downloaded notebook), the explorer shows a line of text
saying so instead of a figure.
"""

from __future__ import annotations

import html
import json
import math
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .plotting import FONT_FAMILY, mode_palette_hex
from .sweeps import GridSweep

__all__ = ["SITE_PLOTLY_JS", "GridExplorer", "grid_explorer", "plotly_js_source", "write_plotly_js"]

SITE_PLOTLY_JS = "../plotly/plotly.min.js"
"""Where a chapter page (``book/<chapter>.html``) finds the site's copy of plotly.js (``_extra/plotly/``)."""

REGION_TEXT = {
    "holds": "theory expected to hold (k = n and E below the tolerance bound)",
    "fails": "theory expected to fail (k < n, or E ≥ Σ s)",
    "between": "no expectation (the bound E is inconclusive here)",
}
_PLOT_HEIGHT = 360  # pixels of the two panels; each slider adds 100 below them
_SCRIPT_EMITTED = {"done": False}  # one <script src=plotly.js> per kernel, i.e. per page


def plotly_js_source() -> Path:
    """Path of the ``plotly.min.js`` bundled with the installed plotly Python package (needs plotly)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the plotly package is not installed; it is pinned in environment.yml")
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if not path.exists():
        raise FileNotFoundError(f"plotly.min.js not found at {path}")
    return path


def write_plotly_js(extra_dir: Path) -> Path:
    """Copy plotly.min.js to ``extra_dir/plotly/plotly.min.js`` (the site serves it at ``/plotly/plotly.min.js``)."""
    target = Path(extra_dir) / "plotly" / "plotly.min.js"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(plotly_js_source(), target)
    return target


def _num(value: float, digits: int = 4) -> float | None:
    """A float rounded to ``digits`` significant digits (short in JSON); None for NaN/inf."""
    v = float(value)
    return float(f"{v:.{digits}g}") if math.isfinite(v) else None


def _series(values: np.ndarray) -> list[float | None]:
    return [_num(v) for v in np.asarray(values, dtype=float).ravel()]


def _default_format(axis: str) -> Callable[[float], str]:
    return {"init_scale": lambda v: f"{v:g}", "kernel_size": lambda v: f"{int(v)}",
            "step_rate": lambda v: f"{v:g}", "learning_rate": lambda v: f"{v:g}",
            "structure": lambda v: f"{v:.3g}"}[axis]


DEFAULT_LABELS = {"structure": "structure", "init_scale": "init scale σ", "kernel_size": "kernel size k",
                  "step_rate": "step rate κ = 2ηsΦ*", "learning_rate": "learning rate η"}


class GridExplorer:
    """An explorer of a :class:`~how_cnns_learn.sweeps.GridSweep` (build it with :func:`grid_explorer`).

    Attributes:
        figure: the Plotly figure as a JSON-able dict (``data``, ``layout``; the grid in ``layout.meta.explorer``).
        element_id: the id of the explorer's ``<div>`` on the page.
    """

    def __init__(self, figure: dict[str, Any], element_id: str) -> None:
        self.figure = figure
        self.element_id = element_id
        self._html: str | None = None

    @property
    def points(self) -> list[dict[str, Any]]:
        """The precomputed points (steps, simulated, theory, residual, tolerance, status) as shipped."""
        return self.figure["layout"]["meta"]["explorer"]["points"]

    def html(self, include_plotlyjs: bool = True) -> str:
        """The HTML fragment: the figure's container, its JSON, and the script that draws it and follows the sliders."""
        data = json.dumps(self.figure, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
        ident = self.element_id
        loader = f'<script charset="utf-8" src="{SITE_PLOTLY_JS}"></script>\n' if include_plotlyjs else ""
        return (
            f'<div class="hcl-explorer" id="{ident}">\n'
            f'<div class="hcl-explorer-plot" style="width:100%;height:{self.figure["layout"]["height"]}px"></div>\n'
            f'<p class="hcl-explorer-fallback"><em>Interactive figure: it is drawn by the book site\'s own copy of '
            f"plotly.js ({html.escape(SITE_PLOTLY_JS)}), which is not reachable here. Open this chapter on the book's "
            "site to move its sliders.</em></p>\n</div>\n"
            f"{loader}"
            f'<script type="application/json" id="{ident}-data">{data}</script>\n'
            f"<script>\n{_SCRIPT.replace('__ID__', ident)}</script>\n"
        )

    @property
    def nbytes(self) -> int:
        """Size of the HTML fragment in bytes (what the explorer adds to its page, plotly.js not counted)."""
        return len(self.html(include_plotlyjs=False).encode("utf-8"))

    def _repr_html_(self) -> str:
        if self._html is None:  # the first explorer shown in a kernel (one page) loads plotly.js
            self._html = self.html(include_plotlyjs=not _SCRIPT_EMITTED["done"])
            _SCRIPT_EMITTED["done"] = True
        return self._html

    def __repr__(self) -> str:
        meta = self.figure["layout"]["meta"]["explorer"]
        axes = ", ".join(f"{a['label']} ({len(a['values'])})" for a in meta["axes"])
        return f"<GridExplorer {self.element_id}: {len(meta['points'])} points over {axes}; {self.nbytes} bytes>"


def grid_explorer(
    sweep: GridSweep,
    *,
    element_id: str,
    labels: Mapping[str, str] | None = None,
    formats: Mapping[str, Callable[[float], str]] | None = None,
    network: int = 0,
    max_samples: int = 160,
    default: Mapping[str, float] | None = None,
) -> GridExplorer:
    """Build the explorer of ``sweep``: one slider per varied axis, the curves of network ``network`` at every point.

    Args:
        sweep: the grid (its ``points`` carry the tolerance, the residual and the region of each point).
        element_id: a page-unique id (letters, digits, ``-``), e.g. ``"explorer-stages"``.
        labels, formats: per axis, the slider's label and how its values are written (defaults: :data:`DEFAULT_LABELS`).
        network: which of the ``B`` networks to draw (the status covers all of them).
        max_samples: at most this many steps per curve (evenly spaced, the last included) to keep the page small;
            the claim uses every step.
        default: axis → value of the point shown first (default: the first point in the region ``"holds"``).
    """
    if not element_id or not all(c.isalnum() or c == "-" for c in element_id):
        raise ValueError(f"element_id must be letters, digits and '-', got {element_id!r}")
    if not sweep.varied:
        raise ValueError("the sweep varies no axis: an explorer needs at least one axis with two or more values")
    if network not in range(len(sweep.seeds)):
        raise ValueError(f"network must be in [0, {len(sweep.seeds)}), got {network}")
    if max_samples < 2:
        raise ValueError(f"max_samples must be >= 2, got {max_samples}")
    names = {**DEFAULT_LABELS, **(labels or {})}
    axes = sweep.axes
    fmt = {axis: (formats or {}).get(axis, _default_format(axis)) for axis in axes}
    varied = sweep.varied
    sizes = [len(sweep.values[a]) for a in axes]
    strides = [int(np.prod(sizes[i + 1:])) for i in range(len(axes))]
    points = sweep.points
    p = int(sweep.curves["mode"].max())
    curves = sweep.curves[sweep.curves["network"] == network]
    shipped = []
    for index, row in points.iterrows():
        c = curves[curves["point"] == index].sort_values(["step", "mode"])
        steps = c["step"].to_numpy().reshape(-1, p)[:, 0]
        keep = np.unique(np.round(np.linspace(0, steps.size - 1, min(steps.size, max_samples))).astype(int))
        table = {name: c[name].to_numpy().reshape(-1, p)[keep].T for name in ("simulated", "theory", "residual")}
        where = " · ".join(f"{names[a]} = {fmt[a](row[a])}" for a in varied)
        verdict = ("within tolerance ✓" if row["within"] else "outside tolerance ✗")
        ratio = "∞" if not math.isfinite(row["ratio"]) else f"{row['ratio']:.3g}"
        shipped.append({
            "steps": [int(t) for t in steps[keep]],
            "simulated": [_series(v) for v in table["simulated"]],
            "theory": [_series(v) for v in table["theory"]],
            "residual": [_series(np.maximum(np.abs(v), 1e-12)) for v in table["residual"]],
            "tolerance": _series(row["tolerance"]),
            "ratio": _num(row["ratio"]),
            "within": bool(row["within"]),
            "region": row["region"],
            "status": f"<b>{where}</b><br>largest residual = {ratio} × tolerance: <b>{verdict}</b><br>"
                      f"{REGION_TEXT[row['region']]}",
        })
    if default is None:
        holds = points.index[points["region"] == "holds"]
        start = int(holds[0]) if len(holds) else 0
    else:
        start = sum(sweep.values[a].index(float(default.get(a, sweep.values[a][0]))) * strides[i]
                    for i, a in enumerate(axes))
    first = shipped[start]
    colours = mode_palette_hex(p)
    data: list[dict[str, Any]] = []
    for alpha in range(p):  # traces: p simulated, p theory, p residuals, p tolerances (the script relies on it)
        data.append({"type": "scatter", "mode": "lines", "name": f"mode {alpha + 1}", "legendgroup": f"m{alpha}",
                     "x": first["steps"], "y": first["simulated"][alpha], "line": {"color": colours[alpha], "width": 2}})
    for alpha in range(p):
        data.append({"type": "scatter", "mode": "lines", "name": f"theory, mode {alpha + 1}", "legendgroup": f"m{alpha}",
                     "showlegend": False, "x": first["steps"], "y": first["theory"][alpha],
                     "line": {"color": colours[alpha], "width": 1.6, "dash": "dash"}})
    for alpha in range(p):
        data.append({"type": "scatter", "mode": "lines", "name": f"|residual|, mode {alpha + 1}",
                     "legendgroup": f"m{alpha}", "showlegend": False, "x": first["steps"],
                     "y": first["residual"][alpha], "xaxis": "x2", "yaxis": "y2",
                     "line": {"color": colours[alpha], "width": 1.5}})
    for alpha in range(p):
        data.append({"type": "scatter", "mode": "lines", "name": f"tolerance, mode {alpha + 1}",
                     "legendgroup": f"m{alpha}", "showlegend": False, "x": [0, first["steps"][-1]],
                     "y": [first["tolerance"][alpha]] * 2, "xaxis": "x2", "yaxis": "y2",
                     "line": {"color": colours[alpha], "width": 1.2, "dash": "dot"}})
    sliders = []
    for i, axis in enumerate(varied):
        values = sweep.values[axis]
        active = (start // strides[axes.index(axis)]) % len(values)
        sliders.append({
            "active": active, "len": 0.86, "x": 0.07, "y": -(62 + 100 * i) / _PLOT_HEIGHT, "yanchor": "top",
            "pad": {"t": 30, "b": 4},
            "currentvalue": {"prefix": f"{names[axis]} = ", "font": {"size": 13}, "xanchor": "left"},
            "steps": [{"label": fmt[axis](v), "method": "skip", "args": [], "value": str(j)}
                      for j, v in enumerate(values)],
        })
    height = _PLOT_HEIGHT + 182 + 100 * len(varied)
    font = {"family": FONT_FAMILY, "size": 13, "color": "#262626"}
    layout = {
        "height": height, "font": font, "template": "none", "paper_bgcolor": "white", "plot_bgcolor": "#eaeaf2",
        "margin": {"l": 70, "r": 20, "t": 92, "b": 90 + 100 * len(varied)},
        "xaxis": {"anchor": "y", "domain": [0, 1], "matches": "x2", "showticklabels": False, "gridcolor": "white",
                  "zeroline": False},
        "yaxis": {"domain": [0.40, 1.0], "title": {"text": "mode strength a/s"}, "gridcolor": "white", "zeroline": False},
        "xaxis2": {"anchor": "y2", "domain": [0, 1], "title": {"text": "training step"}, "gridcolor": "white",
                   "zeroline": False},
        "yaxis2": {"domain": [0.0, 0.30], "type": "log", "title": {"text": "|sim. − theory| / s"},
                   "gridcolor": "white", "exponentformat": "power"},
        "legend": {"orientation": "h", "x": 1.0, "xanchor": "right", "y": 1.0, "yanchor": "bottom",
                   "font": {"size": 12}},
        "annotations": [{"text": first["status"], "xref": "paper", "yref": "paper", "x": 0, "y": 1.0,
                         "xanchor": "left", "yanchor": "bottom", "yshift": 22, "align": "left", "showarrow": False,
                         "font": {"size": 12}},
                        {"text": "solid: simulation · dashed: theory · dotted: tolerance", "xref": "paper",
                         "yref": "paper", "x": 1.0, "y": 0.31, "xanchor": "right", "yanchor": "bottom",
                         "showarrow": False, "font": {"size": 11, "color": "#555555"}}],
        "sliders": sliders,
        "meta": {"explorer": {
            "axes": [{"name": a, "label": names[a], "values": [_num(v, 6) for v in sweep.values[a]],
                      "text": [fmt[a](v) for v in sweep.values[a]]} for a in varied],
            "strides": [strides[axes.index(a)] for a in varied],
            "modes": p, "network": int(sweep.seeds[network]), "start": start, "points": shipped,
        }},
    }
    return GridExplorer({"data": data, "layout": layout}, element_id)


# The script of every explorer (``__ID__`` is replaced by the element id). It draws the figure, and on every slider
# move reads the sliders' positions, finds the grid point and swaps in its curves, tolerances and status.
# No mode bar: on hover it covered the status line; dragging still zooms and a double click resets the axes.
_SCRIPT = r"""(function () {
  var root = document.getElementById('__ID__');
  if (!root || !window.Plotly) { return; }
  var fallback = root.querySelector('.hcl-explorer-fallback');
  if (fallback) { fallback.remove(); }
  var gd = root.querySelector('.hcl-explorer-plot');
  var figure = JSON.parse(document.getElementById('__ID__-data').textContent);
  var grid = figure.layout.meta.explorer;
  var p = grid.modes;
  function currentIndex() {
    var index = 0;
    gd.layout.sliders.forEach(function (slider, i) { index += (slider.active || 0) * grid.strides[i]; });
    return index;
  }
  function show(index) {
    var point = grid.points[index];
    var xs = [], ys = [], traces = [];
    for (var a = 0; a < p; a++) {
      xs.push(point.steps); ys.push(point.simulated[a]); traces.push(a);
      xs.push(point.steps); ys.push(point.theory[a]); traces.push(p + a);
      xs.push(point.steps); ys.push(point.residual[a]); traces.push(2 * p + a);
      xs.push([0, point.steps[point.steps.length - 1]]); ys.push([point.tolerance[a], point.tolerance[a]]);
      traces.push(3 * p + a);
    }
    root.dataset.point = String(index);
    return Plotly.update(gd, {x: xs, y: ys}, {'annotations[0].text': point.status, 'xaxis2.autorange': true,
                                              'yaxis.autorange': true, 'yaxis2.autorange': true}, traces);
  }
  Plotly.newPlot(gd, figure.data, figure.layout, {responsive: true, displayModeBar: false}).then(function () {
    root.dataset.point = String(grid.start);
    gd.on('plotly_sliderchange', function () { show(currentIndex()); });
  });
})();
"""
