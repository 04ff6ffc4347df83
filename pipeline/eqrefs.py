"""Number the equation references in claim badges and tables of the built HTML.

A claim's theory text cites an equation by its MyST label, ``"eq. (eq-cost)"``; the claims library renders it
as ``<a class="claim-eqref" href="#equation-eq-cost">eq-cost</a>`` (a notebook output cannot use MyST's
``{eq}`` role). After Sphinx has numbered the equations, this step replaces each such label by the equation's
number, ``eq. (19)``, and points the link at the page that defines it. A label that no page defines is an
error naming the page and the label, so a claim cannot cite an equation that is not in the book.

``python -m pipeline.eqrefs HTML_DIR`` rewrites the site in place (idempotent: a numbered link is left alone).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from how_cnns_learn.claims import EQREF_CLASS

from .execute import ChapterFailed

# Sphinx: <div class="math notranslate nohighlight" id="equation-eq-cost">\n<span class="eqno">(19)<a ...
_DEFINITION = re.compile(r'id="equation-([A-Za-z0-9_-]+)">\s*<span class="eqno">\(([0-9.]+)\)')
_REFERENCE = re.compile(rf'<a class="{EQREF_CLASS}" href="#equation-([A-Za-z0-9_-]+)">\1</a>')


def equation_numbers(pages: dict[Path, str]) -> dict[str, tuple[Path, str]]:
    """Every numbered equation of the site: label → (page, number as shown), from ``{page: html text}``."""
    return {label: (page, number) for page, text in pages.items() for label, number in _DEFINITION.findall(text)}


def number_references(html_dir: Path) -> int:
    """Rewrite every claim equation reference of the site; returns how many were rewritten.

    Raises :class:`~pipeline.execute.ChapterFailed` listing every reference to an unknown label.
    """
    site = {page.relative_to(html_dir): page.read_text(encoding="utf-8") for page in sorted(html_dir.rglob("*.html"))}
    numbers = equation_numbers(site)
    rewritten, unknown, pages = 0, [], {}
    for rel_page, text in site.items():

        def link(match: re.Match[str]) -> str:
            nonlocal rewritten
            label = match[1]
            if label not in numbers:
                unknown.append(f"{rel_page}: {label}")
                return match[0]
            target, number = numbers[label]
            href = "" if target == rel_page else Path(os.path.relpath(target, rel_page.parent)).as_posix()
            rewritten += 1
            return f'<a class="{EQREF_CLASS}" href="{href}#equation-{label}">{number}</a>'

        new = _REFERENCE.sub(link, text)
        if new != text:
            pages[html_dir / rel_page] = new
    if unknown:  # nothing is written: the site is either fully numbered or left as Sphinx built it
        raise ChapterFailed("claims cite equations that no page defines (label a displayed equation "
                            "with $$ ... $$ (label)):\n  " + "\n  ".join(unknown))
    for page, new in pages.items():
        page.write_text(new, encoding="utf-8")
    return rewritten


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    html_dir = Path(args[0] if args else "_build/html")
    try:
        count = number_references(html_dir)
    except ChapterFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"equation references in claims: {count} numbered")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
