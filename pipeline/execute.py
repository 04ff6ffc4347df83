"""Execute jupytext chapters with papermill, in parallel on Dask, with a cache keyed on everything that determines
the output.

A chapter is a ``book/*.md`` file whose front matter names a ``kernelspec``. Executing one (:func:`run_chapter`,
one **task**) happens in a private temporary folder and writes nothing into the build:

1. the chapter, converted to a notebook (jupytext), has its requested parameters checked against its
   ``parameters``-tagged cell (an unknown name is an error);
2. papermill runs it (cwd ``book/``, a per-cell timeout, ``OMP_NUM_THREADS`` from the driver, default 1,
   ``HOW_CNNS_LEARN_CLAIMS_DIR`` pointing at the task's own claims folder; on POSIX the kernel talks over IPC
   sockets in the private folder rather than unencrypted TCP);
3. the chapter's claims record must be complete (``finalize`` ran) with no failed claim;
4. the task returns the executed notebook's bytes, the record's bytes and the cache key (a
   :class:`ChapterResult`), or the failure: its message names the broken claims, each on one line with its
   measured value, expected value and tolerance, also when the chapter crashed after breaking them.

The **driver** (:func:`run_jobs`) alone writes into the build (:func:`commit`): the old key is removed first, then
the notebook and the record are each written to a temporary name and renamed into place, and the key comes last,
so an interrupted build never leaves a key next to half-written files (nothing half-written: a chapter without
its key is simply executed again). A failed chapter leaves nothing in the book: its old notebook, record and key
are removed and the notebook executed up to the failure goes to ``<build>/failed/`` for inspection.

**Parallel execution.** Chapters whose key is unchanged are skipped (the cache). The rest are tasks on Dask
distributed: by default an in-process :class:`distributed.LocalCluster` of ``jobs`` worker processes (``JOBS``,
default the number of cores) with one thread each; ``scheduler="tcp://host:8786"`` (``SCHEDULER=``,
``--scheduler``) sends them to a running cluster instead, whose workers must run this checkout with its library
installed (``PYTHONPATH=<checkout> dask worker <address> --nthreads 1``; with a scheduler on another host, a
worker whose ``lib/`` differs from the driver's refuses the task). Largest chapters go first (the last measured durations in ``timings.json``): the
driver keeps as many tasks submitted as the cluster has threads and submits the next as one completes (Dask's
``as_completed`` pattern), so a free worker always takes the largest chapter left. A worker that dies in the middle of a chapter
is Dask's business: the scheduler runs the task again on another worker (up to
``distributed.scheduler.allowed-failures`` deaths), and an exception in the task machinery itself is retried
``RETRIES`` times by ``Client.submit(retries=...)``; a chapter failure is a result, never retried. One chapter,
or ``jobs=1`` without a scheduler, runs the same task in the calling process (no cluster to start). The claim
records are byte-identical either way (tests/test_distributed.py).

**Threads.** Each worker runs one chapter with one torch/OpenMP thread (``OMP_NUM_THREADS=1``, passed to the
kernel by the driver): the book's problems are small, and two chapters on two single-threaded workers finish
sooner than one chapter at a time with two threads (``bench/threads.py``; README, *Running locally*). The kernel
does not inherit the allocator setting a Dask nanny gives its worker (``KERNEL_UNSET``): it runs as in a serial run.

The cache key is the SHA-256 of the chapter source, every file of ``lib/``, the parameters and the
dependency spec ``environment.yml``: editing the library re-executes every chapter; editing nothing
re-executes none. Each run writes its per-chapter timing table (chapter, seed, mode, environment, status,
seconds, worker) to ``<build>/timings.md`` and ``timings.json``, and prints it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
LIB = ROOT / "lib"
SPEC = ROOT / "environment.yml"
BUILD = ROOT / "_build"
CLAIMS_ENV = "HOW_CNNS_LEARN_CLAIMS_DIR"
MODES = ("quick", "full")


class ChapterFailed(RuntimeError):
    """A chapter raised, timed out, or broke a claim. The message says which and why."""


@dataclass(frozen=True)
class BuildPaths:
    """Where a build writes: executed notebooks, claims records and cache keys."""

    root: Path = BUILD

    @property
    def notebooks(self) -> Path:
        return self.root / "src" / "book"

    @property
    def claims(self) -> Path:
        return self.root / "claims"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def failed(self) -> Path:
        """Executed notebooks of failed chapters, kept for inspection (not part of the book)."""
        return self.root / "failed"


def is_chapter(path: Path) -> bool:
    """True for a jupytext MyST notebook (front matter with a ``kernelspec``)."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return False
    front = text.split("---", 2)[1]
    return "kernelspec:" in front


def chapters(book: Path = BOOK) -> list[Path]:
    """All chapter sources of the book, sorted by name."""
    return sorted(p for p in book.glob("*.md") if is_chapter(p))


def find_chapter(name: str, book: Path = BOOK) -> Path:
    """The chapter whose file stem is ``name`` (with or without ``.md``); error listing the valid names."""
    stem = Path(name).stem
    found = [p for p in chapters(book) if p.stem == stem]
    if not found:
        valid = ", ".join(p.stem for p in chapters(book))
        raise ChapterFailed(f"no chapter named {name!r}; chapters are: {valid}")
    return found[0]


def base_parameters(mode: str, seed: int, device: str) -> dict[str, Any]:
    """The three parameters every chapter takes, validated."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return {"quick": mode == "quick", "seed": seed, "device": device}


def _lib_files(lib: Path = LIB) -> list[Path]:
    skip = {"__pycache__", ".pytest_cache", ".mypy_cache"}
    return sorted(
        p for p in lib.rglob("*") if p.is_file() and not skip & set(p.parts) and ".egg-info" not in str(p)
    )


def lib_digest(lib: Path = LIB) -> str:
    """SHA-256 over every file of ``lib/`` (path + bytes): the library part of the cache key."""
    digest = hashlib.sha256()
    for path in _lib_files(lib):
        digest.update(b"lib\0" + path.relative_to(lib).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cache_key(chapter: Path, parameters: Mapping[str, Any], lib: Path = LIB, spec: Path = SPEC) -> str:
    """SHA-256 over chapter source, every lib file (path + bytes), parameters and the dependency spec."""
    digest = hashlib.sha256()
    digest.update(b"chapter\0" + chapter.read_bytes())
    for path in _lib_files(lib):
        digest.update(b"lib\0" + path.relative_to(lib).as_posix().encode() + b"\0" + path.read_bytes())
    digest.update(b"params\0" + json.dumps(dict(parameters), sort_keys=True).encode())
    digest.update(b"spec\0" + spec.read_bytes())
    return digest.hexdigest()


def _kernel_manager_class(socket_dir: Path) -> type:
    """The kernel manager papermill starts a kernel with: on POSIX, IPC sockets inside ``socket_dir``.

    Over TCP without CurveZMQ keys every kernel warns that its traffic is unencrypted (one warning per
    chapter in the build log). Unix-domain sockets in the chapter's private temporary folder (mode 0700,
    removed with it, also after a crash) need no keys. Elsewhere (Windows) the default TCP manager is used.
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    if os.name != "posix":
        return AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"

        @default("ip")
        def _default_ip(self) -> str:  # IPC socket paths are "<ip>-<port>"
            return str(socket_dir / "kernel")

    return IPCKernelManager


RETRIES = 1
"""Retries of a task whose machinery raised (not a chapter failure, which is a result; not a worker death, which
the scheduler handles under ``distributed.scheduler.allowed-failures``)."""
TIMINGS = "timings.json"
# A timing table of a whole-book run on the reference machine (README, *Measured*), quick and full mode: only the
# order in which a fresh clone's first run starts the chapters depends on it. Refresh: `make reference-timings`.
REFERENCE_TIMINGS = Path(__file__).with_name("reference_timings.json")


def default_jobs() -> int:
    """Worker processes for a local run: ``$JOBS`` if set, else the cores this process may use."""
    value = os.environ.get("JOBS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"JOBS must be a positive integer, got {value!r}")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_scheduler() -> str | None:
    """The running Dask scheduler to use: ``$SCHEDULER`` if set and not empty, else None (a local cluster)."""
    return os.environ.get("SCHEDULER", "").strip() or None


@dataclass(frozen=True)
class ChapterTask:
    """One execution of one notebook: everything a worker needs, nothing of the build.

    ``notebook`` is the nbformat JSON to execute; ``parameters`` are injected by papermill (``None``: run the
    notebook as it is, e.g. a published one); ``env`` is set for the kernel; ``cwd`` is the kernel's working
    folder (an empty private folder when ``None`` or absent on the worker); ``key`` is the cache key;
    ``label`` names the pass in the timing table ("seed 1", ...); ``environment`` is "build" or the reader
    environment's name.
    """

    stem: str
    notebook: str
    key: str
    parameters: Mapping[str, Any] | None = None
    kernel: str = "python3"
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    timeout: int = 1200
    environment: str = "build"
    lib_digest: str = ""  # set for a remote cluster: the worker checks that its lib/ is the driver's

    @property
    def seed(self) -> int | None:
        return None if self.parameters is None else self.parameters.get("seed")

    @property
    def mode(self) -> str:
        if self.parameters is None:
            return "as-is"
        return "quick" if self.parameters.get("quick") else "full"


@dataclass(frozen=True)
class ChapterResult:
    """What a task returns: the executed notebook and claims record (bytes, as written), or the failure."""

    stem: str
    key: str
    ok: bool
    notebook: bytes
    record: bytes | None
    error: str
    seconds: float
    worker: str


def chapter_task(chapter: Path, parameters: Mapping[str, Any], *, timeout: int = 1200) -> ChapterTask:
    """The task executing ``chapter`` (a jupytext ``.md``) with ``parameters`` in the build environment."""
    import jupytext

    return ChapterTask(
        stem=chapter.stem,
        notebook=jupytext.writes(jupytext.read(chapter), fmt="ipynb"),
        key=cache_key(chapter, parameters),
        parameters=dict(parameters),
        env=(("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1")),),
        cwd=str(chapter.parent),
        timeout=timeout,
    )


def _check_parameters(notebook_path: Path, parameters: Mapping[str, Any], stem: str) -> None:
    import papermill

    declared = papermill.inspect_notebook(str(notebook_path))
    if not declared:
        raise ChapterFailed(f"{stem}.md: no cell tagged 'parameters'; every chapter needs one")
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ChapterFailed(f"{stem}.md: unknown parameter(s) {unknown}; the chapter declares {sorted(declared)}")


def _broken_claims(record: Path) -> str:
    """The claims that had already failed when the chapter stopped (from the incremental record)."""
    if not record.exists():
        return ""
    claims = json.loads(record.read_text()).get("claims", [])
    lines = [c for c in claims if not c["passed"]]
    if not lines:
        return ""
    from how_cnns_learn.claims import Claim  # the one formatter of a claim's line

    return "\nclaims broken before it stopped:\n" + "\n".join("  " + Claim.from_record(c).summary() for c in lines)


def _failure_message(stem: str, err: Exception) -> str:
    evalue = getattr(err, "evalue", None)
    ename = getattr(err, "ename", type(err).__name__)
    detail = evalue if evalue else str(err)
    return f"chapter {stem} failed: {ename}: {detail}"


def _worker_name() -> str:
    """``dask-<name>`` inside a Dask worker, ``main`` in the calling process."""
    if "distributed" in sys.modules:
        try:
            from distributed import get_worker

            return f"dask-{get_worker().name}"
        except ValueError:  # not inside a worker
            pass
    return "main"


# Variables a Dask nanny sets for its worker process (``distributed.nanny.pre-spawn-environ``) that must not reach the
# chapter's kernel: with ``MALLOC_TRIM_THRESHOLD_=65536`` glibc hands freed memory back to the system at once, and
# torch's many short-lived tensors then cost a page fault per reuse (measured: the cue-conflict chapter took 152 s
# instead of 46 s alone, 95 s of it in the kernel's system time).
KERNEL_UNSET = ("MALLOC_TRIM_THRESHOLD_",)


def run_chapter(task: ChapterTask) -> ChapterResult:
    """Execute one task in a private temporary folder; returns the result, a failure included (never raises for a
    chapter's own failure). Touches no build folder: what comes back is written by the driver (:func:`commit`)."""
    import papermill

    start = time.perf_counter()
    names = {CLAIMS_ENV, "MPLBACKEND", *KERNEL_UNSET, *(name for name, _ in task.env)}
    saved = {name: os.environ.get(name) for name in names}
    with tempfile.TemporaryDirectory(prefix=f"{task.stem}-") as tmp_name:
        tmp = Path(tmp_name)
        source_nb, executed_nb = tmp / f"{task.stem}.in.ipynb", tmp / f"{task.stem}.ipynb"
        record = tmp / "claims" / f"{task.stem}.json"
        source_nb.write_text(task.notebook, encoding="utf-8")
        cwd = Path(task.cwd) if task.cwd and Path(task.cwd).is_dir() else tmp / "work"
        cwd.mkdir(exist_ok=True)
        error = ""
        if task.lib_digest and task.lib_digest != lib_digest():
            error = (f"chapter {task.stem} not executed on {_worker_name()}: its checkout's lib/ ({LIB}) differs from "
                     "the driver's; run the cluster's workers from the same commit")
        try:
            if error:
                raise ChapterFailed(error)
            os.environ.pop("MPLBACKEND", None)  # with Agg exported, kernels produce no figure output
            for name in KERNEL_UNSET:  # the kernel gets the machine's default allocator, as in a serial run
                os.environ.pop(name, None)
            os.environ.update({CLAIMS_ENV: str(record.parent), **dict(task.env)})
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            if task.parameters is not None:
                _check_parameters(source_nb, task.parameters, task.stem)
            papermill.execute_notebook(
                str(source_nb),
                str(executed_nb),
                parameters=None if task.parameters is None else dict(task.parameters),
                cwd=str(cwd),
                kernel_name=task.kernel,
                execution_timeout=task.timeout,
                progress_bar=False,
                log_output=False,
                kernel_manager_class=_kernel_manager_class(tmp),
                # Every output and the claim record are in by the last cell's reply; a graceful shutdown only
                # waits about 1 s per chapter for the interpreter to tear torch down (measured: last cell to
                # papermill's end 1.12 s graceful, 0.12 s immediate).
                shutdown_kernel="immediate",
            )
        except ChapterFailed as err:
            error = str(err)
        except Exception as err:  # PapermillExecutionError; timeouts and kernel deaths come as other types
            error = _failure_message(task.stem, err)
            if "ClaimFailure" not in error:  # a ClaimFailure already lists its broken claims
                error += _broken_claims(record)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        if not error:
            summary = json.loads(record.read_text()) if record.exists() else None
            if summary is None or not summary.get("complete"):
                error = f"chapter {task.stem} did not finalize its claims: it must end with claims.finalize()"
            elif summary.get("n_failed", 1) != 0 or summary.get("n_claims", 0) == 0:
                error = f"chapter {task.stem} has failed or missing claims: {summary}"
        notebook = executed_nb.read_bytes() if executed_nb.exists() else b""
        record_bytes = record.read_bytes() if record.exists() and not error else None
    return ChapterResult(task.stem, task.key, not error, notebook, record_bytes, error,
                         time.perf_counter() - start, _worker_name())


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, then rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _outputs(stem: str, paths: BuildPaths) -> tuple[Path, Path, Path]:
    return paths.notebooks / f"{stem}.ipynb", paths.claims / f"{stem}.json", paths.keys / f"{stem}.key"


def is_cached(task: ChapterTask, paths: BuildPaths) -> bool:
    """True when the build holds this task's notebook and record under an unchanged key."""
    out, record, key_file = _outputs(task.stem, paths)
    return out.exists() and record.exists() and key_file.exists() and key_file.read_text() == task.key


def commit(result: ChapterResult, paths: BuildPaths) -> None:
    """Write a task's result into the build (the driver only). The key is removed first and written last; every file
    is renamed into place whole. A failure removes the chapter's old outputs and keeps its notebook in ``failed/``."""
    out, record, key_file = _outputs(result.stem, paths)
    key_file.unlink(missing_ok=True)
    if not result.ok:
        out.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        if result.notebook:
            _write_atomic(paths.failed / f"{result.stem}.ipynb", result.notebook)
        return
    (paths.failed / f"{result.stem}.ipynb").unlink(missing_ok=True)
    _write_atomic(out, result.notebook)
    _write_atomic(record, result.record or b"")
    _write_atomic(key_file, result.key.encode())


@dataclass
class Outcome:
    """One line of the timing table: a task, where it went, and what happened."""

    stem: str
    seed: int | None
    mode: str
    environment: str
    status: str  # "executed", "cached" or "failed"
    seconds: float  # this run's execution; for a cached chapter, its last measured execution (0 if unknown)
    worker: str
    error: str = ""
    root: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def _history(tables: Iterable[Path]) -> dict[tuple[str, str, str], float]:
    """Last measured execution seconds per (chapter, mode, environment), from earlier timing tables (the first
    table that has a row wins)."""
    known: dict[tuple[str, str, str], float] = {}
    for table in tables:
        try:
            rows = json.loads(table.read_text())["rows"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for row in rows:
            if row.get("seconds"):
                known.setdefault((row["chapter"], row["mode"], row["environment"]), float(row["seconds"]))
    return known


def _last_seconds(history: Mapping, task: ChapterTask) -> float | None:
    """The task's last measured duration; else the same chapter's in another pass (only the order depends on it)."""
    exact = history.get((task.stem, task.mode, task.environment))
    if exact is not None:
        return exact
    return max((v for (stem, *_), v in history.items() if stem == task.stem), default=None)


def _dask_client(jobs: int, scheduler: str | None) -> tuple[Any, Any]:
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, memory_limit=0,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _remote(scheduler: str | None) -> bool:
    """A scheduler on another machine (its workers have their own checkout); local ones share this one."""
    if not scheduler:
        return False
    host = re.sub(r"^\w+://", "", scheduler).rsplit(":", 1)[0].strip("[]")
    return host not in {"127.0.0.1", "localhost", "::1", "0.0.0.0"} and not scheduler.startswith("inproc://")


def run_jobs(
    work: Iterable[tuple[ChapterTask, BuildPaths]],
    *,
    force: bool = False,
    jobs: int | None = None,
    scheduler: str | None = None,
    timings: Path | None = None,
    echo: bool = True,
) -> list[Outcome]:
    """Bring every (task, build) up to date: skip those cached, execute the rest (on Dask unless one task, or
    ``jobs=1`` with no scheduler), commit each result as it arrives. Never stops at a failure: every failed task
    is an :class:`Outcome` with its message. Writes the timing table to ``timings`` (default: the first build's
    root) as ``timings.md`` and ``timings.json`` and prints it (``echo``); returns the outcomes in the order given."""
    work = list(work)
    jobs = default_jobs() if jobs is None else jobs
    timings = timings if timings is not None else (work[0][1].root if work else BUILD)
    history = _history([timings / TIMINGS, BUILD / TIMINGS])
    # The queue's order also knows the committed reference run, so that a fresh clone's first run starts the
    # longest chapters first; the reported seconds of cached chapters come from this build's own tables only.
    order = {**_history([REFERENCE_TIMINGS]), **history}
    outcomes: dict[int, Outcome] = {}
    pending = []
    for i, (task, paths) in enumerate(work):
        if not force and is_cached(task, paths):
            outcomes[i] = Outcome(task.stem, task.seed, task.mode, task.environment, "cached",
                                  _last_seconds(history, task) or 0.0, "-", root=str(paths.root))
            if echo:
                print(f"{task.stem:45s} {_pass_label(outcomes[i]):22s} cached", flush=True)
        else:
            pending.append(i)
    # Largest first: a long chapter started last would run alone at the end while the other workers idle.
    pending.sort(key=lambda i: -(_last_seconds(order, work[i][0]) or float("inf")))
    start = time.perf_counter()

    def record(i: int, result: ChapterResult | None, error: str = "") -> None:
        task, paths = work[i]
        if result is not None:
            commit(result, paths)
            error = result.error
        outcome = Outcome(task.stem, task.seed, task.mode, task.environment, "failed" if error else "executed",
                          result.seconds if result else 0.0, result.worker if result else "-", error, str(paths.root))
        outcomes[i] = outcome
        if echo:
            print(f"{task.stem:45s} {_pass_label(outcome):22s} {outcome.status:8s} {outcome.seconds:7.1f} s  "
                  f"{outcome.worker}", flush=True)

    if pending and scheduler is None and (jobs == 1 or len(pending) == 1):
        for i in pending:  # the same task, in this process: no cluster to start for one chapter
            record(i, run_chapter(work[i][0]))
    elif pending:
        from distributed import as_completed

        client, cluster = _dask_client(min(jobs, len(pending)), scheduler)
        digest = lib_digest() if _remote(scheduler) else ""  # a remote worker must run the keys' library
        try:
            # Dask's documented pattern for dynamic submission: as many tasks as the cluster has threads, the next
            # (largest remaining) one as soon as one completes. Left to itself, the scheduler hands a batch of
            # independent tasks out at once (it cannot know that a chapter takes minutes), and a worker with a
            # queue of long chapters makes the other workers wait at the end.
            queue, in_flight, done = list(pending), {}, as_completed()

            def submit_next() -> None:
                i = queue.pop(0)
                task = work[i][0]
                if digest:
                    task = dataclasses.replace(task, lib_digest=digest)
                name = re.sub(r"[^\w-]", "", f"{task.stem}-{_pass_label(task)}-{uuid.uuid4().hex[:8]}")
                future = client.submit(run_chapter, task, key=name, pure=False, retries=RETRIES,
                                       priority=len(queue))
                in_flight[future] = i
                done.add(future)

            def fill() -> None:
                threads = max(1, sum(client.nthreads().values()))  # the cluster may grow, or lose a worker
                while queue and len(in_flight) < threads:
                    submit_next()

            fill()
            for future in done:
                i = in_flight.pop(future)
                try:
                    result = future.result()
                except Exception as err:  # KilledWorker (died too often), or the task machinery failed RETRIES+1 times
                    record(i, None, f"chapter {work[i][0].stem} could not be executed on Dask: "
                                    f"{type(err).__name__}: {err}")
                else:
                    record(i, result)
                fill()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    ordered = [outcomes[i] for i in range(len(work))]
    wall = time.perf_counter() - start
    write_timings(ordered, timings, wall=wall, jobs=jobs, scheduler=scheduler)
    if echo:
        print("\n" + timing_table(ordered, wall=wall) + f"\n(table: {timings / 'timings.md'})", flush=True)
    return ordered


def _pass_label(item: ChapterTask | Outcome) -> str:
    seed = "published" if item.seed is None else f"seed {item.seed}"
    return seed if item.environment == "build" else f"{seed} ({item.environment})"


def write_timings(outcomes: list[Outcome], folder: Path, *, wall: float, jobs: int, scheduler: str | None) -> None:
    """``timings.json`` (machine-readable) and ``timings.md`` (the table) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"chapter": o.stem, "seed": o.seed, "mode": o.mode, "environment": o.environment, "status": o.status,
             "seconds": round(o.seconds, 2), "worker": o.worker} for o in outcomes]
    meta = {"wall_seconds": round(wall, 2), "jobs": jobs, "scheduler": scheduler or "local",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "1"), "cores": os.cpu_count()}
    _write_atomic(folder / TIMINGS, json.dumps({**meta, "rows": rows}, indent=1).encode())
    _write_atomic(folder / "timings.md", (timing_table(outcomes, wall=wall) + "\n").encode())


def write_reference_timings(tables: Iterable[Path], out: Path = REFERENCE_TIMINGS) -> Path:
    """Merge the executed rows of timing tables (e.g. a quick and a full whole-book run) into the committed reference
    table ``out``: one row per (chapter, mode, environment), the first table's row winning."""
    rows, seen, machine = [], set(), {}
    for table in tables:
        data = json.loads(Path(table).read_text())
        machine = machine or {k: data.get(k) for k in ("jobs", "omp_num_threads", "cores")}
        for row in data["rows"]:
            key = (row["chapter"], row["mode"], row["environment"])
            if row.get("status") == "executed" and key not in seen:
                seen.add(key)
                rows.append({"chapter": key[0], "mode": key[1], "environment": key[2], "seconds": row["seconds"]})
    if not rows:
        raise ValueError(f"no executed chapter in the timing tables {[str(t) for t in tables]}")
    _write_atomic(out, json.dumps({**machine, "rows": sorted(rows, key=lambda r: (r["mode"], r["chapter"]))},
                                  indent=1).encode())
    return out


def timing_table(outcomes: list[Outcome], *, wall: float | None = None) -> str:
    """The per-chapter execution times, longest first: chapter, pass (seed, environment), mode, status, seconds,
    worker; then the executed total and the wall time (cached chapters show their last measured time)."""
    rows = sorted(outcomes, key=lambda o: (-o.seconds, o.stem))
    lines = [f"{'chapter':45s} {'pass':20s} {'mode':6s} {'status':9s} {'seconds':>8s}  worker", "-" * 100]
    lines += [f"{o.stem:45s} {_pass_label(o):20s} {o.mode:6s} {o.status:9s} {o.seconds:8.1f}  {o.worker}"
              for o in rows]
    executed = [o for o in outcomes if o.status != "cached"]
    lines += ["-" * 100, f"{'executed':45s} {len(executed):<20d} {'':6s} {'':9s} {sum(o.seconds for o in executed):8.1f}"]
    if wall is not None:
        lines.append(f"{'wall time':45s} {'':20s} {'':6s} {'':9s} {wall:8.1f}")
    return "\n".join(lines)


def execute_chapter(
    chapter: Path,
    parameters: Mapping[str, Any],
    paths: BuildPaths = BuildPaths(),
    *,
    timeout: int = 1200,
    force: bool = False,
) -> bool:
    """Execute one chapter in this process unless its cache key is unchanged. Returns True if it ran.

    Raises :class:`ChapterFailed` (after cleaning up) when the chapter errors, times out, writes no
    claims record, or records a failed claim.
    """
    task = chapter_task(chapter, parameters, timeout=timeout)
    if not force and is_cached(task, paths):
        return False
    result = run_chapter(task)
    commit(result, paths)
    if not result.ok:
        raise ChapterFailed(result.error)
    return True


def execute_book(
    selected: Iterable[Path],
    parameters: Mapping[str, Any],
    paths: BuildPaths = BuildPaths(),
    *,
    timeout: int = 1200,
    force: bool = False,
    jobs: int | None = None,
    scheduler: str | None = None,
    echo: bool = True,
) -> list[Outcome]:
    """Execute chapters (in parallel, see :func:`run_jobs`); returns their outcomes. Every chapter is attempted;
    then, if any failed, raises :class:`ChapterFailed` with their messages (one chapter: exactly its message)."""
    work = [(chapter_task(c, parameters, timeout=timeout), paths) for c in selected]
    outcomes = run_jobs(work, force=force, jobs=jobs, scheduler=scheduler, echo=echo)
    failed = [o.error for o in outcomes if not o.ok]
    if failed:
        raise ChapterFailed("\n\n".join(failed))
    return outcomes
