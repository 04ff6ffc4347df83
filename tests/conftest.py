"""Test configuration: one torch thread (fast on small problems), no Agg backend leaking into kernels."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("MPLBACKEND", None)
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the build pipeline lives at the repository root
    sys.path.insert(0, str(ROOT))

from pipeline import execute as ex  # noqa: E402
from pipeline import stage as st  # noqa: E402

QUICK = ex.base_parameters("quick", 0, "auto")


@pytest.fixture(scope="session")
def build_paths(tmp_path_factory) -> ex.BuildPaths:
    return ex.BuildPaths(tmp_path_factory.mktemp("book-build"))


@pytest.fixture(scope="session")
def built_site(build_paths: ex.BuildPaths) -> Path:
    """Execute (cached from the chapter tests), stage and build the book strictly; returns the HTML folder."""
    ex.execute_book(ex.chapters(), QUICK, build_paths)
    src = st.stage(build_paths)
    out = build_paths.root / "jb"
    jb = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jb), "build", str(src), "--path-output", str(out), "--warningiserror", "--nitpick", "--keep-going"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out / "_build" / "html"


def pytest_terminal_summary(terminalreporter):
    """After the run, show how long each chapter took to execute in quick mode (regressions stay visible)."""
    rows = []
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        if report.when == "call" and ("test_chapter_executes_in_quick_mode" in report.nodeid
                                      or "test_chapter_claims_hold_at_further_seeds" in report.nodeid):
            rows.append((report.nodeid.split("[")[-1].rstrip("]"), report.outcome, report.duration))
    if rows:
        from pipeline.execute import timing_table

        terminalreporter.write_sep("-", "chapter execution times (quick mode; [stem] at seed 0, [stem-s] at seed s)")
        terminalreporter.write_line(timing_table(sorted(rows)))
