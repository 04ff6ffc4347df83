"""Every chapter executed in quick mode (all its claims must pass), then the whole book built strictly."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import execute as ex
from pipeline import stage as st

CHAPTERS = ex.chapters()
QUICK = ex.base_parameters("quick", 0, "auto")


@pytest.fixture(scope="session")
def build_paths(tmp_path_factory) -> ex.BuildPaths:
    return ex.BuildPaths(tmp_path_factory.mktemp("book-build"))


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_executes_in_quick_mode_with_all_claims_passing(chapter: Path, build_paths: ex.BuildPaths):
    ex.execute_chapter(chapter, QUICK, build_paths)  # raises ChapterFailed with the broken claims
    record = json.loads((build_paths.claims / f"{chapter.stem}.json").read_text())
    assert record["n_claims"] > 0 and record["n_failed"] == 0
    assert record["chapter"] == chapter.stem, "ClaimSet must be named after the chapter file"


@pytest.mark.slow
def test_the_book_builds_strictly(build_paths: ex.BuildPaths):
    ex.execute_book(CHAPTERS, QUICK, build_paths)  # cached from the tests above
    src = st.stage(build_paths)
    out = build_paths.root / "jb"
    jb = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jb), "build", str(src), "--path-output", str(out), "--warningiserror", "--nitpick", "--keep-going"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = out / "_build" / "html"
    for chapter in CHAPTERS:
        page = (html / "book" / f"{chapter.stem}.html").read_text()
        assert "claim-badge" in page and "✗ FAIL" not in page
    status = (html / "book" / "reproduction_status.html").read_text()
    assert "claims pass" in status and "✗ FAIL" not in status
    assert (html / "mathjax" / "tex-mml-chtml.js").exists()
    assert "cdn.jsdelivr.net/npm/mathjax" not in (html / "book" / "intro.html").read_text()
