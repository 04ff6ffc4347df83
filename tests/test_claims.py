import json

import numpy as np
import pytest

from how_cnns_learn import claims as claims_api
from how_cnns_learn.claims import Alternative

WHY = "stated for the test"


def _set():
    return claims_api.ClaimSet("toy", parameters={"quick": True})


def test_close_passes_and_fails_on_the_stated_tolerance():
    cs = _set()
    far = ("rival", 2.0)
    kw = dict(theory="t", alternative=far, tolerance_from=WHY)
    assert cs.check_close("a", "x", measured=1.05, expected=1.0, rtol=0.1, **kw).passed
    assert not cs.check_close("b", "x", measured=1.2, expected=1.0, rtol=0.1, **kw).passed
    assert cs.check_close("c", "x", measured=[1.0, 1.01], expected=1.0, atol=0.02, **kw).passed
    bad = cs.check_close("d", "x", measured=[1.0, 1.5], expected=[1.0, 1.0], rtol=0.1, **kw)
    assert not bad.passed and "1.5" in bad.worst
    assert not cs.check_close("e", "x", measured=np.nan, expected=1.0, atol=1.0, **kw).passed


def test_a_result_fails_when_its_alternative_passes_the_same_tolerance():
    cs = _set()
    claim = cs.check_close("a", "x", measured=1.0, expected=1.0, rtol=0.1, theory="t",
                           alternative=Alternative("FCNN rate", 1.05), tolerance_from=WHY)
    assert not claim.passed and not claim.alternative_rejected
    assert "cannot tell its theory from ‘FCNN rate’" in claim.summary()
    ok = cs.check_close("b", "x", measured=1.0, expected=1.0, rtol=0.1, theory="t",
                        alternative=("FCNN rate", 1.5), tolerance_from=WHY)
    assert ok.passed and ok.alternative_rejected
    assert ok.margin == pytest.approx(0.5 / 0.15)  # |1 − 1.5| / (0.1 · 1.5): in units of the same tolerance
    assert ok.alternative_value == 1.5 and ok.tolerance_from == WHY


def test_between_and_equal_results_with_alternatives():
    cs = _set()
    assert cs.check_between("a", "x", measured=[0.1, 0.2], upper=0.3, theory="t", alternative=("none", 0.6),
                            tolerance_from=WHY).passed
    assert not cs.check_between("b", "x", measured=0.5, lower=0.6, theory="t", alternative=("none", 0.0),
                                tolerance_from=WHY).passed
    inside = cs.check_between("b2", "x", measured=0.5, lower=0.0, upper=1.0, theory="t",
                              alternative=("chance", 0.5), tolerance_from=WHY)
    assert not inside.passed and not inside.alternative_rejected and inside.margin == pytest.approx(0.0)
    outside = cs.check_between("b3", "x", measured=0.5, lower=0.0, upper=1.0, theory="t",
                               alternative=("double", 2.0), tolerance_from=WHY)
    assert outside.passed and outside.margin == pytest.approx(3.0)  # 1 + (2 − 1) / 0.5
    assert cs.check_equal("c", "x", measured=[np.int64(2), 1, 3], expected=(2, 1, 3), theory="t",
                          alternative=("FCNN order", [1, 2, 3])).passed
    same = cs.check_equal("c2", "x", measured=[1, 2, 3], expected=[1, 2, 3], theory="t",
                          alternative=("FCNN order", [1, 2, 3]))
    assert not same.passed and not same.alternative_rejected
    assert not cs.check_equal("d", "x", measured=[1, 2, 3], expected=[2, 1, 3], theory="t",
                              alternative=("no", [3, 2, 1])).passed


def test_sanity_checks_and_measurements_are_kept_apart(tmp_path, monkeypatch):
    monkeypatch.setenv(claims_api.CLAIMS_DIR_ENV, str(tmp_path))
    cs = _set()
    cs.check_close("r", "x", measured=1.0, expected=1.0, rtol=0.1, theory="t", alternative=("rival", 2.0),
                   tolerance_from=WHY)
    assert cs.sanity_close("s", "orthonormal by construction", measured=1.0, expected=1.0, atol=1e-12, theory="t").passed
    assert not cs.sanity_equal("s2", "x", measured=1, expected=2, theory="t").passed
    assert cs.sanity_between("s3", "x", measured=0.5, lower=0, theory="t").passed
    assert cs.measure("phi-star", "Φ* of mode 1", np.float64(5.6)) == 5.6
    assert [c.kind for c in cs.claims] == ["result", "sanity", "sanity", "sanity", "measurement"]
    assert "sanity check" in cs.claims[1]._repr_html_() and cs.claims[-1]._repr_html_() == ""
    with pytest.raises(claims_api.ClaimFailure, match="s2"):
        cs.finalize()
    record = json.loads((tmp_path / "toy.json").read_text())
    assert (record["n_results"], record["n_sanity"], record["n_measurements"]) == (1, 3, 1)
    assert record["claims"][-1]["measured"] == 5.6
    assert list(cs.table("result").columns)[-3:] == ["rival: verdict, margin", "tolerance from", "pass"]


def test_finalize_raises_naming_id_measured_and_tolerance(tmp_path, monkeypatch):
    monkeypatch.setenv(claims_api.CLAIMS_DIR_ENV, str(tmp_path))
    cs = _set()
    kw = dict(alternative=("rival", 10.0), tolerance_from=WHY)
    cs.check_close("good", "fine", measured=1.0, expected=1.0, rtol=0.01, theory="t", **kw)
    cs.check_close("width-too-large", "bad", measured=80.0, expected=73.2, rtol=0.05, theory="Saxe", **kw)
    with pytest.raises(claims_api.ClaimFailure) as err:
        cs.finalize()
    message = str(err.value)
    assert "width-too-large" in message and "80" in message and "rtol 0.05" in message and "good" not in message
    record = json.loads((tmp_path / "toy.json").read_text())
    assert record["n_claims"] == 2 and record["n_failed"] == 1


def test_finalize_passes_silently_and_records(tmp_path, monkeypatch):
    monkeypatch.setenv(claims_api.CLAIMS_DIR_ENV, str(tmp_path))
    cs = _set()
    cs.check_between("ok", "fine", measured=0.5, lower=0, upper=1, theory="t", provenance="recipe",
                     alternative=("rival", 3.0), tolerance_from=WHY)
    cs.finalize()
    assert json.loads((tmp_path / "toy.json").read_text())["claims"][0]["provenance"] == "recipe"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(claim_id="Bad Id", measured=1, expected=1, rtol=0.1, theory="t"), "lowercase"),
        (dict(claim_id="a", measured=1, expected=1, theory="t"), "rtol and/or atol"),
        (dict(claim_id="a", measured=1, expected=1, rtol=0.1, theory="t", provenance="hearsay"), "provenance"),
        (dict(claim_id="a", measured=1, expected=1, rtol=0.1, theory=" "), "theory"),
        (dict(claim_id="a", measured=[1, 2], expected=[1, 2, 3], rtol=0.1, theory="t"), "broadcast"),
        (dict(claim_id="a", measured=1, expected=1, rtol=0.1, theory="G^{\rho}"), "control character"),
    ],
)
def test_malformed_claims_raise(kwargs, match):
    kwargs.setdefault("alternative", ("rival", 2.0))
    kwargs.setdefault("tolerance_from", WHY)
    with pytest.raises(ValueError, match=match):
        _set().check_close(statement="s", **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tolerance_from=WHY), "needs an alternative"),
        (dict(alternative=("rival", 2.0)), "needs tolerance_from"),
        (dict(alternative=("", 2.0), tolerance_from=WHY), "label"),
        (dict(alternative=[2.0], tolerance_from=WHY), "Alternative"),
    ],
)
def test_a_result_needs_a_labelled_alternative_and_the_source_of_its_tolerance(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _set().check_close("a", "s", measured=1.0, expected=1.0, rtol=0.1, theory="t", **kwargs)


def test_mean_tolerance_is_three_standard_errors():
    values = [1.0, 1.2, 0.8, 1.1]
    assert claims_api.mean_tolerance(values) == pytest.approx(3 * np.std(values, ddof=1) / 2)
    with pytest.raises(ValueError, match="at least two"):
        claims_api.mean_tolerance([1.0])


def test_duplicate_ids_and_empty_sets_are_errors():
    cs = _set()
    cs.sanity_between("a", "x", measured=1, upper=2, theory="t")
    with pytest.raises(ValueError, match="used twice"):
        cs.sanity_between("a", "x", measured=1, upper=2, theory="t")
    with pytest.raises(claims_api.ClaimFailure, match="no result claims"):
        cs.finalize()


def test_theory_text_cites_equations_as_links_in_html_and_as_eq_roles_in_myst():
    html = claims_api.theory_html("a < b, eq. (eq-cost) and He et al. Eq. (1)")
    assert html == 'a &lt; b, eq. (<a class="claim-eqref" href="#equation-eq-cost">eq-cost</a>) and He et al. Eq. (1)'
    myst = claims_api.theory_markdown("Φ*_α s_α*, eq. (eq-cost) | 2")
    assert myst == r"Φ\*\_α s\_α\*, eq\. {eq}`eq-cost` \| 2"  # escaped text; Sphinx renders the role as "(19)"


def test_badges_and_tables_are_published_as_html_and_as_myst():
    cs = _set()
    claim = cs.check_close("w", "x", measured=1.0, expected=1.0, rtol=0.1, theory="eq. (eq-w)",
                           alternative=("FCNN |rate|", 2.0), tolerance_from="a *derived* bound")
    md = claim._repr_markdown_()
    assert md.startswith('<div class="claim-badge claim-result claim-pass"') and md.endswith("\n\n</div>")
    assert "{eq}`eq-w`" in md and r"FCNN \|rate\|" in md and r"a \*derived\* bound" in md
    assert 'href="#equation-eq-w"' in claim._repr_html_()
    tables = cs._tables_markdown()
    assert tables.startswith("**Results**") and "| w | 1 | 1 | rtol 0\\.1 |" in tables
    assert "<p class='claims-table-title'><b>Results</b></p>" in cs._tables_html()


def test_binomial_sd_matches_the_sampling_spread_of_a_fraction():
    rng = np.random.default_rng(0)
    draws = rng.binomial(400, 0.3, size=20000) / 400
    assert claims_api.binomial_sd(0.3, 400) == pytest.approx(draws.std(), rel=0.03)  # 20,000 draws: ~0.5 % error
    population = np.r_[np.ones(300), np.zeros(700)]
    subsets = np.array([rng.choice(population, 400, replace=False).mean() for _ in range(5000)])
    assert claims_api.binomial_sd(0.3, 400, population=1000) == pytest.approx(subsets.std(), rel=0.05)
    assert claims_api.binomial_sd(0.5, 100) == 0.05
    with pytest.raises(ValueError, match="0 <= p <= 1"):
        claims_api.binomial_sd(1.5, 10)
    with pytest.raises(ValueError, match="population of 5"):
        claims_api.binomial_sd(0.5, 10, population=5)
