"""Fault injection, quick form: a few library mistakes must each break a named claim (``make faults`` runs all)."""

import pytest

from pipeline import faults


@pytest.mark.parametrize("fault", faults.FAULTS, ids=[f.name for f in faults.FAULTS])
def test_every_fault_still_applies_to_the_library(fault, tmp_path):
    faults._patched_copy(fault, tmp_path)  # raises if the original text is gone or ambiguous


QUICK = ["growth-law-factor-2", "circulant-off-by-one", "balancedness-sign"]


@pytest.mark.slow
@pytest.mark.parametrize("name", QUICK)
def test_a_fault_is_caught_by_a_named_claim(name):
    fault = next(f for f in faults.FAULTS if f.name == name)
    result = faults.run_fault(fault)
    assert result.caught, f"{name} was not caught by a result claim ({result.failed_claims}; errors: {result.errors})"


def test_the_fault_table_says_how_many_were_caught():
    rows = [faults.FaultResult("a", "d", ["ch"], ["ch:x"], []), faults.FaultResult("b", "d", ["ch"], [], []),
            faults.FaultResult("c", "d", ["ch"], ["ch:y (sanity)"], [])]
    text = faults.table(rows)
    assert "caught 1 of 3" in text and text.count("not caught") == 2  # a sanity check alone does not catch a fault
