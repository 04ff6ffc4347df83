"""House rules that keep the repository honest: text-only chapters, one dependency spec, layering."""

import re
import subprocess
from pathlib import Path

import jupytext
import pytest
import yaml

from pipeline import execute as ex

ROOT = ex.ROOT
CHAPTERS = ex.chapters()
LIB = ROOT / "lib" / "how_cnns_learn"


def test_no_notebook_files_are_committed():
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert tracked == [], f"executed notebooks are build artifacts, never sources: {tracked}"
    assert not list((ROOT / "book").glob("*.ipynb"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_shape(chapter: Path):
    nb = jupytext.read(chapter)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") for c in code), "chapters carry no outputs"
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    for name in ("quick", "seed", "device"):
        assert re.search(rf"^{name}\s*=", first.source, re.M), f"parameters cell lacks {name}"
    sources = "\n".join(c.source for c in code)
    assert f'ClaimSet("{chapter.stem}"' in sources, "the ClaimSet must carry the chapter's file stem"
    assert code[-2].source.strip() == "claims.finalize()", "the second-to-last cell must finalize the claims"
    assert code[-1].source.strip().startswith("repro.environment_report("), "the last cell is the footer"
    others = {c.stem for c in CHAPTERS} - {chapter.stem}
    assert not any(re.search(rf"\bimport\s+{o}\b|\bfrom\s+{o}\b", sources) for o in others), "no chapter imports another"
    assert "def train" not in sources, "chapters use lib's simulators, they do not define training loops"
    title = next(line for line in chapter.read_text().splitlines() if line.startswith("# "))
    assert "$" not in title, "no maths in titles: they show in the navigation of pages that do not load MathJax"


def test_environment_yml_is_the_one_spec_and_names_every_lib_dependency():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert deps[-1] == {"pip": pip}, "keep the pip block last (the Makefile's extraction relies on it)"
    pins = dict(p.split("==") for p in pip)
    assert len(pins) == len(pip), "every pip entry is pinned with =="
    assert pins["torch"] == "2.13.0", "torch must be pinned to the CPU wheel on disk"
    for name in _lib_dependencies():
        if name.lower() == "ipython":  # a dependency of ipykernel, pinned through it
            continue
        assert name in pins, f"lib dependency {name} is not pinned in environment.yml"


def _lib_dependencies() -> list[str]:
    import tomllib

    project = tomllib.loads((ROOT / "lib" / "pyproject.toml").read_text())["project"]
    return [re.split(r"[<>=!~ ]", d)[0] for d in project["dependencies"]]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and re.search(r"^make test$", ci, re.M)


def test_the_ci_workflow_only_calls_make_targets_that_exist():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.M))
    runs = [s["run"] for job in workflow["jobs"].values() for s in job["steps"] if "run" in s]
    called = [re.match(r"make ([a-z-]+)", r).group(1) for r in runs]
    assert called and set(called) <= targets, f"workflow calls {called}; Makefile has {sorted(targets)}"
    assert all(r.startswith("make ") for r in runs), "workflow steps call make targets, they do not duplicate them"
    for job in ("test", "site"):
        assert "environment.yml" in str(workflow["jobs"][job]["steps"]), "the pip cache is keyed on the one spec"


def test_the_workflow_pins_actions_deploys_full_mode_and_caches_chapters():
    text = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    workflow = yaml.safe_load(text)
    uses = [s["uses"] for job in workflow["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), f"unpinned actions: {uses}"
    dispatch = workflow[True]["workflow_dispatch"]["inputs"]  # YAML reads the key `on` as True
    assert all(i["type"] == "choice" for i in dispatch.values()), "free-text workflow inputs are choices"
    site = workflow["jobs"]["site"]
    assert "'full'" in site["env"]["MODE"], "the deployed site is the full-mode build"
    assert workflow["jobs"]["deploy"]["needs"] == "site"
    cache = next(s for s in site["steps"] if "actions/cache@" in s.get("uses", ""))
    assert "_build/keys" in cache["with"]["path"] and "_build/claims" in cache["with"]["path"]
    test_runs = [s["run"] for s in workflow["jobs"]["test"]["steps"] if "run" in s]
    assert test_runs == ['make test PYTEST_ARGS="--junitxml=_build/pytest.xml"'], "quick mode executes in `make test` only"
    assert all(job["timeout-minutes"] for job in workflow["jobs"].values())
    dependabot = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert {u["package-ecosystem"] for u in dependabot["updates"]} == {"github-actions"}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def test_no_control_characters_in_sources():
    """A literal control character (a stray carriage return, a form feed) in a source file renders as garbage.
    Lines are split on "\n" only: ``splitlines`` would treat a carriage return as a line end and hide it."""
    files = [*(ROOT / "book").glob("*.md"), *LIB.glob("*.py"), *(ROOT / "pipeline").glob("*.py"), ROOT / "README.md"]
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in files for i, line in enumerate(p.read_text().split("\n"), 1)
           if _CONTROL.search(line.replace("\t", ""))]
    assert bad == [], f"control characters in {bad}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_no_string_in_a_chapter_holds_a_control_character(chapter: Path):
    """Python escapes turn LaTeX into control characters: "G^{\\rho}" holds a carriage return, "\\theta" a tab,
    "\\frac" a form feed, "\\beta" a backspace. Every string constant of every code cell is checked."""
    import ast

    bad = []
    for cell in jupytext.read(chapter).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _CONTROL.search(node.value):
                bad.append(repr(node.value)[:60])
    assert bad == [], f"{chapter.stem}: strings with control characters (use a raw string or unicode): {bad}"


COLAB_LIKE_MODULES = {"how_cnns_learn", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "sklearn", "skimage",
                      "torch", "tqdm", "IPython"}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_a_chapter_imports_only_what_a_launched_notebook_has(chapter: Path):
    """A published notebook runs on Colab with the library installed: chapters import the library, the scientific
    stack and the standard library only (not MyST-NB, jupytext or papermill; `repro.glue` stands in for MyST-NB's)."""
    import ast
    import sys

    imported = set()
    for cell in jupytext.read(chapter).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    extra = imported - COLAB_LIKE_MODULES - set(sys.stdlib_module_names)
    assert not extra, f"{chapter.stem} imports {sorted(extra)}, which a launched notebook does not have"
