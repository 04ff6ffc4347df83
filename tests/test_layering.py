"""The library's structure (#21): one core, paper modules on top of it, applications on top of both.

* **core** modules import only core modules;
* a **paper** module imports the core and the modules of its own paper, never another paper's;
* **applications** (the command line, parameter sweeps, interactive figures) may import anything, and nothing but
  another application imports them;
* no module but ``plotting`` imports matplotlib or seaborn (lazily inside a function counts too).

Imports are read with :mod:`ast` (top-level and inside functions), so the test needs no import side effects.
A new module must be placed in one of the layers below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import how_cnns_learn

PACKAGE = Path(how_cnns_learn.__file__).resolve().parent
CORE = {"claims", "data", "fourier", "models", "plotting", "repro", "training"}
PAPERS = {
    "Pinson et al. 2023 (linear CNNs)": {"theory", "simulate"},
    "Wen & Jacot 2024 (convolution bottleneck)": {"bottleneck"},
    "Beaglehole et al. 2023 (patch-AGOP, ConvRFM)": {"agop"},
    "Yu, Zhang & Zhu 2019 (key patterns)": {"keypatterns"},
}
APPLICATIONS = {"__init__", "__main__", "interactive", "predict", "sweeps"}
PAPER_OF = {module: paper for paper, modules in PAPERS.items() for module in modules}
PLOTTING_LIBRARIES = {"matplotlib", "seaborn"}


def _modules() -> list[str]:
    return sorted(path.stem for path in PACKAGE.glob("*.py"))


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(package modules imported, top-level third-party packages imported) by ``module``, anywhere in its code."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    own, external = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "how_cnns_learn":
                    own.update(parts[1:2])
                else:
                    external.add(parts[0])
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 0 and parts[0] != "how_cnns_learn":
                external.add(parts[0])
                continue
            inside = parts[1:] if node.level == 0 else [p for p in parts if p]
            if inside:
                own.add(inside[0])
            else:  # `from . import data, fourier`
                own.update(alias.name for alias in node.names)
    return own - {module}, external


def test_every_module_has_a_layer():
    unplaced = set(_modules()) - CORE - set(PAPER_OF) - APPLICATIONS
    assert not unplaced, f"place {sorted(unplaced)} in CORE, PAPERS or APPLICATIONS of tests/test_layering.py"


@pytest.mark.parametrize("module", sorted(CORE))
def test_core_modules_import_only_the_core(module):
    own, _ = _imports(module)
    assert own <= CORE, f"core module {module} imports {sorted(own - CORE)}: the core must not depend on a paper or an application"


@pytest.mark.parametrize("module", sorted(PAPER_OF))
def test_paper_modules_import_the_core_and_never_another_paper(module):
    own, _ = _imports(module)
    allowed = CORE | PAPERS[PAPER_OF[module]]
    assert own <= allowed, (f"{module} ({PAPER_OF[module]}) imports {sorted(own - allowed)}: a paper module imports "
                            "only the core and its own paper's modules")


def test_nothing_below_the_applications_imports_them():
    for module in sorted(CORE | set(PAPER_OF)):
        own, _ = _imports(module)
        assert not own & APPLICATIONS, f"{module} imports the application(s) {sorted(own & APPLICATIONS)}"


@pytest.mark.parametrize("module", _modules())
def test_only_plotting_imports_matplotlib_or_seaborn(module):
    _, external = _imports(module)
    if module != "plotting":
        assert not external & PLOTTING_LIBRARIES, f"{module} imports {sorted(external & PLOTTING_LIBRARIES)}"


def test_the_layering_test_reads_imports_correctly():
    own, external = _imports("bottleneck")
    assert {"fourier", "repro"} <= own and "torch" in external
    assert "data" in _imports("training")[0] and "matplotlib" in _imports("plotting")[1]


# ------------------------------------------------------------------------------------------ the public surface
def _public_definitions(module: str) -> tuple[set[str], list[str] | None]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    public = {node.name for node in tree.body
              if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_")}
    declared = None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            declared = list(ast.literal_eval(node.value))
    return public, declared


@pytest.mark.parametrize("module", [m for m in _modules() if not m.startswith("__")])
def test_every_public_definition_is_in_all(module):
    public, declared = _public_definitions(module)
    assert declared is not None, f"{module} has no __all__"
    assert public <= set(declared), f"{module}.__all__ misses {sorted(public - set(declared))}"
    assert len(declared) == len(set(declared)), f"{module}.__all__ lists a name twice"
    imported = __import__(f"how_cnns_learn.{module}", fromlist=["_"])
    assert all(hasattr(imported, name) for name in declared), f"{module}.__all__ names something it does not define"


def test_the_package_lists_every_module():
    modules = {m for m in _modules() if not m.startswith("__")}
    assert set(how_cnns_learn.__all__) == modules
    for module in modules:
        assert f":mod:`~how_cnns_learn.{module}`" in how_cnns_learn.__doc__, f"the module map of __init__ misses {module}"


def test_one_name_per_meaning_for_the_patch_agop():
    from how_cnns_learn import agop, keypatterns

    assert hasattr(agop, "patch_agop") and not hasattr(keypatterns, "patch_agop")
    assert hasattr(keypatterns, "key_pattern_agop")
