"""Reproducibility helpers: chapter parameters, seeding, device choice, and the environment footer.

Every chapter starts with a papermill ``parameters`` cell holding ``quick`` (bool), ``seed`` (int)
and ``device`` (``"auto"``, ``"cpu"`` or ``"cuda"``), then calls :func:`chapter_setup`, which
validates them, seeds every generator, picks the device and starts the chapter's clock.

**Where the work ran.** Every trainer of the library takes ``device`` and validates it with
:func:`check_device` (an unknown name, or ``"cuda"`` on a machine without CUDA, is a ``ValueError`` naming the
parameter), then reports the device its tensors actually lived on with :func:`record_device` (``by`` names the
trainer). The reports go to a small process-wide registry that :func:`chapter_setup` empties;
:func:`devices_used` returns it (``{device: [trainers]}``) and :func:`environment_report` prints it in the
chapter footer as ``device used``, next to ``device requested``, so the page says where the work ran rather than
what was asked for. A new trainer does the same: ``dev = check_device(device)`` on entry, then
``record_device(tensor_or_device, by="my_trainer")`` once its model and data are placed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import platform
import random
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "ChapterContext",
    "chapter_setup",
    "check_device",
    "devices_used",
    "environment_report",
    "glue",
    "progress_bar",
    "lib_hash",
    "record_device",
    "reset_devices_used",
    "resolve_device",
    "seed_everything",
]

_DEVICES = ("auto", "cpu", "cuda")


def seed_everything(seed: int, deterministic: bool = True) -> np.random.Generator:
    """Seed Python, numpy and torch (CPU and CUDA); optionally make cuDNN deterministic.

    Returns a fresh ``numpy.random.Generator`` seeded with ``seed`` for code that takes one.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed))
    torch.manual_seed(int(seed))
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(int(seed))
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    return np.random.default_rng(int(seed))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The chapter parameter ``device``: ``"auto"`` → CUDA when available, else CPU; ``"cpu"``/``"cuda"`` as asked.

    Only these (and ``"cuda:<index>"``) are chapter parameters; the rest is :func:`check_device` (errors name the
    parameter).
    """
    name = str(device)
    if name not in _DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"parameter device: unknown device {device!r}; use one of {_DEVICES} or 'cuda:<index>'")
    return check_device(name, "parameter device")


def check_device(device: str | torch.device, name: str = "device") -> torch.device:
    """Validate a trainer's ``device`` argument and return it as a ``torch.device``.

    Accepts a ``torch.device`` or any name torch knows (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"meta"``, …) and
    ``"auto"`` (CUDA when present, else CPU). Raises ``ValueError`` naming the parameter ``name`` for a value that
    is not a device, an unknown device name, or a CUDA device on a machine without CUDA (or without that index).
    """
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError):
            raise ValueError(f"{name}: unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:<index>' "
                             "or another torch device name") from None
    else:
        raise ValueError(f"{name} must be a device name (str) or a torch.device, got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={str(device)!r} was asked for but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name}={str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"{name}={str(device)!r} was asked for but MPS is not available on this machine")
    return dev


_DEVICES_USED: dict[str, list[str]] = {}


def record_device(where: torch.device | str | torch.Tensor | torch.nn.Module, by: str) -> torch.device:
    """Report that the work of ``by`` (a trainer's name) ran on ``where``; returns the device.

    ``where`` may be a device, a tensor (its device) or a module (the device of its first parameter or buffer,
    CPU for a module without any). CUDA devices are recorded with their index (``cuda:0``).
    """
    if isinstance(where, torch.Tensor):
        dev = where.device
    elif isinstance(where, torch.nn.Module):
        tensor = next(iter([*where.parameters(), *where.buffers()]), None)
        dev = tensor.device if tensor is not None else torch.device("cpu")
    else:
        dev = torch.device(where)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    users = _DEVICES_USED.setdefault(str(dev), [])
    if by not in users:
        users.append(by)
    return dev


def devices_used() -> dict[str, list[str]]:
    """The devices reported by :func:`record_device` since the last reset: ``{device: [trainers, in order]}``."""
    return {dev: list(users) for dev, users in _DEVICES_USED.items()}


def reset_devices_used() -> None:
    """Empty the registry of :func:`record_device` (:func:`chapter_setup` calls it)."""
    _DEVICES_USED.clear()


_LIB_DIR = Path(__file__).resolve().parent


def lib_hash() -> str:
    """SHA-256 (first 12 hex digits) of every ``.py`` file of this package, in path order."""
    digest = hashlib.sha256()
    for path in sorted(_LIB_DIR.rglob("*.py")):
        digest.update(path.relative_to(_LIB_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=_LIB_DIR, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=_LIB_DIR, capture_output=True, text=True, timeout=5)
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@dataclass(frozen=True)
class ChapterContext:
    """What :func:`chapter_setup` returns: validated parameters, the device, a seeded generator."""

    quick: bool
    seed: int
    device: torch.device
    rng: np.random.Generator
    started: float = field(default_factory=time.perf_counter)

    @property
    def parameters(self) -> dict[str, Any]:
        """The chapter parameters as passed (device as resolved)."""
        return {"quick": self.quick, "seed": self.seed, "device": str(self.device)}


def chapter_setup(quick: Any, seed: Any, device: Any) -> ChapterContext:
    """Validate the papermill parameters, seed everything, pick the device, start the clock."""
    if not isinstance(quick, bool):
        raise ValueError(f"parameter quick must be True or False, got {quick!r}")
    rng = seed_everything(seed)
    reset_devices_used()
    return ChapterContext(quick=quick, seed=int(seed), device=resolve_device(device), rng=rng)


# MyST-NB's glue format (``myst_nb.ext.glue``): the value's display data under this MIME prefix, with
# ``{"scrapbook": {"name", "mime_prefix"}}`` in the output's metadata. Written here with IPython alone: importing
# ``myst_nb.ext.glue`` pulls in nbformat's validator, about 1.2 s in every chapter (tested equal to MyST-NB's output).
GLUE_PREFIX = "application/papermill.record/"


@functools.lru_cache(maxsize=1)
def _myst_nb_installed() -> bool:
    return importlib.util.find_spec("myst_nb") is not None


def glue(name: str, value: Any) -> Any:
    """Make ``value`` available to the page's prose as ``{glue:text}`name``` (MyST-NB) and return it.

    Emits exactly what ``myst_nb.glue(name, value, display=False)`` emits, without importing MyST-NB. Where
    MyST-NB is not installed (a notebook launched on Colab, a reader's environment) the value is only returned:
    the chapter still runs, its prose just has nothing to fill in. numpy scalars are glued as Python numbers
    (MyST-NB formats ``{glue:text}`name:.3f``` from the text form, and ``np.float64(…)`` is not a number).
    """
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        value = value.item()
    if not _myst_nb_installed():
        return value
    from IPython.core.formatters import format_display_data
    from IPython.display import display

    bundle, metadata = format_display_data(value)
    metadata["scrapbook"] = {"name": name, "mime_prefix": GLUE_PREFIX}
    display({GLUE_PREFIX + mime: data for mime, data in bundle.items()}, raw=True, metadata=metadata)
    return value


def progress_bar(iterable: Any, *, desc: str = "", enabled: bool = True, **options: Any) -> Any:
    """``iterable`` wrapped in a tqdm progress bar that renders where it runs: a widget in a live Jupyter kernel
    with ipywidgets (JupyterLab, Colab), a text bar in a terminal or an executed notebook. ``enabled=False``
    returns ``iterable`` unchanged."""
    if not enabled:
        return iterable
    try:
        import ipywidgets  # noqa: F401  (tqdm's notebook front-end needs it; without, tqdm.auto only warns)

        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    return tqdm(iterable, desc=desc, **options)


def _device_used_text(requested: torch.device) -> str:
    used = devices_used()
    if not used:
        return "none reported (no trainer of the library ran; numpy work runs on the CPU)"
    return "; ".join(f"{dev} ({', '.join(users)})" for dev, users in used.items())


def environment_report(context: ChapterContext) -> pd.DataFrame:
    """The footer every chapter ends with: versions, git commit, lib hash, devices, run time, parameters.

    ``device used`` lists the devices the library's trainers reported (:func:`record_device`) since
    :func:`chapter_setup`, each with the trainers that ran there; ``device requested`` is the chapter parameter.
    """
    versions = {name: metadata.version(name) for name in ("numpy", "scipy", "torch", "pandas", "seaborn")}
    rows = {
        "python": platform.python_version(),
        **versions,
        "git commit": _git_commit(),
        "lib hash": lib_hash(),
        "device used": _device_used_text(context.device),
        "device requested": str(context.device),
        "torch threads": str(torch.get_num_threads()),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "run time [s]": f"{time.perf_counter() - context.started:.1f}",
        "parameters": ", ".join(f"{k}={v}" for k, v in context.parameters.items()),
    }
    return pd.DataFrame({"value": rows}).rename_axis("environment")
