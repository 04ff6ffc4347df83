"""Launched notebooks run, and the book is deterministic: every published notebook (the download / Colab / Binder
version, with its install cell) executes in a clean virtual environment that holds only what a Colab-like image has
plus what the install cell installs, and its claims come out bit-identical to the book build's.

Why this is a second execution, and the only one. Every other (chapter, seed, mode) of ``make test`` executes once
per cache key (tests/conftest.py: seeds 0, 1, 2 in the build environment, skipped when ``make book`` already left
them). Determinism cannot be checked without executing one (chapter, seed, mode) twice, so this test is that second
execution, and it is made to check what a single pass cannot: that the notebook a reader downloads, run in the
reader's environment (no MyST-NB, jupytext, papermill or Jupyter Book; the library installed from a copy, as the
install cell does), reproduces the book's claim records bit for bit. It runs the published seed-0 notebooks, the
ones readers get, against the seed-0 records of the build, in parallel on the same Dask workers as the chapters
(``pipeline.execute.run_jobs``, one task per notebook). Its results are cached too, under ``_build/clean``, with a
key made of the seed-0 cache key and the reader environment: when nothing changed, a second ``make test`` executes
nothing here and creates no virtual environment. (A cheaper variant that would run seed 1 or 2 only in the clean
environment would leave that seed without a build-environment record to compare with: a comparison always needs
two executions of one key.)

The Colab-like image is assumed to hold :data:`COLAB_LIKE` (at the versions pinned in environment.yml): the
scientific stack, torch and a Jupyter kernel, but none of the book's build tools. The install cell installs the
library itself (here from the working tree, as no network is assumed).
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import run_visibly

from pipeline import execute as ex

COLAB_LIKE = ("numpy", "scipy", "pandas", "matplotlib", "seaborn", "scikit-learn", "scikit-image", "torch", "tqdm",
              "ipykernel")
KERNEL = "colab-like"
CLEAN = ex.BuildPaths(ex.BUILD / "clean")


def _pins() -> dict[str, str]:
    env = yaml.safe_load((ex.ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return dict(p.split("==") for p in pip)


@pytest.fixture(scope="session")
def colab_like(tmp_path_factory) -> Path:
    """A fresh venv with the Colab-like packages and the library (no dependencies pulled in beyond those)."""
    venv = tmp_path_factory.mktemp("colab-like") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pins = _pins()
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + [f"{name}=={pins[name]}" for name in COLAB_LIKE], check=True)
    lib = venv.parent / "lib"  # a copy: building a wheel writes build/ next to the sources
    shutil.copytree(ex.LIB, lib, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
    subprocess.run(pip + ["--no-deps", str(lib)], check=True)  # what the install cell installs
    subprocess.run([str(python), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", KERNEL], check=True,
                   capture_output=True)
    missing = subprocess.run([str(python), "-c", "import myst_nb"], capture_output=True)
    assert missing.returncode != 0, "the Colab-like venv must not hold MyST-NB"
    return venv


def clean_task(published: Path, build_key: str, venv: Path | None) -> ex.ChapterTask:
    """The task running one published notebook as it is (no parameters injected) in the Colab-like kernel, in an
    empty folder (like Colab's /content: nothing of the repository around it)."""
    key = hashlib.sha256(f"{build_key}\0{KERNEL}\0{','.join(COLAB_LIKE)}".encode()).hexdigest()
    env = (("OMP_NUM_THREADS", "1"),) + ((("JUPYTER_PATH", str(venv / "share" / "jupyter")),) if venv else ())
    return ex.ChapterTask(stem=published.stem, notebook=published.read_text(encoding="utf-8"), key=key,
                          parameters=None, kernel=KERNEL, env=env, cwd=None, environment=KERNEL)


@pytest.mark.slow
def test_published_notebooks_run_in_a_colab_like_environment_with_identical_claims(
    built_site: Path, build_paths: ex.BuildPaths, request
):
    published = build_paths.root / "src" / "_extra" / "notebooks"  # staged by the built_site fixture
    notebooks = sorted(published.glob("*.ipynb"))
    assert {p.stem for p in notebooks} == {c.stem for c in ex.chapters()}, "every chapter is published"
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        assert "import how_cnns_learn" in notebook.cells[0].source, f"{path.stem}: the install cell comes first"
        assert "@main#" not in notebook.cells[0].source, "the install cell pins the library to a snapshot"
    keys = {p.stem: (build_paths.keys / f"{p.stem}.key").read_text() for p in notebooks}
    tasks = [clean_task(p, keys[p.stem], None) for p in notebooks]
    if not all(ex.is_cached(task, CLEAN) for task in tasks):
        venv = request.getfixturevalue("colab_like")  # built only when something must run in it
        tasks = [clean_task(p, keys[p.stem], venv) for p in notebooks]
    outcomes = run_visibly(request.config, [(task, CLEAN) for task in tasks])
    failures = [o.error for o in outcomes if not o.ok]
    for path in notebooks:
        mine = CLEAN.claims / f"{path.stem}.json"  # absent when it failed (its message is already listed)
        theirs = json.loads((build_paths.claims / f"{path.stem}.json").read_text())
        if mine.exists() and json.loads(mine.read_text())["claims"] != theirs["claims"]:
            failures.append(f"{path.stem}: claim records differ from the book build's (not deterministic)")
    assert failures == [], "\n".join(failures)
