"""Stage the executed book for Jupyter Book, and generate the reproduction-status page.

The staged source ``_build/src`` holds: the executed chapters (``book/*.ipynb``, written by
:mod:`pipeline.execute`), copies of the prose pages, ``_toc.yml``, ``_config.yml`` with Jupyter Book's
own execution switched off, MathJax under ``_extra/mathjax`` and plotly.js under ``_extra/plotly`` (for the
interactive explorers, :mod:`how_cnns_learn.interactive`), both served locally: the machines that build and read
this book may have no internet. The status page is ``book/reproduction_status.md``
with its ``<!-- cards-table -->`` marker replaced by the audited table of reproduction cards
(:mod:`pipeline.cards`) and its ``<!-- claims-table -->`` marker by the table of every chapter's claims.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import nbformat
import yaml
from how_cnns_learn.claims import EQUATION_REF, KINDS, Claim, format_value
from how_cnns_learn.interactive import write_plotly_js

from .cards import cards_table
from .execute import BOOK, ROOT, BuildPaths, ChapterFailed, chapters

DOWNLOAD_TAG = "download-links"
INSTALL_TAG = "install-if-missing"
STATUS_PAGE = "reproduction_status.md"
MARKER = "<!-- claims-table -->"
FAULTS_MARKER = "<!-- faults-table -->"
CARDS_MARKER = "<!-- cards-table -->"
MATHJAX_NPM = ROOT / "_build" / "npm" / "node_modules" / "mathjax" / "es5"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _with_equation_roles(text: str) -> str:
    """A claim text for MyST: each ``(eq-label)`` becomes ``{eq}`eq-label``` (rendered as the numbered link)."""
    return EQUATION_REF.sub(lambda m: f"{{eq}}`{m[1]}`", text)


def _claim_rows(claims: list[Claim], kind: str) -> str:
    """Markdown table rows of one kind of claim (results add the rival, its verdict and margin, and the tolerance's
    source; measurements have no verdict)."""
    if kind == "measurement":
        head = "| measurement | value |\n|---|---|\n"
        return head + "\n".join(f"| `{c.id}`: {_cell(c.statement)} | {_cell(c.measured_text())} |" for c in claims)
    rows = []
    for c in claims:
        cells = [f"`{c.id}`: {_cell(_with_equation_roles(c.statement))}", _cell(c.measured_text()),
                 f"{_cell(format_value(c.expected))} ({_cell(c.tolerance)}; {_cell(c.provenance)}: "
                 f"{_cell(_with_equation_roles(c.theory))})"]
        if kind == "result":
            cells += [_cell(c.alternative_text(label=_with_equation_roles)), _cell(_with_equation_roles(c.tolerance_from))]
        cells.append("✓" if c.passed else "✗ FAIL")
        rows.append("| " + " | ".join(cells) + " |")
    if kind == "result":
        head = ("| result | measured | expected (tolerance; reference) | rival (its value): verdict, margin | "
                "tolerance from | pass |\n|---|---|---|---|---|---|\n")
    else:
        head = "| sanity check | measured | expected (tolerance; reference) | pass |\n|---|---|---|---|\n"
    return head + "\n".join(rows)


def status_table(paths: BuildPaths = BuildPaths(), book: Path = BOOK) -> str:
    """Markdown for the status page: a summary, then per chapter its results (with their rivals and margins), its
    sanity checks and its measurements. Raises if a result claim lacks a rival or did not reject it."""
    sections, problems = [], []
    counts = {kind: 0 for kind in KINDS}
    failed = rejected = 0
    for chapter in chapters(book):
        record_path = paths.claims / f"{chapter.stem}.json"
        if not record_path.exists():
            raise ChapterFailed(f"no claims record for chapter {chapter.stem}; execute it before staging")
        record = json.loads(record_path.read_text())
        params = ", ".join(f"`{k}={v}`" for k, v in record["parameters"].items())
        by_kind: dict[str, list[Claim]] = {kind: [] for kind in KINDS}
        for entry in record["claims"]:
            c = Claim.from_record(entry)
            by_kind[c.kind].append(c)
            counts[c.kind] += 1
            failed += not c.passed
            if c.kind == "result":
                if not c.alternative:
                    problems.append(f"{chapter.stem}: result `{c.id}` states no rival")
                elif not c.alternative_rejected:
                    problems.append(f"{chapter.stem}: result `{c.id}` does not reject its rival ‘{c.alternative}’")
                rejected += bool(c.alternative and c.alternative_rejected)
        parts = [f"### {chapter.stem}\n\n[Open the chapter]({chapter.stem}.ipynb) · run with {params} · "
                 f"{len(by_kind['result'])} results, {len(by_kind['sanity'])} sanity checks, "
                 f"{len(by_kind['measurement'])} measurements\n"]
        for kind, title in (("result", "Results"), ("sanity", "Sanity checks"), ("measurement", "Measurements")):
            if by_kind[kind]:
                parts.append(f"**{title}**\n\n" + _claim_rows(by_kind[kind], kind) + "\n")
        sections.append("\n".join(parts))
    if problems:
        raise ChapterFailed("result claims without a rejected rival:\n" + "\n".join(problems))
    share = 100.0 * rejected / counts["result"] if counts["result"] else 0.0
    summary = (
        f"**{counts['result'] + counts['sanity'] - failed} of {counts['result'] + counts['sanity']} claims pass** "
        f"across {len(sections)} chapters: {counts['result']} results, {counts['sanity']} sanity checks, and "
        f"{counts['measurement']} measurements reported without a verdict. **{share:.0f} % of the results** "
        f"({rejected} of {counts['result']}) state the nearest wrong theory and reject it under their own tolerance.\n\n"
    )
    return summary + "\n".join(sections)


def _staged_config(source: Path) -> str:
    text = source.read_text()
    new, count = re.subn(r"(?m)^(\s*execute_notebooks:\s*).*$", r'\1"off"', text)
    if count != 1:
        raise ChapterFailed(f"{source} must set execute.execute_notebooks exactly once (found {count})")
    return new


def stage(paths: BuildPaths = BuildPaths(), book: Path = BOOK, root: Path = ROOT) -> Path:
    """Write ``_build/src``; returns its path. Requires every chapter to be executed."""
    src = paths.root / "src"
    staged_book = src / "book"
    staged_book.mkdir(parents=True, exist_ok=True)
    chapter_stems = {c.stem for c in chapters(book)}
    for stale in staged_book.iterdir():  # pages or notebooks whose source is gone
        if stale.is_file() and not ((book / stale.name).exists() or stale.stem in chapter_stems):
            stale.unlink()
    for chapter in chapters(book):
        if not (staged_book / f"{chapter.stem}.ipynb").exists():
            raise ChapterFailed(f"chapter {chapter.stem} has no executed notebook; run the execute step first")
    for page in sorted(book.glob("*.md")):
        if page.stem in chapter_stems:
            continue
        text = page.read_text()
        if page.name == STATUS_PAGE:
            for marker in (CARDS_MARKER, MARKER, FAULTS_MARKER):
                if marker not in text:
                    raise ChapterFailed(f"{page} lacks the marker {marker}")
            text = (text.replace(CARDS_MARKER, cards_table(paths, book)).replace(MARKER, status_table(paths, book))
                    .replace(FAULTS_MARKER, fault_table()))
        (staged_book / page.name).write_text(text)
    repository = yaml.safe_load((root / "_config.yml").read_text()).get("repository", {}).get("url", "")
    commit = snapshot(root)
    for folder in ("sources", "notebooks"):
        shutil.rmtree(src / "_extra" / folder, ignore_errors=True)
        (src / "_extra" / folder).mkdir(parents=True)
    for chapter in chapters(book):
        shutil.copy2(chapter, src / "_extra" / "sources" / chapter.name)
        staged = staged_book / f"{chapter.stem}.ipynb"
        notebook = nbformat.read(staged, as_version=4)
        nbformat.write(publishable(notebook, repository, commit), src / "_extra" / "notebooks" / staged.name)
        nbformat.write(with_download_links(with_reading_tags(notebook), chapter.stem), staged)
    for extra in sorted(book.glob("*.png")) + sorted(book.glob("*.bib")):
        shutil.copy2(extra, staged_book / extra.name)
    shutil.copytree(root / "_static", src / "_static", dirs_exist_ok=True)  # the site's CSS (claim badges, dark mode)
    shutil.copy2(root / "_toc.yml", src / "_toc.yml")
    (src / "_config.yml").write_text(_staged_config(root / "_config.yml"))
    write_plotly_js(src / "_extra")  # plotly.js for the interactive explorers, served by the site itself (no CDN)
    if not (MATHJAX_NPM / "tex-mml-chtml.js").exists():
        raise ChapterFailed(f"MathJax not found at {MATHJAX_NPM}; run `make mathjax`")
    target = src / "_extra" / "mathjax"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy2(MATHJAX_NPM / "tex-mml-chtml.js", target / "tex-mml-chtml.js")
    for sub in ("input", "output", "ui", "a11y", "adaptors", "sre"):
        if (MATHJAX_NPM / sub).exists():
            shutil.copytree(MATHJAX_NPM / sub, target / sub)
    return src


def _without_tag(notebook: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    copy = nbformat.from_dict(json.loads(json.dumps(notebook)))
    copy.cells = [c for c in copy.cells if tag not in c.get("metadata", {}).get("tags", [])]
    return copy


CHECK_CALL = re.compile(r"\bclaims\.(check_|sanity_|measure\()")
HIDDEN = {"hide-input", "remove-input", "remove-cell"}


def with_reading_tags(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The page reads continuously: cells that state claims are collapsed (``hide-input``: the badges show, the code
    is one click away) and the papermill-injected parameters cell is removed (the footer reports the parameters).
    Idempotent; the downloadable notebooks keep every cell as executed."""
    page = nbformat.from_dict(json.loads(json.dumps(notebook)))
    for cell in page.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags:
            if "remove-cell" not in tags:
                tags.append("remove-cell")
        elif CHECK_CALL.search(cell.source) and not HIDDEN & set(tags):
            tags.append("hide-input")
    return page


def with_download_links(notebook: nbformat.NotebookNode, stem: str) -> nbformat.NotebookNode:
    """The page version: a line under the title linking the executed notebook and the MyST source (idempotent)."""
    page = _without_tag(notebook, DOWNLOAD_TAG)
    links = nbformat.v4.new_markdown_cell(
        f'<p class="chapter-downloads">Download this chapter: <a href="../notebooks/{stem}.ipynb" download>executed '
        f'notebook (.ipynb)</a> · <a href="../sources/{stem}.md" download>MyST source (.md)</a>. Run it locally with '
        f"<code>make chapter NAME={stem}</code>; parameters: <code>quick</code>, <code>seed</code>, "
        "<code>device</code> (first code cell).</p>"
    )
    links.metadata["tags"] = [DOWNLOAD_TAG]
    first_markdown = next(i for i, c in enumerate(page.cells) if c.cell_type == "markdown")
    page.cells.insert(first_markdown + 1, links)
    return page


def snapshot(root: Path = ROOT) -> str:
    """The commit the book is built from: ``$GITHUB_SHA`` in CI, else ``git rev-parse HEAD``, else ``"main"``."""
    import os
    import subprocess

    if os.environ.get("GITHUB_SHA"):
        return os.environ["GITHUB_SHA"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "main"


def publishable(notebook: nbformat.NotebookNode, repository: str, commit: str | None = None) -> nbformat.NotebookNode:
    """The download/launch version: the executed notebook with a first cell that installs the library if missing
    (Colab, Binder without the project installed); it does nothing where ``how_cnns_learn`` imports. The library is
    pinned to ``commit`` (default: :func:`snapshot`), the snapshot the notebook was executed with, not a moving branch.
    Besides the library, a chapter imports only what a Colab-like image has (``tests/test_published_notebooks.py``)."""
    published = _without_tag(_without_tag(notebook, DOWNLOAD_TAG), INSTALL_TAG)
    commit = commit or snapshot()
    source = f"how-cnns-learn @ git+{repository}@{commit}#subdirectory=lib" if repository else "how-cnns-learn"
    install = nbformat.v4.new_code_cell(
        "# Install the book's library where it is missing (e.g. on Colab); no effect where it is installed.\n"
        "try:\n"
        "    import how_cnns_learn  # noqa: F401\n"
        "except ImportError:\n"
        f'    %pip install --quiet "{source}"'
    )
    install.metadata["tags"] = [INSTALL_TAG]
    published.cells.insert(0, install)
    return published


def fault_table(record: Path = ROOT / "_build" / "faults.json") -> str:
    """The fault-injection table from the last ``make faults`` run, or a note that none has run."""
    from .faults import FAULTS, FaultResult, table

    if not record.exists():
        return (
            f"*Fault injection was not run for this build* ({len(FAULTS)} faults are defined; `make faults` runs "
            "them and puts their table here)."
        )
    rows = json.loads(record.read_text())
    return table([FaultResult(**{k: r[k] for k in ("fault", "description", "chapters", "failed_claims", "errors")})
                  for r in rows])
