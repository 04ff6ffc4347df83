"""Citations: every paragraph of prose that names a cited work carries its {cite} role, every key resolves in
references.bib, and the repository says how to cite and license the book."""

import re
from pathlib import Path

import jupytext
import pytest
import yaml

from pipeline import execute as ex

ROOT = ex.ROOT
BIB = ROOT / "book" / "references.bib"
# Who is named in prose → the key that must be cited in the same paragraph.
AUTHORS = {
    r"\bPinson\b": "pinson2023linear",
    r"\bWen\s*(&|and)\s*Jacot\b": "wen2024frequencies",
    r"\bYu,?\s*Zhang\s*(&|and)\s*Zhu\b|\bYu et al\.": "yu2019learning",
    r"\bBeaglehole\b": "beaglehole2023mechanism",
    r"\bSaxe\b": "saxe2014exact|saxe2019mathematical",
    r"\bGeirhos\b": "geirhos2019imagenet",
    r"\bGunasekar\b": "gunasekar2018implicit",
    r"\bRadhakrishnan\b": "radhakrishnan2024mechanism|beaglehole2023mechanism",
}
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
PAGES = sorted((ROOT / "book").glob("*.md"))


def _bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,]+),", BIB.read_text(), re.M))


def _prose_paragraphs(page: Path) -> list[str]:
    """Markdown paragraphs of a page (code cells, code fences and maths left out)."""
    if ex.is_chapter(page):
        text = "\n\n".join(c.source for c in jupytext.read(page).cells if c.cell_type == "markdown")
    else:
        text = page.read_text()
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    text = re.sub(r"^\$\$.*?^\$\$", "", text, flags=re.M | re.S)
    text = re.sub(r"^#+ .*$", "", text, flags=re.M)  # titles name papers in plain text (navigation has no roles)
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_every_named_work_is_cited_in_its_paragraph(page: Path):
    keys = _bib_keys()
    problems = []
    for paragraph in _prose_paragraphs(page):
        cited = {k.strip() for group in CITE.findall(paragraph) for k in group.split(",")}
        problems += [f"unknown key {k!r}" for k in cited - keys]
        for pattern, wanted in AUTHORS.items():
            if re.search(pattern, CITE.sub("", paragraph)) and not cited & set(wanted.split("|")):
                problems.append(f"names {pattern!r} without {{cite}}`{wanted}`: {paragraph[:90]!r}")
    assert problems == [], f"{page.stem}:\n" + "\n".join(problems)


def test_the_bibliography_page_and_config_are_wired():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["bibtex_bibfiles"] == ["book/references.bib"]
    assert "file: book/bibliography" in (ROOT / "_toc.yml").read_text()
    assert "```{bibliography}" in (ROOT / "book" / "bibliography.md").read_text()
    assert {"pinson2023linear", "wen2024frequencies", "yu2019learning", "beaglehole2023mechanism",
            "saxe2014exact"} <= _bib_keys()


def test_licence_and_citation_metadata_exist():
    licence = (ROOT / "LICENSE").read_text()
    assert "MIT License" in licence and "CC BY 4.0" in licence
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["title"] and citation["authors"]
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["html"]["use_repository_button"] and config["html"]["use_issues_button"]
