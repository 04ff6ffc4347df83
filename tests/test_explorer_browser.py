"""The interactive explorers on the built site: page budget, and a real browser moving their sliders.

Slow: they need the built book (the ``built_site`` fixture executes and builds it). The browser test opens every page
with an explorer in headless Chromium (Debian's, as in :mod:`pipeline.site_check`), aborts and records any request
that would leave the local server, moves the first slider of every explorer to its last value by clicking the rail
under that value's tick, and checks that the plotted curves, the theory trace and the status line are then exactly
the precomputed ones of the selected grid point (from the page's own figure JSON, whose grid agrees with the
chapter's claim record). Screenshots before and after go to ``_build/screenshots/explorer__*``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import execute as ex
from pipeline import site_check

PAGE_BUDGET = 3_000_000  # bytes of HTML per page (figure data included); plotly.js is shared and cached
MARKER = 'class="hcl-explorer"'
# sphinx-thebe's script is included twice by Jupyter Book 1 on every page (explorer or not); nothing of ours
KNOWN_PAGE_ERRORS = {"Identifier 'THEBE_JS_URL' has already been declared"}

STATE = """id => {
  const root = document.getElementById(id);
  const gd = root.querySelector('.hcl-explorer-plot');
  return {point: root.dataset.point, actives: (gd.layout.sliders || []).map(s => s.active || 0),
          names: gd.data.map(t => t.name), x: gd.data.map(t => t.x), y: gd.data.map(t => t.y),
          status: gd.layout.annotations[0].text};
}"""


def explorer_pages(html_dir: Path) -> list[Path]:
    return sorted(p for p in (html_dir / "book").glob("*.html") if MARKER in p.read_text(encoding="utf-8"))


def drive_explorers(html_dir: Path, screenshot_dir: Path | None = None) -> dict[str, dict]:
    """Open every explorer page, move each explorer's first slider to its last value; return what was seen per
    explorer id: the grid from the page's JSON, the state before and after, and the requests that left the site."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, dict] = {}
    with site_check.serve(html_dir) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=site_check.chromium_path(), args=site_check.CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        foreign: list[str] = []

        def route(request_route):
            if request_route.request.url.startswith(base):
                request_route.continue_()
            else:
                foreign.append(request_route.request.url)
                request_route.abort()

        context.route("**/*", route)
        for page_file in explorer_pages(html_dir):
            rel = page_file.relative_to(html_dir).as_posix()
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error, e=errors: e.append(str(error)))
            page.goto(f"{base}/{rel}", wait_until="networkidle")
            ids = page.evaluate("() => Array.from(document.querySelectorAll('.hcl-explorer')).map(e => e.id)")
            for ident in ids:
                page.wait_for_function(f"() => document.getElementById('{ident}').dataset.point !== undefined")
                figure = json.loads(page.evaluate(f"() => document.getElementById('{ident}-data').textContent"))
                element = page.query_selector(f"#{ident}")
                element.scroll_into_view_if_needed()
                if screenshot_dir is not None:
                    element.screenshot(path=str(screenshot_dir / f"explorer__{ident}__before.png"))
                before = page.evaluate(STATE, ident)
                slider = element.query_selector_all(".slider-group")[0]
                ticks = slider.query_selector_all("text.slider-label")[1:]  # [0] is the current-value label
                tick, rail = ticks[-1].bounding_box(), slider.query_selector("rect.slider-rail-rect").bounding_box()
                page.mouse.click(tick["x"] + tick["width"] / 2, rail["y"] + rail["height"] / 2)
                page.wait_for_function(f"() => document.getElementById('{ident}').dataset.point !== '{before['point']}'",
                                       timeout=5000)
                after = page.evaluate(STATE, ident)
                if screenshot_dir is not None:
                    element.screenshot(path=str(screenshot_dir / f"explorer__{ident}__after.png"))
                seen[ident] = {"page": rel, "grid": figure["layout"]["meta"]["explorer"], "before": before,
                               "after": after, "errors": list(errors)}
            page.close()
        browser.close()
    for record in seen.values():
        record["foreign"] = list(foreign)
    return seen


def _clean(values: list) -> list:
    return [None if v is None else float(v) for v in values]


def check_explorers(seen: dict[str, dict]) -> list[str]:
    """Problems with what :func:`drive_explorers` saw (empty: every slider swapped in its point's precomputed data)."""
    problems = []
    for ident, record in seen.items():
        grid, before, after = record["grid"], record["before"], record["after"]
        p = grid["modes"]
        if record["foreign"]:
            problems.append(f"{ident}: requests left the site: {record['foreign'][:3]}")
        errors = [e for e in record["errors"] if e not in KNOWN_PAGE_ERRORS]
        if errors:
            problems.append(f"{ident}: page errors: {errors[:3]}")
        last = len(grid["axes"][0]["values"]) - 1
        if after["actives"][0] != last or after["actives"][1:] != before["actives"][1:]:
            problems.append(f"{ident}: the first slider did not move to its last value: {after['actives']}")
        index = sum(a * s for a, s in zip(after["actives"], grid["strides"]))
        if after["point"] != str(index):
            problems.append(f"{ident}: the page shows point {after['point']}, the sliders select {index}")
        point = grid["points"][index]
        if after["names"][p:2 * p] != [f"theory, mode {a + 1}" for a in range(p)]:
            problems.append(f"{ident}: no theory trace per mode: {after['names']}")
        for a in range(p):
            for trace, key in ((a, "simulated"), (p + a, "theory"), (2 * p + a, "residual")):
                if _clean(after["y"][trace]) != _clean(point[key][a]) or after["x"][trace] != point["steps"]:
                    problems.append(f"{ident}: trace {after['names'][trace]!r} does not show point {index}'s {key}")
            if after["y"][3 * p + a] != [point["tolerance"][a]] * 2:
                problems.append(f"{ident}: the tolerance of mode {a + 1} is not point {index}'s")
        if after["status"] != point["status"]:
            problems.append(f"{ident}: the status line is not point {index}'s: {after['status']!r}")
        if after["y"][0] == before["y"][0]:
            problems.append(f"{ident}: moving the slider did not change the plotted data")
    return problems


@pytest.mark.slow
def test_explorer_pages_stay_within_the_page_budget(built_site: Path):
    pages = explorer_pages(built_site)
    assert {p.stem for p in pages} >= {"explorer"}, "the Explorer chapter has an explorer"
    assert len(pages) >= 4, f"the Explorer chapter and at least three core chapters have explorers: {pages}"
    for page in pages:
        size = page.stat().st_size
        assert size <= PAGE_BUDGET, f"{page.name}: {size / 1e6:.2f} MB exceeds the page budget of 3 MB"
        text = page.read_text(encoding="utf-8")
        assert text.count('src="../plotly/plotly.min.js"') == 1, f"{page.name}: plotly.js must be loaded once, locally"
        assert "cdn.plot.ly" not in text and "cdn.jsdelivr" not in text
    assert (built_site / "plotly" / "plotly.min.js").stat().st_size > 1e6


@pytest.mark.slow
def test_explorer_sliders_show_the_precomputed_point_in_a_real_browser(built_site: Path, build_paths: ex.BuildPaths):
    if site_check.chromium_path() is None:
        pytest.skip("Chromium is not installed and `make browser` could not install it (needs root and apt-get)")
    screenshots = ex.BUILD / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    seen = drive_explorers(built_site, screenshots)
    assert "explorer-d1" in seen and len(seen) >= 4
    assert check_explorers(seen) == []
    # the page's grid is the one the chapter judged: same number of points and the same regions as its record
    record = {c["id"]: c["measured"] for c in json.loads((build_paths.claims / "explorer.json").read_text())["claims"]}
    points = seen["explorer-d1"]["grid"]["points"]
    assert len(points) == record["grid-points"]
    assert sum(p["region"] == "holds" for p in points) == record["points-holds"]
    assert sum(p["region"] == "fails" for p in points) == record["points-fails"]
