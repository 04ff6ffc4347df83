"""Launched notebooks run: every published notebook (the download / Colab / Binder version, with its install cell)
executes in a clean virtual environment that holds only what a Colab-like image has plus what the install cell
installs, and its claims come out bit-identical to the book build's (determinism across two executions).

The Colab-like image is assumed to hold :data:`COLAB_LIKE` (at the versions pinned in environment.yml): the
scientific stack, torch and a Jupyter kernel, but none of the book's build tools (no MyST-NB, jupytext, papermill,
Jupyter Book). The install cell installs the library itself (here from the working tree, as no network is assumed).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from pipeline import execute as ex

COLAB_LIKE = ("numpy", "scipy", "pandas", "matplotlib", "seaborn", "scikit-learn", "scikit-image", "torch", "tqdm",
              "ipykernel")
KERNEL = "colab-like"


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


@pytest.mark.slow
def test_published_notebooks_run_in_a_colab_like_environment_with_identical_claims(
    built_site: Path, build_paths: ex.BuildPaths, colab_like: Path, tmp_path: Path
):
    from nbclient import NotebookClient

    published = build_paths.root / "src" / "_extra" / "notebooks"  # staged by the built_site fixture
    build_claims = build_paths.claims
    notebooks = sorted(published.glob("*.ipynb"))
    assert {p.stem for p in notebooks} == {c.stem for c in ex.chapters()}, "every chapter is published"
    claims_dir = tmp_path / "claims"
    env = {"JUPYTER_PATH": str(colab_like / "share" / "jupyter"), ex.CLAIMS_ENV: str(claims_dir)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    failures = []
    try:
        for path in notebooks:
            notebook = nbformat.read(path, as_version=4)
            assert "import how_cnns_learn" in notebook.cells[0].source, f"{path.stem}: the install cell comes first"
            assert "@main#" not in notebook.cells[0].source, "the install cell pins the library to a snapshot"
            workdir = tmp_path / path.stem
            workdir.mkdir()  # like Colab's /content: nothing of the repository around the notebook
            try:
                NotebookClient(notebook, kernel_name=KERNEL, timeout=1200,
                               resources={"metadata": {"path": str(workdir)}}).execute()
            except Exception as err:  # noqa: BLE001 - collect every chapter's failure, then fail once
                failures.append(f"{path.stem}: {type(err).__name__}: {str(err)[-600:]}")
                continue
            mine = json.loads((claims_dir / f"{path.stem}.json").read_text())
            theirs = json.loads((build_claims / f"{path.stem}.json").read_text())
            if mine["claims"] != theirs["claims"]:
                failures.append(f"{path.stem}: claim records differ from the book build's (not deterministic)")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert failures == [], "\n".join(failures)
