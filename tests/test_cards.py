"""Reproduction cards: every chapter has a complete one, and the audit catches cards that misstate the checks."""

import re
from pathlib import Path

import pytest

from pipeline import cards
from pipeline import execute as ex

CHAPTERS = ex.chapters()

GOOD = """# A chapter

:::{admonition} Reproduction card
:class: note

**Original claim** (Pinson, Lenaerts & Ginis, ICML 2023, abstract) [paper]: "linear CNNs discover ...".

**Our statement.** The toy chapter states something.

**Status:** [Re] on the toy data.

**Claims:** `alpha`, `beta`.

**Reconstructed:** the data set and every setting.

**Check first in the paper:** the definition of the toy quantity.
:::
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "toy.md"
    path.write_text(text)
    return path


def _record(ids, complete=True, quick=False) -> dict:
    return {"claims": [{"id": i, "passed": True} for i in ids], "complete": complete, "parameters": {"quick": quick}}


def test_a_good_card_is_parsed_field_by_field(tmp_path):
    card = cards.read_card(_write(tmp_path, GOOD))
    assert card.claims == ("alpha", "beta")
    assert card.verdict == "[Re]" and card.status == "[Re] on the toy data."
    assert card.papers == ("Pinson, Lenaerts & Ginis 2023",)
    assert card.check_first == "the definition of the toy quantity."
    assert cards.audit(card, _record(["alpha", "beta"])) == []


@pytest.mark.parametrize(
    "edit, message",
    [
        (("**Check first in the paper:** the definition of the toy quantity.\n", ""), "lacks the field"),
        (("**Status:** [Re]", "**Status:** reproduced"), "must start with one of"),
        (("`alpha`, `beta`", "alpha, beta"), "lists no claim ids"),
        (("`alpha`, `beta`", "`alpha`, `alpha`"), "twice"),
        (("**Reconstructed:** the data set and every setting.", "**Reconstructed:**"), "is empty"),
        ((":::{admonition} Reproduction card", ":::{admonition} Card"), "no ':::{admonition} Reproduction card'"),
    ],
)
def test_malformed_cards_are_rejected_with_the_reason(tmp_path, edit, message):
    with pytest.raises(cards.CardError, match=re.escape(message)):
        cards.read_card(_write(tmp_path, GOOD.replace(*edit)))


def test_fields_out_of_order_are_rejected(tmp_path):
    swapped = GOOD.replace("**Status:** [Re] on the toy data.\n\n**Claims:** `alpha`, `beta`.",
                           "**Claims:** `alpha`, `beta`.\n\n**Status:** [Re] on the toy data.")
    with pytest.raises(cards.CardError, match="order"):
        cards.read_card(_write(tmp_path, swapped))


def test_the_audit_names_cited_but_unchecked_and_checked_but_unlisted_claims(tmp_path):
    card = cards.read_card(_write(tmp_path, GOOD))
    problems = cards.audit(card, _record(["alpha", "gamma"]))
    assert any("`beta`, which the chapter does not check" in p for p in problems)
    assert any("`gamma` is not listed" in p for p in problems)
    assert any("incomplete" in p for p in cards.audit(card, _record(["alpha", "beta"], complete=False)))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_every_chapter_has_a_complete_card_whose_claims_appear_in_its_code(chapter: Path):
    card = cards.read_card(chapter)
    source = chapter.read_text()
    templates = [re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(t)) for t in re.findall(r'\bf"([^"]*\{[^"]*)"', source)]
    for claim in card.claims:  # the complete audit, against the executed record, runs when the book is staged
        literal = f'"{claim}"' in source
        assert literal or any(re.fullmatch(t, claim) for t in templates), f"{claim} is not a claim of the chapter"


def test_a_full_mode_only_claim_may_be_missing_from_a_quick_record_only(tmp_path):
    card = cards.read_card(_write(tmp_path, GOOD.replace("`alpha`, `beta`.", "`alpha`, `beta` (full mode only).")))
    assert card.full_mode_only == ("beta",)
    assert cards.audit(card, _record(["alpha"], quick=True)) == []
    assert any("`beta`, which the chapter does not check" in p for p in cards.audit(card, _record(["alpha"])))
