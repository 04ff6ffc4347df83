"""The reproduction-status page: results with their rivals, sanity checks and measurements kept apart, and the
share of results that reject their rival (the build refuses a result without one)."""

import json

import pytest

from how_cnns_learn import claims as claims_api
from pipeline import stage as st
from pipeline.execute import BuildPaths, ChapterFailed

CHAPTER = "---\nkernelspec:\n  name: python3\n---\n\n# Toy\n"


def _record(tmp_path, mutate=None):
    book = tmp_path / "book"
    book.mkdir()
    (book / "toy.md").write_text(CHAPTER)
    cs = claims_api.ClaimSet("toy", parameters={"quick": True, "seed": 0})
    cs.check_close("width", "The width is 73.2 steps.", 72.0, 73.2, rtol=0.05, theory="eq. (eq-width)",
                   alternative=("FCNN rate", 36.6), tolerance_from="Euler O(η)")
    cs.sanity_close("parseval", "Parseval holds.", 1.0, 1.0, atol=1e-12, theory="unitary DFT")
    cs.measure("phi-star", "Φ* of mode 1", 5.657)
    record = {**cs.record(), "complete": True}
    if mutate:
        mutate(record)
    paths = BuildPaths(tmp_path / "build")
    paths.claims.mkdir(parents=True)
    (paths.claims / "toy.json").write_text(json.dumps(record))
    return paths, book


def test_status_page_separates_kinds_and_reports_the_share_of_rejected_rivals(tmp_path):
    paths, book = _record(tmp_path)
    text = st.status_table(paths, book)
    assert "**2 of 2 claims pass**" in text and "1 results, 1 sanity checks, and 1 measurements" in text
    assert "**100 % of the results** (1 of 1)" in text
    assert "‘FCNN rate’ (36.6): rejected, margin" in text and "Euler O(η)" in text
    assert "**Sanity checks**" in text and "**Measurements**" in text and "{eq}`eq-width`" in text


def test_status_page_refuses_a_result_whose_rival_was_not_rejected(tmp_path):
    def unrejected(record):
        record["claims"][0]["alternative_rejected"] = False

    paths, book = _record(tmp_path, unrejected)
    with pytest.raises(ChapterFailed, match="does not reject its rival ‘FCNN rate’"):
        st.status_table(paths, book)


def test_claim_cells_are_collapsed_and_the_injected_parameters_removed_on_the_page():
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("quick = True", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("quick = False", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("x = run()"),
        nbformat.v4.new_code_cell('claims.check_close("a", ...)'),
        nbformat.v4.new_code_cell('claims.measure("b", "s", 1.0)'),
        nbformat.v4.new_code_cell('claims.sanity_equal("c", ...)', metadata={"tags": ["remove-input"]}),
    ]
    page = st.with_reading_tags(nb)
    assert [c.metadata.get("tags", []) for c in page.cells] == [
        ["parameters"], ["injected-parameters", "remove-cell"], [], ["hide-input"], ["hide-input"], ["remove-input"]]
    assert st.with_reading_tags(page) == page  # idempotent
    assert nb.cells[3].metadata.get("tags", []) == []  # the executed notebook itself is untouched
