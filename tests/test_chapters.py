"""Every chapter executed in quick mode at seeds 0, 1 and 2 (all its claims must pass), the whole book built strictly,
and every rendered page checked in a real browser.

The executions are shared (the ``executed`` fixture, tests/conftest.py): each (chapter, seed) runs once per cache
key, all of them in parallel, into the build itself (seed 0 in ``_build``, as ``make book`` leaves it; seeds 1 and
2 in ``_build/seeds/<seed>``); a chapter whose key is unchanged since ``make book`` is not executed again. These
tests assert on the records the executions left. (Determinism, a second execution with bit-identical claim
records, is tests/test_published_notebooks.py: every published notebook run again in a clean reader environment.)
"""

import json
from pathlib import Path

import pytest
from conftest import seed_paths

from pipeline import execute as ex
from pipeline import site_check

CHAPTERS = ex.chapters()


def _record(executed: dict, chapter: Path, seed: int) -> dict:
    outcome = executed[(chapter.stem, seed)]
    assert outcome.ok, outcome.error  # the chapter's own message: broken claims with measured values and tolerances
    return json.loads((seed_paths(seed).claims / f"{chapter.stem}.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_executes_in_quick_mode_with_all_claims_passing(chapter: Path, executed):
    record = _record(executed, chapter, 0)
    assert record["n_claims"] > 0 and record["n_failed"] == 0
    assert record["chapter"] == chapter.stem, "ClaimSet must be named after the chapter file"
    assert record["parameters"]["seed"] == 0 and record["parameters"]["quick"] is True


FURTHER_SEEDS = (1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("seed", FURTHER_SEEDS)
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_claims_hold_at_further_seeds(chapter: Path, seed: int, executed):
    """A claim is a statement about the theory, not about seed 0: every chapter passes at seeds 1 and 2 as well."""
    record = _record(executed, chapter, seed)
    assert record["parameters"]["seed"] == seed and record["n_failed"] == 0


@pytest.mark.slow
def test_the_book_builds_strictly(built_site: Path):
    for chapter in CHAPTERS:
        page = (built_site / "book" / f"{chapter.stem}.html").read_text()
        assert "claim-badge" in page and "✗ FAIL" not in page
        assert "{eq}" not in page, f"{chapter.stem}: an equation role was not rendered (claims are MyST in the book)"
        assert (built_site / "notebooks" / f"{chapter.stem}.ipynb").exists()
        assert (built_site / "sources" / f"{chapter.stem}.md").exists()
    status = (built_site / "book" / "reproduction_status.html").read_text()
    assert "claims pass" in status and "✗ FAIL" not in status
    assert "100 % of the results" in status, "every result claim states its rival and rejects it"
    assert (built_site / "mathjax" / "tex-mml-chtml.js").exists()
    assert "cdn.jsdelivr.net/npm/mathjax" not in (built_site / "book" / "intro.html").read_text()


@pytest.mark.slow
def test_every_page_renders_in_a_real_browser(built_site: Path):
    """Images load, links resolve, maths is typeset by the site's own MathJax (no request leaves localhost),
    no cell shows an error, every chapter's claims table passes. Screenshots go to _build/screenshots."""
    if site_check.chromium_path() is None:
        pytest.skip("Chromium is not installed and `make browser` could not install it (needs root and apt-get)")
    problems = site_check.check_site(built_site, [c.stem for c in CHAPTERS], ex.BUILD / "screenshots")
    assert problems == [], "\n".join(problems)
