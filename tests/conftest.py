"""Test configuration: one torch thread (fast on small problems), no Agg backend leaking into kernels."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("MPLBACKEND", None)
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the build pipeline lives at the repository root
    sys.path.insert(0, str(ROOT))


def pytest_terminal_summary(terminalreporter):
    """After the run, show how long each chapter took to execute in quick mode (regressions stay visible)."""
    rows = []
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        if report.when == "call" and "test_chapter_executes_in_quick_mode" in report.nodeid:
            rows.append((report.nodeid.split("[")[-1].rstrip("]"), report.outcome, report.duration))
    if rows:
        from pipeline.execute import timing_table

        terminalreporter.write_sep("-", "chapter execution times (quick mode)")
        terminalreporter.write_line(timing_table(sorted(rows)))
