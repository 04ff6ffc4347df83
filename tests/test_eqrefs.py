"""Equation references in claims: labels become the built site's equation numbers, unknown labels fail."""

from pathlib import Path

import pytest

from how_cnns_learn import claims as claims_api
from pipeline import eqrefs
from pipeline.execute import ChapterFailed

EQUATION = '<div class="math notranslate nohighlight" id="equation-{label}">\n<span class="eqno">({number})<a href="#">#</a></span>x</div>'


def _claim_html(theory: str) -> str:
    claims = claims_api.ClaimSet("toy")
    return claims.check_close("toy", "A toy.", measured=1.0, expected=1.0, rtol=0.1, theory=theory,
                              alternative=("rival", 2.0), tolerance_from="stated for the test")._repr_html_()


def test_theory_text_links_its_equation_labels_and_escapes_the_rest():
    text = claims_api.theory_html("a < b, eq. (eq-cost) and He et al. Eq. (1)")
    assert text == 'a &lt; b, eq. (<a class="claim-eqref" href="#equation-eq-cost">eq-cost</a>) and He et al. Eq. (1)'


def test_references_get_the_number_and_the_page_of_their_equation(tmp_path: Path):
    site = tmp_path / "html"
    (site / "book").mkdir(parents=True)
    (site / "book" / "a.html").write_text(EQUATION.format(label="eq-cost", number=19) + _claim_html("eq. (eq-cost)"))
    (site / "book" / "b.html").write_text(_claim_html("see eq. (eq-cost)"))
    (site / "index.html").write_text(_claim_html("(eq-cost)"))
    assert eqrefs.number_references(site) == 3
    assert 'eq. (<a class="claim-eqref" href="#equation-eq-cost">19</a>)' in (site / "book" / "a.html").read_text()
    assert 'href="a.html#equation-eq-cost">19</a>' in (site / "book" / "b.html").read_text()
    assert 'href="book/a.html#equation-eq-cost">19</a>' in (site / "index.html").read_text()
    assert eqrefs.number_references(site) == 0  # idempotent


def test_an_unknown_label_fails_naming_page_and_label_and_writes_nothing(tmp_path: Path):
    site = tmp_path / "html"
    site.mkdir()
    page = site / "a.html"
    page.write_text(EQUATION.format(label="eq-cost", number=2) + _claim_html("eq. (eq-cost), eq. (eq-missing)"))
    before = page.read_text()
    with pytest.raises(ChapterFailed, match=r"a\.html: eq-missing"):
        eqrefs.number_references(site)
    assert page.read_text() == before


def test_status_page_statements_cite_equations_with_the_myst_role():
    from pipeline.stage import _with_equation_roles

    assert _with_equation_roles("width of eq. (eq-widths), see (1)") == "width of eq. {eq}`eq-widths`, see (1)"
