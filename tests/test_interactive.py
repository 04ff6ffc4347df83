"""Grid sweeps (how_cnns_learn.sweeps) and the static interactive explorers (how_cnns_learn.interactive)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from how_cnns_learn import data, interactive, plotting, sweeps

LIB = Path(__file__).resolve().parent.parent / "lib" / "how_cnns_learn"


@pytest.fixture(scope="module")
def grid() -> sweeps.GridSweep:
    """A small grid: two init scales × two kernel sizes × two step rates, two networks (about a second)."""
    return sweeps.linear_cnn_grid(data.designed_structure(), init_scales=[1e-3, 0.3], kernel_sizes=[8, 3],
                                  step_rates=[0.5, 1.9], seeds=[0, 1])


def test_grid_enumerates_points_in_axis_order_and_judges_each(grid):
    points = grid.points
    assert len(points) == 8 and grid.varied == ["init_scale", "kernel_size", "step_rate"]
    assert points[["init_scale", "kernel_size", "step_rate"]].values.tolist()[:3] == [[1e-3, 8, 0.5], [1e-3, 8, 1.9],
                                                                                      [1e-3, 3, 0.5]]
    # regions from the assumptions alone: small init and k = n holds; k < n or E ≥ Σs fails
    assert points["region"].tolist() == ["holds", "holds", "fails", "fails", "fails", "fails", "fails", "fails"]
    assert points["within"].tolist() == [True, True, False, False, False, False, False, False]
    share = sweeps.region_fractions(points)
    assert share["holds"] == 1.0 and share["fails"] == 0.0 and share["n_holds"] == 2 and share["n_fails"] == 6
    assert np.isnan(share["between"])


def test_grid_lr_follows_the_step_rate_and_the_tolerance_is_one_step_of_the_prediction(grid):
    d1 = data.designed_structure()
    from how_cnns_learn import fourier

    fastest = (d1.s * fourier.dominant_amplitude(d1.phi)).max()
    assert np.allclose(grid.points["lr"], grid.points["step_rate"] / (2 * fastest))
    curves = grid.curves[grid.curves["point"] == 0]
    theory = curves.pivot_table(index="step", columns=["network", "mode"], values="theory").to_numpy()
    expected = np.abs(np.diff(theory, axis=0)).max(axis=0).reshape(2, 3).min(axis=0)
    assert np.allclose(grid.points.loc[0, "tolerance"], expected)
    assert np.allclose(curves["residual"], curves["simulated"] - curves["theory"])
    # the small-init full-kernel point agrees far inside its tolerance; the ratio is the worst residual/tolerance
    assert grid.points.loc[0, "ratio"] < 1e-2


def test_grid_rejects_bad_arguments_naming_them():
    d1 = data.designed_structure()
    with pytest.raises(ValueError, match="init_scales"):
        sweeps.linear_cnn_grid(d1, init_scales=[0.0], step_rates=[1.0])
    with pytest.raises(ValueError, match="step_rates"):
        sweeps.linear_cnn_grid(d1, init_scales=[1e-3], step_rates=[])
    with pytest.raises(ValueError, match="kernel_sizes"):
        sweeps.linear_cnn_grid(d1, init_scales=[1e-3], step_rates=[1.0], kernel_sizes=[9])
    with pytest.raises(ValueError, match="structures"):
        sweeps.linear_cnn_grid({}, init_scales=[1e-3], step_rates=[1.0])
    with pytest.raises(ValueError, match="stretch"):
        sweeps.linear_cnn_grid(d1, init_scales=[1e-3], step_rates=[1.0], stretch=0.5)
    with pytest.raises(ValueError, match="region"):
        sweeps.region_fractions(__import__("pandas").DataFrame({"x": [1]}))


@pytest.fixture(scope="module")
def explorer(grid) -> interactive.GridExplorer:
    return interactive.grid_explorer(grid, element_id="test-explorer", max_samples=40)


def test_explorer_figure_is_valid_plotly_json(explorer):
    import plotly.graph_objects as go

    figure = go.Figure(explorer.figure)  # raises on any property plotly's schema does not know
    assert len(figure.data) == 4 * 3 and len(figure.layout.sliders) == 3
    assert [t.name for t in figure.data[3:6]] == [f"theory, mode {a}" for a in (1, 2, 3)]
    assert all(t.line.dash == "dash" for t in figure.data[3:6]) and all(t.line.dash is None for t in figure.data[:3])
    assert all(step.method == "skip" for slider in figure.layout.sliders for step in slider.steps)
    colours = [t.line.color for t in figure.data[:3]]
    assert colours == plotting.mode_palette_hex(3)  # the book's seaborn palette


def test_explorer_ships_every_point_downsampled_and_indexed_by_the_sliders(grid, explorer):
    meta = explorer.figure["layout"]["meta"]["explorer"]
    assert len(meta["points"]) == len(grid.points) and meta["strides"] == [4, 2, 1]
    for index, point in enumerate(meta["points"]):
        row = grid.points.loc[index]
        actives = [grid.values[a].index(row[a]) for a in grid.varied]
        assert sum(a * s for a, s in zip(actives, meta["strides"])) == index
        assert 2 <= len(point["steps"]) <= 40 and point["steps"][-1] == int(row["steps"])
        curve = grid.curves[(grid.curves["point"] == index) & (grid.curves["network"] == 0) & (grid.curves["mode"] == 2)]
        sim = curve.set_index("step").loc[point["steps"], "simulated"].to_numpy()
        shipped = np.array([np.nan if v is None else v for v in point["simulated"][1]])  # None: diverged (inf/NaN)
        assert np.array_equal(np.isfinite(shipped), np.isfinite(sim))
        assert np.allclose(shipped[np.isfinite(sim)], sim[np.isfinite(sim)], rtol=1e-3, atol=1e-12)
        assert point["within"] == bool(row["within"]) and point["region"] == row["region"]
        assert ("within tolerance ✓" in point["status"]) == point["within"]


def test_explorer_html_loads_plotly_from_the_site_once_and_escapes_its_json(grid):
    interactive._SCRIPT_EMITTED["done"] = False
    first = interactive.grid_explorer(grid, element_id="first")
    second = interactive.grid_explorer(grid, element_id="second")
    html_first, html_second = first._repr_html_(), second._repr_html_()
    assert html_first.count(f'src="{interactive.SITE_PLOTLY_JS}"') == 1 and "plotly.min.js\"" not in html_second
    for page in (html_first, html_second):
        assert not re.search(r"https?://", page), "an explorer must not load anything from outside the site"
        assert "__ID__" not in page and "hcl-explorer-fallback" in page
        payload = re.search(r'<script type="application/json" id="[^"]+-data">(.*?)</script>', page, re.S).group(1)
        assert "</" not in payload
        assert json.loads(payload.replace("<\\/", "</"))["layout"]["meta"]["explorer"]["points"]
    assert first._repr_html_() == html_first  # rendering twice does not change the page
    assert 0 < first.nbytes < 3e6


def test_explorer_rejects_bad_arguments(grid):
    with pytest.raises(ValueError, match="element_id"):
        interactive.grid_explorer(grid, element_id="bad id")
    with pytest.raises(ValueError, match="network"):
        interactive.grid_explorer(grid, element_id="x", network=5)
    with pytest.raises(ValueError, match="max_samples"):
        interactive.grid_explorer(grid, element_id="x", max_samples=1)


def test_write_plotly_js_copies_the_bundled_library(tmp_path):
    target = interactive.write_plotly_js(tmp_path)
    assert target == tmp_path / "plotly" / "plotly.min.js" and target.stat().st_size > 1e6
    assert interactive.SITE_PLOTLY_JS == "../plotly/plotly.min.js"  # chapter pages live in book/


def test_only_plotting_and_interactive_touch_figure_libraries():
    for path in LIB.glob("*.py"):
        uses = re.search(r"^\s*(import|from)\s+(plotly|altair|bokeh|vega)", path.read_text(), re.M)
        assert not uses, f"{path.name}: interactive figures are written as JSON in interactive.py, without importing plotly"


def test_grid_over_learning_rates_and_structures_keeps_eta_fixed_across_phi_star():
    d1 = data.designed_structure()
    cosine = data.DatasetStructure(U=np.eye(1), s=[1.0], phi=data.cosine_image(8, 0, 2)[None])
    grid = sweeps.linear_cnn_grid({5.66: cosine, 2.83: data.DatasetStructure(U=d1.U[:1, :1] / abs(d1.U[0, 0]), s=[1.0],
                                                                               phi=d1.phi[:1])},
                                  init_scales=[1e-3], learning_rates=[0.01, 0.02], seeds=[0])
    assert grid.axes == ("structure", "init_scale", "kernel_size", "learning_rate")
    assert grid.varied == ["structure", "learning_rate"]
    assert np.allclose(grid.points["lr"], [0.01, 0.02, 0.01, 0.02])
    assert np.allclose(grid.points["step_rate"], 2 * grid.points["lr"] * np.array([8 / np.sqrt(2)] * 2 + [8 / np.sqrt(8)] * 2))
    explorer = interactive.grid_explorer(grid, element_id="rates")
    assert [a["name"] for a in explorer.figure["layout"]["meta"]["explorer"]["axes"]] == ["structure", "learning_rate"]
    with pytest.raises(ValueError, match="exactly one of step_rates"):
        sweeps.linear_cnn_grid(d1, init_scales=[1e-3], step_rates=[1.0], learning_rates=[0.01])


def test_grid_claim_arguments_state_every_point_and_the_rival_everywhere(grid):
    arguments = sweeps.grid_claim_arguments(grid.points)
    assert arguments["measured"] == [1.0, 0.0] and arguments["expected"] == [1.0, 0.0]
    assert arguments["atol"] == 0.5 / 6 and arguments["alternative"][1] == [1.0, 1.0]
    with pytest.raises(ValueError, match="both regions"):
        sweeps.grid_claim_arguments(grid.points[grid.points["region"] == "fails"])
