"""Execute jupytext chapters with papermill, with a cache keyed on everything that determines the output.

A chapter is a ``book/*.md`` file whose front matter names a ``kernelspec``. Executing one:

1. converts it to a notebook (jupytext) and checks the requested parameters against its
   ``parameters``-tagged cell (an unknown name is an error);
2. runs it with papermill (cwd ``book/``, an execution timeout, ``OMP_NUM_THREADS=1`` unless set,
   ``HOW_CNNS_LEARN_CLAIMS_DIR`` pointing at the claims folder; on POSIX the kernel talks over IPC
   sockets in a private temporary folder rather than unencrypted TCP);
3. requires the chapter's claims record to be complete (``finalize`` ran) with no failed claim;
4. only then moves the executed notebook and the cache key into place. A failure leaves nothing
   half-written in the book: the old key and the claims record are removed, and the notebook executed
   up to the failure goes to ``_build/failed/`` for inspection. The error names the broken claims, each
   on one line with its measured value, expected value and tolerance, also when the chapter crashed
   after breaking them.

The cache key is the SHA-256 of the chapter source, every file of ``lib/``, the parameters and the
dependency spec ``environment.yml``: editing the library re-executes every chapter; editing nothing
re-executes none.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
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


def _kernel_environment(claims_dir: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.pop("MPLBACKEND", None)  # with Agg exported, kernels produce no figure output
    os.environ[CLAIMS_ENV] = str(claims_dir)


def _check_parameters(notebook_path: Path, parameters: Mapping[str, Any], chapter: Path) -> None:
    import papermill

    declared = papermill.inspect_notebook(str(notebook_path))
    if not declared:
        raise ChapterFailed(f"{chapter.name}: no cell tagged 'parameters'; every chapter needs one")
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ChapterFailed(
            f"{chapter.name}: unknown parameter(s) {unknown}; the chapter declares {sorted(declared)}"
        )


def _keep_failed_notebook(executed_nb: Path, paths: BuildPaths) -> None:
    """Keep what was executed up to the failure in ``_build/failed`` (a CI artifact), never in the book."""
    if executed_nb.exists():
        paths.failed.mkdir(parents=True, exist_ok=True)
        shutil.move(str(executed_nb), paths.failed / executed_nb.name)


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


def _failure_message(chapter: Path, err: Exception) -> str:
    evalue = getattr(err, "evalue", None)
    ename = getattr(err, "ename", type(err).__name__)
    detail = evalue if evalue else str(err)
    return f"chapter {chapter.stem} failed: {ename}: {detail}"


def execute_chapter(
    chapter: Path,
    parameters: Mapping[str, Any],
    paths: BuildPaths = BuildPaths(),
    *,
    timeout: int = 1200,
    force: bool = False,
) -> bool:
    """Execute one chapter unless its cache key is unchanged. Returns True if it ran.

    Raises :class:`ChapterFailed` (after cleaning up) when the chapter errors, times out, writes no
    claims record, or records a failed claim.
    """
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = paths.notebooks / f"{chapter.stem}.ipynb"
    key_file = paths.keys / f"{chapter.stem}.key"
    record = paths.claims / f"{chapter.stem}.json"
    key = cache_key(chapter, parameters)
    if not force and out.exists() and record.exists() and key_file.exists() and key_file.read_text() == key:
        return False
    for stale in (out, key_file, record):
        stale.unlink(missing_ok=True)
    for folder in (paths.notebooks, paths.keys, paths.claims):
        folder.mkdir(parents=True, exist_ok=True)
    _kernel_environment(paths.claims)
    with tempfile.TemporaryDirectory(prefix=f"{chapter.stem}-") as tmp:
        source_nb = Path(tmp) / f"{chapter.stem}.in.ipynb"
        executed_nb = Path(tmp) / f"{chapter.stem}.ipynb"
        jupytext.write(jupytext.read(chapter), source_nb)
        _check_parameters(source_nb, parameters, chapter)
        try:
            papermill.execute_notebook(
                str(source_nb),
                str(executed_nb),
                parameters=dict(parameters),
                cwd=str(chapter.parent),
                kernel_name="python3",
                execution_timeout=timeout,
                progress_bar=False,
                log_output=False,
                kernel_manager_class=_kernel_manager_class(Path(tmp)),
            )
        except Exception as err:  # PapermillExecutionError; timeouts and kernel deaths come as other types
            _keep_failed_notebook(executed_nb, paths)
            message = _failure_message(chapter, err)
            if "ClaimFailure" not in message:  # a ClaimFailure already lists its broken claims
                message += _broken_claims(record)
            record.unlink(missing_ok=True)
            raise ChapterFailed(message) from None
        summary = json.loads(record.read_text()) if record.exists() else None
        if summary is None or not summary.get("complete"):
            _keep_failed_notebook(executed_nb, paths)
            record.unlink(missing_ok=True)
            raise ChapterFailed(
                f"chapter {chapter.stem} did not finalize its claims: it must end with claims.finalize()"
            )
        if summary.get("n_failed", 1) != 0 or summary.get("n_claims", 0) == 0:
            _keep_failed_notebook(executed_nb, paths)
            record.unlink(missing_ok=True)
            raise ChapterFailed(f"chapter {chapter.stem} has failed or missing claims: {summary}")
        shutil.move(str(executed_nb), out)
    key_file.write_text(key)
    return True


def execute_book(
    selected: Iterable[Path], parameters: Mapping[str, Any], paths: BuildPaths = BuildPaths(), **kwargs: Any
) -> list[tuple[str, str, float]]:
    """Execute chapters in order; returns ``(chapter, "executed" | "cached", seconds)`` rows.

    Stops at the first failing chapter (its error propagates).
    """
    rows = []
    for chapter in selected:
        start = time.perf_counter()
        ran = execute_chapter(chapter, parameters, paths, **kwargs)
        seconds = time.perf_counter() - start
        rows.append((chapter.stem, "executed" if ran else "cached", seconds))
        print(f"{chapter.stem:45s} {'executed' if ran else 'cached  '} {seconds:7.1f} s", flush=True)
    return rows


def timing_table(rows: list[tuple[str, str, float]]) -> str:
    """The per-chapter execution times as a small text table with the total (printed after a build)."""
    lines = [f"{'chapter':45s} {'status':9s} {'seconds':>8s}", "-" * 64]
    lines += [f"{name:45s} {status:9s} {seconds:8.1f}" for name, status, seconds in rows]
    lines += ["-" * 64, f"{'total':45s} {'':9s} {sum(r[2] for r in rows):8.1f}"]
    return "\n".join(lines)
