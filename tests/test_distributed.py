"""Chapters on Dask distributed (pipeline.execute.run_jobs), on a local cluster of two worker processes:

- parallel = serial: the claim records are byte-identical whether chapters run in this process one after the
  other or as tasks on two workers;
- a worker killed in the middle of a chapter: Dask runs the task again (its own mechanism: the scheduler
  reschedules the tasks of a dead worker), and the build completes with nothing half-written;
- a chapter that fails reports the same claim failure as serially, and leaves nothing in the book.

Two toy chapters (a one-cell chapter in a private book folder) and the fastest real chapter keep this near a minute.
"""

import json
import logging
from pathlib import Path

import pytest

from pipeline import execute as ex

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

PARAMS = {"quick": True, "seed": 0, "device": "cpu"}
REAL = "convolution_is_diagonal_in_fourier_space"  # the fastest real chapter (about 5 s)

KILLS_ITS_WORKER_ONCE = """import os, pathlib, signal, time
attempts = pathlib.Path({marker!r})
first = not attempts.exists()
with attempts.open("a") as f:
    f.write(f"{{os.getppid()}}\\n")  # the process that started this kernel: the Dask worker
if first:
    os.kill(os.getppid(), signal.SIGKILL)  # the worker dies in the middle of the chapter
    time.sleep(30)  # (this kernel exits when it notices its parent is gone)
"""


@pytest.fixture(scope="module")
def scheduler():
    """A local Dask cluster: two worker processes, one thread each; yields the scheduler's address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=0, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_parallel_records_equal_serial_records(scheduler, toy_chapter, toy_claims, tmp_path):
    chapters = [toy_chapter("toy_one", toy_claims("toy_one", seeded=True)),
                toy_chapter("toy_two", toy_claims("toy_two", seeded=True)), ex.find_chapter(REAL)]
    serial, parallel = ex.BuildPaths(tmp_path / "serial"), ex.BuildPaths(tmp_path / "parallel")
    ran_serially = ex.execute_book(chapters, PARAMS, serial, jobs=1, echo=False)
    ran_on_dask = ex.execute_book(chapters, PARAMS, parallel, scheduler=scheduler, echo=False)
    assert {o.worker for o in ran_serially} == {"main"}
    assert all(o.worker.startswith("dask-") and o.status == "executed" for o in ran_on_dask)
    assert _files(serial.claims) == _files(parallel.claims), "claim records differ"
    assert len(_files(parallel.claims)) == 3 and not parallel.failed.exists()
    rows = json.loads((parallel.root / "timings.json").read_text())["rows"]
    assert {r["chapter"] for r in rows} == {c.stem for c in chapters} and all(r["seconds"] > 0 for r in rows)


def test_a_worker_killed_in_the_middle_of_a_chapter_is_retried_and_nothing_is_half_written(
        scheduler, toy_chapter, toy_claims, tmp_path):
    attempts = tmp_path / "attempts"
    chapters = [toy_chapter("toy_killed", KILLS_ITS_WORKER_ONCE.format(marker=str(attempts)) + toy_claims("toy_killed", seeded=True)),
                toy_chapter("toy_other", toy_claims("toy_other", seeded=True))]
    paths = ex.BuildPaths(tmp_path / "build")
    outcomes = ex.execute_book(chapters, PARAMS, paths, scheduler=scheduler, echo=False)
    workers = attempts.read_text().split()
    assert len(workers) == 2 and workers[0] != workers[1], "one attempt killed its worker, a second one completed"
    assert [o.status for o in outcomes] == ["executed", "executed"]
    for chapter in chapters:
        record = json.loads((paths.claims / f"{chapter.stem}.json").read_text())
        assert record["complete"] and record["n_failed"] == 0
        assert (paths.notebooks / f"{chapter.stem}.ipynb").exists()
        assert (paths.keys / f"{chapter.stem}.key").read_text() == ex.cache_key(chapter, PARAMS)
    leftovers = [p for p in paths.root.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == [] and not paths.failed.exists()
    serial = ex.BuildPaths(tmp_path / "serial")
    ex.execute_book(chapters[1:], PARAMS, serial, jobs=1, echo=False)
    assert (serial.claims / "toy_other.json").read_bytes() == (paths.claims / "toy_other.json").read_bytes()


def test_a_failing_chapter_reports_the_same_claim_failure_as_serially(scheduler, toy_chapter, toy_claims, tmp_path):
    bad = toy_chapter("toy_bad", toy_claims("toy_bad", 90.0, seeded=True))
    good = toy_chapter("toy_good", toy_claims("toy_good", seeded=True))
    serial, parallel = ex.BuildPaths(tmp_path / "serial"), ex.BuildPaths(tmp_path / "parallel")
    with pytest.raises(ex.ChapterFailed) as serially:
        ex.execute_book([bad], PARAMS, serial, jobs=1, echo=False)
    with pytest.raises(ex.ChapterFailed) as on_dask:
        ex.execute_book([bad, good], PARAMS, parallel, scheduler=scheduler, echo=False)
    assert str(on_dask.value) == str(serially.value)
    assert "toy-width" in str(on_dask.value) and "measured 90" in str(on_dask.value)
    for paths in (serial, parallel):
        assert not (paths.notebooks / "toy_bad.ipynb").exists() and not (paths.claims / "toy_bad.json").exists()
        assert not (paths.keys / "toy_bad.key").exists() and (paths.failed / "toy_bad.ipynb").exists()
    assert (parallel.keys / "toy_good.key").exists(), "the other chapters still complete"
