"""The book as one PDF, offline: Jupyter Book's ``singlehtml`` build printed by headless Chromium.

``python -m pipeline.pdf`` (``make pdf``) builds ``_build/pdf/_build/singlehtml`` from the staged source,
serves it on localhost, waits until the site's own MathJax has typeset every formula, and prints it to
``_build/book.pdf``. (Jupyter Book's own PDF routes need either a downloaded Chromium (pyppeteer) or a
TeX installation; this one uses the Chromium the browser test already needs.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from .execute import BUILD
from .site_check import CHROMIUM_FLAGS, chromium_path, serve, settle


def build_pdf(src: Path = BUILD / "src", out: Path = BUILD / "book.pdf") -> Path:
    from playwright.sync_api import sync_playwright

    jb = Path(sys.executable).parent / "jupyter-book"
    subprocess.run([str(jb), "build", str(src), "--path-output", str(BUILD / "pdf"), "--builder", "singlehtml"],
                   check=True, capture_output=True, text=True)
    site = BUILD / "pdf" / "_build" / "singlehtml"
    # singlehtml puts the whole book on the root page but writes its links as if the page sat at the site root:
    # serve a copy there.
    root = yaml.safe_load((src / "_toc.yml").read_text())["root"]
    page_path = "print.html"
    html = (site / f"{root}.html").read_text(encoding="utf-8")
    if "tex-mml-chtml.js" not in html:  # Sphinx omits MathJax where the root page has no maths; add the site's copy
        html = html.replace("</head>", '<script defer src="mathjax/tex-mml-chtml.js"></script></head>', 1)
    (site / page_path).write_text(html, encoding="utf-8")
    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("Chromium not found: install it with `make browser`")
    with serve(site) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(f"{base}/{page_path}", wait_until="networkidle")
        settle(page)
        unrendered = page.evaluate("() => Array.from(document.querySelectorAll('.math')).filter(m => !m.querySelector('mjx-container')).length")
        if unrendered:
            raise RuntimeError(f"{unrendered} formulas were not typeset; the PDF would show raw LaTeX")
        broken = page.evaluate("() => Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
        if broken:
            raise RuntimeError(f"{broken} images did not load; the PDF would miss figures")
        tmp = out.with_suffix(".pdf.tmp")
        page.pdf(path=str(tmp), format="A4", print_background=True, margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"})
        browser.close()
    tmp.replace(out)
    return out


if __name__ == "__main__":
    print(build_pdf())
