"""The execution pipeline: cache keys, parameter checks, and chapters that must fail loudly."""

import json
import os
import re
from pathlib import Path

import pytest

from pipeline import execute as ex



PARAMS = {"quick": True, "seed": 0, "device": "cpu"}


def test_cache_key_sees_chapter_lib_parameters_and_spec(toy_chapter, tmp_path):
    lib = tmp_path / "lib"
    (lib / "pkg").mkdir(parents=True)
    (lib / "pkg" / "mod.py").write_text("x = 1\n")
    spec = tmp_path / "environment.yml"
    spec.write_text("dependencies: []\n")
    chapter = toy_chapter("toy", "pass")
    key = ex.cache_key(chapter, PARAMS, lib, spec)
    assert ex.cache_key(chapter, PARAMS, lib, spec) == key  # nothing changed: same key
    (lib / "pkg" / "mod.py").write_text("x = 2\n")
    key_lib = ex.cache_key(chapter, PARAMS, lib, spec)
    assert key_lib != key
    (lib / "pkg" / "data.json").write_text("{}")  # any lib file counts, not only .py
    key_new_file = ex.cache_key(chapter, PARAMS, lib, spec)
    assert key_new_file != key_lib
    assert ex.cache_key(chapter, {**PARAMS, "quick": False}, lib, spec) != key_new_file
    spec.write_text("dependencies: [numpy]\n")
    assert ex.cache_key(chapter, PARAMS, lib, spec) != key_new_file
    chapter.write_text(chapter.read_text() + "\nmore prose\n")
    assert ex.cache_key(chapter, PARAMS, lib, spec) != ex.cache_key(toy_chapter("t2", "pass"), PARAMS, lib, spec)


def test_a_passing_chapter_runs_once_then_is_cached(toy_chapter, toy_claims, tmp_path, capfd):
    paths = ex.BuildPaths(tmp_path / "build")
    chapter = toy_chapter("toy_ok", toy_claims("toy_ok", 72.0))
    assert ex.execute_chapter(chapter, PARAMS, paths) is True
    if os.name == "posix":  # the kernel talks over IPC sockets, so it has no unencrypted-TCP warning to print
        assert "running over TCP" not in capfd.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book", "build"], "no socket files left behind"
    assert sorted(p.name for p in chapter.parent.iterdir()) == ["toy_ok.md"], "no socket files left behind"
    assert (paths.notebooks / "toy_ok.ipynb").exists()
    assert json.loads((paths.claims / "toy_ok.json").read_text())["n_failed"] == 0
    assert ex.execute_chapter(chapter, PARAMS, paths) is False  # unchanged key: skipped
    assert ex.execute_chapter(chapter, {**PARAMS, "seed": 1}, paths) is True  # new parameters: re-run


def test_the_kernel_does_not_inherit_a_dask_workers_allocator_settings(toy_chapter, toy_claims, tmp_path, monkeypatch):
    """A Dask nanny exports MALLOC_TRIM_THRESHOLD_=65536 to its worker; a chapter kernel started there must not keep
    it (it made torch-heavy chapters 3x slower), and the worker's own environment is restored afterwards."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    seen = ('import os\nclaims_seen = os.environ.get("MALLOC_TRIM_THRESHOLD_")\n'
            'assert claims_seen is None, f"kernel inherited MALLOC_TRIM_THRESHOLD_={claims_seen}"\n')
    chapter = toy_chapter("toy_env", seen + toy_claims("toy_env", 72.0))
    assert ex.execute_chapter(chapter, PARAMS, ex.BuildPaths(tmp_path / "build")) is True
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"


def test_a_wrong_claim_fails_the_chapter_with_a_readable_message_and_leaves_nothing(toy_chapter, toy_claims, tmp_path):
    paths = ex.BuildPaths(tmp_path / "build")
    chapter = toy_chapter("toy_bad", toy_claims("toy_bad", 90.0))
    with pytest.raises(ex.ChapterFailed) as err:
        ex.execute_chapter(chapter, PARAMS, paths)
    message = str(err.value)
    assert "toy_bad" in message and "ClaimFailure" in message
    assert "toy-width" in message and "measured 90" in message and "rtol 0.1" in message
    assert not (paths.notebooks / "toy_bad.ipynb").exists()
    assert not (paths.claims / "toy_bad.json").exists()
    assert not (paths.keys / "toy_bad.key").exists()
    assert (paths.failed / "toy_bad.ipynb").exists(), "the notebook up to the failure is kept for inspection"


def test_claims_broken_before_a_crash_are_still_reported(toy_chapter, toy_claims, tmp_path):
    body = toy_claims("toy_crash", 90.0).replace("claims.finalize()", "raise RuntimeError('later bug')")
    chapter = toy_chapter("toy_crash", body)
    with pytest.raises(ex.ChapterFailed) as err:
        ex.execute_chapter(chapter, PARAMS, ex.BuildPaths(tmp_path / "build"))
    message = str(err.value)
    assert "later bug" in message and "[FAIL] toy-width: measured 90" in message and "rtol 0.1" in message


def test_a_chapter_that_never_finalizes_its_claims_fails(toy_chapter, tmp_path):
    chapter = toy_chapter("toy_silent", "x = 1")
    with pytest.raises(ex.ChapterFailed, match="did not finalize its claims"):
        ex.execute_chapter(chapter, PARAMS, ex.BuildPaths(tmp_path / "build"))


def test_unknown_parameters_are_an_error(toy_chapter, tmp_path):
    chapter = toy_chapter("toy_params", "x = 1")
    with pytest.raises(ex.ChapterFailed, match=r"unknown parameter\(s\) \['n_steps'\]"):
        ex.execute_chapter(chapter, {**PARAMS, "n_steps": 5}, ex.BuildPaths(tmp_path / "build"))


def test_a_cell_past_the_timeout_fails(toy_chapter, tmp_path):
    chapter = toy_chapter("toy_slow", "import time\ntime.sleep(30)")
    with pytest.raises(ex.ChapterFailed, match="toy_slow"):
        ex.execute_chapter(chapter, PARAMS, ex.BuildPaths(tmp_path / "build"), timeout=3)


def test_base_parameters_validate():
    assert ex.base_parameters("full", 2, "cpu") == {"quick": False, "seed": 2, "device": "cpu"}
    with pytest.raises(ValueError, match="mode"):
        ex.base_parameters("fast", 0, "cpu")
    with pytest.raises(ex.ChapterFailed, match="no chapter named"):
        ex.find_chapter("no_such_chapter")


def test_a_worker_whose_library_differs_refuses_the_task(toy_chapter, tmp_path):
    """On a remote cluster the driver sends its lib/ digest (the library the cache keys were made of)."""
    import dataclasses

    task = dataclasses.replace(ex.chapter_task(toy_chapter("toy_lib", "x = 1"), PARAMS), lib_digest="0" * 64)
    result = ex.run_chapter(task)
    assert not result.ok and "differs from the driver's" in result.error and result.record is None
    assert ex._remote("tcp://head:8786") and not ex._remote("tcp://127.0.0.1:8786") and not ex._remote(None)


def test_timing_table_lists_each_pass_longest_first(tmp_path):
    outcomes = [ex.Outcome("a", 0, "quick", "build", "executed", 3.0, "dask-0"),
                ex.Outcome("b", 1, "quick", "build", "cached", 9.0, "-"),
                ex.Outcome("a", None, "as-is", "colab-like", "executed", 4.0, "dask-1")]
    ex.write_timings(outcomes, tmp_path, wall=5.0, jobs=2, scheduler=None)
    table = (tmp_path / "timings.md").read_text()
    assert table.index("b ") < table.index("published (colab-like)") < table.index("seed 0")
    data = json.loads((tmp_path / "timings.json").read_text())
    assert data["jobs"] == 2 and [r["status"] for r in data["rows"]] == ["executed", "cached", "executed"]
    assert re.search(r"^executed\s+2\s+7\.0$", table, re.M), table  # two executed, 3 s + 4 s


def test_reference_timings_merge_executed_rows_and_order_a_fresh_build(tmp_path):
    quick, full = tmp_path / "quick", tmp_path / "full"
    ex.write_timings([ex.Outcome("a", 0, "quick", "build", "executed", 3.0, "dask-0"),
                      ex.Outcome("b", 0, "quick", "build", "cached", 9.0, "-")], quick, wall=3.0, jobs=2, scheduler=None)
    ex.write_timings([ex.Outcome("a", 0, "full", "build", "executed", 30.0, "dask-1")], full, wall=30.0, jobs=2,
                     scheduler=None)
    out = ex.write_reference_timings([quick / ex.TIMINGS, full / ex.TIMINGS], tmp_path / "reference.json")
    assert ex._history([out]) == {("a", "quick", "build"): 3.0, ("a", "full", "build"): 30.0}  # cached rows left out
    ex.write_timings([ex.Outcome("b", 0, "quick", "build", "cached", 9.0, "-")], tmp_path / "cached", wall=0.0,
                     jobs=2, scheduler=None)
    with pytest.raises(ValueError, match="no executed chapter"):
        ex.write_reference_timings([tmp_path / "cached" / ex.TIMINGS], tmp_path / "r.json")


def test_the_committed_reference_timings_cover_every_chapter_in_both_modes():
    """A fresh clone's first run orders its queue by this table (longest first); a chapter missing from it would
    start last even if it is the longest."""
    known = ex._history([ex.REFERENCE_TIMINGS])
    stems = {c.stem for c in ex.chapters()}
    for mode in ("quick", "full"):
        missing = stems - {stem for stem, m, env in known if m == mode and env == "build"}
        assert not missing, f"pipeline/reference_timings.json lacks {mode} mode of {sorted(missing)}: make reference-timings"
