"""Readers' environments: `make lab` opens a chapter as a notebook, and the Binder reader spec stays in step with the
one dependency spec while leaving out the build and test tools."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pipeline import execute as ex

ROOT = ex.ROOT
BUILD_AND_TEST_TOOLS = {"jupyter-book", "papermill", "nbclient", "plotly", "dask", "distributed", "pytest", "playwright", "pyyaml"}


def _pins(spec: Path) -> dict[str, str]:
    env = yaml.safe_load(spec.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return dict(p.split("==") for p in pip if not p.startswith("-"))


def test_reader_spec_is_cpu_only_in_step_and_without_build_tools():
    main, reader = _pins(ROOT / "environment.yml"), _pins(ROOT / "binder" / "environment.yml")
    assert {name: reader[name] for name in reader} == {name: main[name] for name in reader}, "same pins as the one spec"
    assert set(main) - set(reader) == BUILD_AND_TEST_TOOLS, "the reader spec has everything a chapter needs, no more"
    env = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip, "CPU torch for Binder (not the CUDA build)"
    assert {"jupyterlab", "jupytext", "tqdm"} <= set(reader)
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "overrides.json" in post and "pip install --no-deps" in post


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_make_lab_serves_a_chapter_as_a_notebook(tmp_path):
    """`make lab NAME=<chapter>` starts JupyterLab on the chapter; jupytext serves the MyST file as a notebook and the
    installed settings make notebooks the default view of .md files."""
    chapter = ex.chapters()[0].stem
    port, token = _free_port(), "test-token"
    args = f"--no-browser --allow-root --port={port} --ServerApp.port_retries=0 --ServerApp.token={token}"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    proc = subprocess.Popen(["make", "-s", "lab", f"NAME={chapter}", f"LAB_ARGS={args}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                model = _get(f"{base}/api/contents/{chapter}.md?type=notebook&content=1&token={token}")
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("make lab exited: " + proc.stdout.read().decode()[-2000:])
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        assert model["type"] == "notebook" and len(model["content"]["cells"]) > 5
        settings = _get(f"{base}/lab/api/settings/@jupyterlab/docmanager-extension:plugin?token={token}")
        assert "Jupytext Notebook" in json.dumps(settings)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
