"""Test configuration: one torch thread (fast on small problems), no Agg backend leaking into kernels, and the
book's executions shared by the tests.

Chapters are executed once per cache key, in the build itself: seed 0 in ``_build`` (what ``make book`` writes
in quick mode), seeds 1 and 2 in ``_build/seeds/<seed>``. The :func:`executed` fixture brings every (chapter,
seed) that the selected tests ask for up to date in one parallel run (:func:`pipeline.execute.run_jobs`: a local
Dask cluster of ``JOBS`` workers, or ``SCHEDULER``), skipping those whose key is unchanged: after ``make book``,
``make test`` executes seed 0 of no chapter again. The chapter tests then assert on the records it left.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.pop("MPLBACKEND", None)
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the build pipeline lives at the repository root
    sys.path.insert(0, str(ROOT))

from pipeline import execute as ex  # noqa: E402
from pipeline import stage as st  # noqa: E402

SEEDS = (0, 1, 2)
_OUTCOMES: list[ex.Outcome] = []  # every execution outcome of this session, for the timing table at the end


def seed_paths(seed: int) -> ex.BuildPaths:
    """Where the quick-mode execution at ``seed`` lives: ``_build`` for seed 0 (the book), else ``_build/seeds/<s>``."""
    return ex.BuildPaths() if seed == 0 else ex.BuildPaths(ex.BUILD / "seeds" / str(seed))


def _wanted(session: pytest.Session) -> list[tuple[str, int]]:
    """The (chapter, seed) executions the selected tests need: a chapter test its own, the built site all of seed 0."""
    stems = [c.stem for c in ex.chapters()]
    wanted = set()
    for item in session.items:
        names = getattr(item, "fixturenames", ())
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "executed" in names and "chapter" in params:
            wanted.add((params["chapter"].stem, params.get("seed", 0)))
        if "built_site" in names:
            wanted |= {(stem, 0) for stem in stems}
    return sorted(wanted, key=lambda pair: (pair[1], pair[0]))


def run_visibly(config: pytest.Config, work: list, **kwargs) -> list[ex.Outcome]:
    """:func:`pipeline.execute.run_jobs` with its progress lines shown live (not captured), outcomes remembered."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print()
        outcomes = ex.run_jobs(work, jobs=ex.default_jobs(), scheduler=ex.default_scheduler(), **kwargs)
    _OUTCOMES.extend(outcomes)
    return outcomes


@pytest.fixture(scope="session")
def executed(request) -> dict[tuple[str, int], ex.Outcome]:
    """Every (chapter, seed) the selected tests need, executed in parallel where its key changed (cached otherwise);
    maps (stem, seed) to its :class:`pipeline.execute.Outcome`. Failures are outcomes: each test reports its own."""
    chapters = {c.stem: c for c in ex.chapters()}
    work = [(ex.chapter_task(chapters[stem], ex.base_parameters("quick", seed, "auto")), seed_paths(seed))
            for stem, seed in _wanted(request.session)]
    outcomes = run_visibly(request.config, work, timings=ex.BUILD)
    return {(o.stem, o.seed): o for o in outcomes}


@pytest.fixture(scope="session")
def build_paths() -> ex.BuildPaths:
    return seed_paths(0)


@pytest.fixture(scope="session")
def built_site(executed, build_paths: ex.BuildPaths) -> Path:
    """Stage the executed book (seed 0) and build it strictly from scratch; returns the HTML folder."""
    failed = [o.error for (stem, seed), o in executed.items() if seed == 0 and not o.ok]
    assert not failed, "the book cannot be built; failed chapters:\n" + "\n\n".join(failed)
    src = st.stage(build_paths)
    out = build_paths.root / "jb"
    shutil.rmtree(out / "_build", ignore_errors=True)  # a fresh build: an incremental one would not repeat warnings
    jb = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jb), "build", str(src), "--path-output", str(out), "--warningiserror", "--nitpick", "--keep-going"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out / "_build" / "html"


TOY = textwrap.dedent(
    '''\
    ---
    jupytext:
      text_representation:
        extension: .md
        format_name: myst
    kernelspec:
      display_name: Python 3
      language: python
      name: python3
    ---

    # A toy chapter

    ```{{code-cell}} ipython3
    :tags: [parameters]

    quick = True
    seed = 0
    device = "auto"
    ```

    ```{{code-cell}} ipython3
    {body}
    ```
    '''
)

def _toy_claims(stem: str, measured: float = 72.0, seeded: bool = False) -> str:
    """The body of a toy chapter: one result claim ("toy-width", expected 73.2, rtol 0.1: ``measured`` 72 passes, 90
    fails), and with ``seeded`` first a measurement computed from the ``seed`` parameter (a record that depends on
    the parameters and on torch)."""
    head = ""
    if seeded:
        head = ("import torch\n"
                "g = torch.Generator().manual_seed(seed)\n"
                "w = torch.randn(64, 64, generator=g, dtype=torch.float64)\n")
    body = (f"from how_cnns_learn import claims as claims_api\nclaims = claims_api.ClaimSet({stem!r})\n")
    if seeded:
        body += ('claims.measure("toy-norm", "A seeded matrix\'s largest singular value.", '
                 "float(torch.linalg.matrix_norm(w, 2)))\n")
    body += (f'claims.check_close("toy-width", "The toy width is 73.2 steps.", measured={measured!r}, expected=73.2, '
             'rtol=0.1,\n                   theory="tau ln 9 / s", alternative=("tau ln 3 / s", 33.3), '
             'tolerance_from="stated for the test")\nclaims.finalize()')
    return head + body


@pytest.fixture
def toy_claims():
    """``toy_claims(stem, measured=72.0, seeded=False)``: a toy chapter body with one result claim (see ``_toy_claims``)."""
    return _toy_claims


@pytest.fixture
def toy_chapter(tmp_path):
    """``toy_chapter(stem, body)``: a one-cell chapter (parameters quick, seed, device) in a private book folder."""
    book = tmp_path / "book"
    book.mkdir()

    def make(stem: str, body: str) -> Path:
        path = book / f"{stem}.md"
        path.write_text(TOY.format(body=body))
        return path

    return make


def pytest_terminal_summary(terminalreporter):
    """After the run, the table of this session's chapter executions (regressions stay visible; also written to
    ``_build/timings.md``): chapter, pass, mode, executed or cached, seconds, worker."""
    if _OUTCOMES:
        terminalreporter.write_sep("-", "chapter executions (cached ones show their last measured time)")
        terminalreporter.write_line(ex.timing_table(_OUTCOMES))


def pytest_configure(config):
    config.addinivalue_line("markers", "distributed: starts a local Dask cluster (tests/test_distributed.py)")
