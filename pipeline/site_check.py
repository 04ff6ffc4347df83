"""Check the rendered book in a real browser (headless Chromium driven by Playwright).

For every HTML page of the built site, served on localhost, it checks that

* every ``<img>`` has loaded (``naturalWidth > 0``);
* every internal link resolves to an existing file, and every ``#anchor`` to an element id on its page;
* all maths is typeset: MathJax is **served by the site itself** (vendored from npm, see the Makefile), so
  every ``.math`` element must contain a rendered ``mjx-container``, and the page must request nothing
  from any host other than the local server (no CDN);
* no executed cell shows an error or a traceback;
* every chapter page shows its table of results (with their rivals), and no claims table shows a failed claim;
* the claim badges are readable in **light and dark mode**: the text of every badge reaches a contrast ratio of at
  least :data:`MIN_CONTRAST` (WCAG AA) against the page background in both themes (chapter pages are opened a
  second time with the browser preferring dark mode, which the theme follows).

It saves a full-page screenshot of each page (``dark__<page>.png`` for the dark-mode pass). Chromium is Debian's (``make browser`` installs it); the
Playwright Python package only drives it (no browser download).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
SKIP_PAGES = {"search.html", "genindex.html"}
MIN_CONTRAST = 4.5
CONTRAST_PROBE = """() => {
  const rgb = c => (c.match(/[\\d.]+/g) || [255, 255, 255]).slice(0, 3).map(Number);
  const alpha = c => { const v = c.match(/[\\d.]+/g) || []; return v.length > 3 ? Number(v[3]) : 1; };
  const lum = c => { const [r, g, b] = rgb(c).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
                     return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const background = el => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
                              if (c && alpha(c) > 0.5) return c; } return 'rgb(255, 255, 255)'; };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const parts = Array.from(document.querySelectorAll('.claim-badge, .claim-badge b, .claim-badge .claim-theory, .claim-badge .claim-alternative'));
  const measured = parts.map(e => ({text: e.textContent.slice(0, 40), ratio: ratio(getComputedStyle(e).color, background(e))}));
  measured.sort((a, b) => a.ratio - b.ratio);
  return {theme: document.documentElement.dataset.theme || 'light', n: measured.length, worst: measured[0] || null};
}"""


def chromium_path() -> str | None:
    """Path of a Chromium executable (``$CHROMIUM`` or ``chromium`` on ``PATH``), or None."""
    candidate = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return candidate if candidate and Path(candidate).exists() else None


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free localhost port for the duration of the block; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _ids(html_file: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html_file.read_text(encoding="utf-8", errors="replace")))


PAGE_PROBE = """() => {
  const imgs = Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}));
  const maths = Array.from(document.querySelectorAll('.math'));
  const unrendered = maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60));
  const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'));
  const errors = Array.from(document.querySelectorAll('.cell_output .traceback, .cell_output .error, .output.traceback'))
      .map(e => e.textContent.slice(0, 120));
  const tracebacks = Array.from(document.querySelectorAll('.cell_output'))
      .filter(e => e.textContent.includes('Traceback (most recent call last)')).length;
  const claimTables = Array.from(document.querySelectorAll('table')).filter(t => {
      const head = Array.from(t.querySelectorAll('th')).map(th => th.textContent.trim());
      return head.includes('claim') && head.includes('pass');
  }).map(t => ({results: Array.from(t.querySelectorAll('th')).some(th => th.textContent.trim().startsWith('rival')),
                 cells: Array.from(t.querySelectorAll('tbody tr')).map(r => r.lastElementChild.textContent.trim())}));
  return {imgs, nMath: maths.length, unrendered, links, errors, tracebacks, claimTables};
}"""


SETTLE_TIMEOUT_MS = 60_000


def settle(page) -> None:
    """Wait until the page's own scripts are done: the theme is applied and MathJax has typeset the page.

    ``networkidle`` is not enough: a page that also parses a large script (plotly.js on the explorer pages) can
    reach it before MathJax has even started, so the typesetting promise is awaited once MathJax exists."""
    page.wait_for_function("() => !!document.documentElement.dataset.theme", timeout=SETTLE_TIMEOUT_MS)
    if page.evaluate("() => !!document.querySelector('script[src*=\"mathjax\"]')"):
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                               timeout=SETTLE_TIMEOUT_MS)
        page.evaluate("() => MathJax.startup.promise")


def check_site(html_dir: Path, chapter_stems: list[str], screenshot_dir: Path | None = None) -> list[str]:
    """Open every page of the site in headless Chromium; return a list of problems (empty = all good)."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("Chromium not found: install it with `make browser` (Debian package chromium)")
    pages = sorted(p for p in html_dir.rglob("*.html") if p.name not in SKIP_PAGES and "_static" not in p.parts)
    problems: list[str] = []
    if screenshot_dir is not None:
        screenshot_dir.mkdir(parents=True, exist_ok=True)
    with serve(html_dir) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        for page_file in pages:
            rel = page_file.relative_to(html_dir).as_posix()
            page = context.new_page()
            foreign: list[str] = []
            page.on("request", lambda r, f=foreign: f.append(r.url) if not r.url.startswith(base) else None)
            page.goto(f"{base}/{rel}", wait_until="networkidle")
            if urlparse(page.url).path != urlparse(f"{base}/{rel}").path:  # a redirect page (index.html)
                if not (html_dir / unquote(urlparse(page.url).path).lstrip("/")).exists():
                    problems.append(f"{rel}: redirects to a missing page {page.url}")
                page.close()
                continue
            settle(page)
            probe = page.evaluate(PAGE_PROBE)
            problems += [f"{rel}: image not loaded: {i['src']}" for i in probe["imgs"] if not i["ok"]]
            problems += [f"{rel}: maths not typeset: {text!r}" for text in probe["unrendered"]]
            problems += [f"{rel}: request to a foreign host (everything must be served locally): {u}" for u in foreign]
            problems += [f"{rel}: error output in a cell: {e!r}" for e in probe["errors"]]
            if probe["tracebacks"]:
                problems.append(f"{rel}: {probe['tracebacks']} cell output(s) show a traceback")
            for href in probe["links"]:
                problems += _check_link(html_dir, page_file, href)
            stem = page_file.stem
            if page_file.parent.name == "book" and stem in chapter_stems:
                problems += _contrast_problems(page, rel, "light")
                tables = probe["claimTables"]
                if not any(t["results"] and t["cells"] for t in tables):
                    problems.append(f"{rel}: no table of results (with their rivals) found")
                for table in tables:
                    if any("✓" not in cell for cell in table["cells"]):
                        problems.append(f"{rel}: a claims table shows a failed claim: {table['cells']}")
            if screenshot_dir is not None:
                page.screenshot(path=str(screenshot_dir / (rel.replace("/", "__")[:-5] + ".png")), full_page=True)
            page.close()
        dark = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
        for page_file in pages:
            if not (page_file.parent.name == "book" and page_file.stem in chapter_stems):
                continue
            rel = page_file.relative_to(html_dir).as_posix()
            page = dark.new_page()
            page.goto(f"{base}/{rel}", wait_until="networkidle")
            settle(page)
            problems += _contrast_problems(page, rel, "dark")
            if screenshot_dir is not None:
                page.screenshot(path=str(screenshot_dir / ("dark__" + rel.replace("/", "__")[:-5] + ".png")),
                                full_page=True)
            page.close()
        browser.close()
    return problems


def _contrast_problems(page, rel: str, theme: str) -> list[str]:
    """Badge text below :data:`MIN_CONTRAST` against its background, or a page that is not in ``theme``."""
    probe = page.evaluate(CONTRAST_PROBE)
    if probe["theme"] != theme:
        return [f"{rel}: expected the {theme} theme, the page shows {probe['theme']!r}"]
    if not probe["n"]:
        return [f"{rel}: no claim badge found ({theme} mode)"]
    worst = probe["worst"]
    if worst["ratio"] < MIN_CONTRAST:
        return [f"{rel}: badge text {worst['text']!r} has contrast {worst['ratio']:.2f} < {MIN_CONTRAST} in {theme} mode"]
    return []


def _check_link(html_dir: Path, page_file: Path, href: str) -> list[str]:
    parsed = urlparse(href)
    if parsed.scheme in ("http", "https", "mailto", "javascript") or href.startswith("//"):
        return []  # external: not fetched (no network); the page itself must not *load* anything external
    path, fragment = urldefrag(href)
    target = page_file if not path else (page_file.parent / unquote(path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    rel = page_file.relative_to(html_dir).as_posix()
    if not target.exists():
        return [f"{rel}: broken internal link {href!r}"]
    if fragment and target.suffix == ".html" and fragment not in _ids(target):
        return [f"{rel}: link {href!r} points to a missing anchor"]
    return []


def main() -> int:
    """``python -m pipeline.site_check [HTML_DIR]``: check the built site, screenshots to _build/screenshots."""
    import sys

    from .execute import BUILD, chapters

    html_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else BUILD / "html"
    problems = check_site(html_dir, [c.stem for c in chapters()], BUILD / "screenshots")
    for problem in problems:
        print("PROBLEM:", problem)
    print(f"{len(problems)} problem(s); screenshots in {BUILD / 'screenshots'}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
