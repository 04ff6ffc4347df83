import json

import numpy as np
import pytest

from how_cnns_learn import claims as claims_api


def _set():
    return claims_api.ClaimSet("toy", parameters={"quick": True})


def test_close_passes_and_fails_on_the_stated_tolerance():
    cs = _set()
    assert cs.check_close("a", "x", measured=1.05, expected=1.0, rtol=0.1, theory="t").passed
    assert not cs.check_close("b", "x", measured=1.2, expected=1.0, rtol=0.1, theory="t").passed
    assert cs.check_close("c", "x", measured=[1.0, 1.01], expected=1.0, atol=0.02, theory="t").passed
    bad = cs.check_close("d", "x", measured=[1.0, 1.5], expected=[1.0, 1.0], rtol=0.1, theory="t")
    assert not bad.passed and "1.5" in bad.worst
    assert not cs.check_close("e", "x", measured=np.nan, expected=1.0, atol=1.0, theory="t").passed


def test_between_and_equal():
    cs = _set()
    assert cs.check_between("a", "x", measured=[0.1, 0.2], upper=0.3, theory="t").passed
    assert not cs.check_between("b", "x", measured=0.5, lower=0.6, theory="t").passed
    assert cs.check_equal("c", "x", measured=[np.int64(2), 1, 3], expected=(2, 1, 3), theory="t").passed
    assert not cs.check_equal("d", "x", measured=[1, 2, 3], expected=[2, 1, 3], theory="t").passed


def test_finalize_raises_naming_id_measured_and_tolerance(tmp_path, monkeypatch):
    monkeypatch.setenv(claims_api.CLAIMS_DIR_ENV, str(tmp_path))
    cs = _set()
    cs.check_close("good", "fine", measured=1.0, expected=1.0, rtol=0.01, theory="t")
    cs.check_close("width-too-large", "bad", measured=80.0, expected=73.2, rtol=0.05, theory="Saxe")
    with pytest.raises(claims_api.ClaimFailure) as err:
        cs.finalize()
    message = str(err.value)
    assert "width-too-large" in message and "80" in message and "rtol 0.05" in message and "good" not in message
    record = json.loads((tmp_path / "toy.json").read_text())
    assert record["n_claims"] == 2 and record["n_failed"] == 1


def test_finalize_passes_silently_and_records(tmp_path, monkeypatch):
    monkeypatch.setenv(claims_api.CLAIMS_DIR_ENV, str(tmp_path))
    cs = _set()
    cs.check_between("ok", "fine", measured=0.5, lower=0, upper=1, theory="t", provenance="recipe")
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
    ],
)
def test_malformed_claims_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _set().check_close(statement="s", **kwargs)


def test_duplicate_ids_and_empty_sets_are_errors():
    cs = _set()
    cs.check_between("a", "x", measured=1, upper=2, theory="t")
    with pytest.raises(ValueError, match="used twice"):
        cs.check_between("a", "x", measured=1, upper=2, theory="t")
    with pytest.raises(claims_api.ClaimFailure, match="no claims"):
        _set().finalize()
