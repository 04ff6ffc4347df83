"""Reproduction cards: parse the card that opens every chapter, audit it against the chapter's claim record, and
render the table of all cards for the reproduction-status page.

A card is the ``:::{admonition} Reproduction card`` block at the top of a chapter, with these fields in this
order, each introduced by its bold label (see ``book/intro.md``):

``**Original claim**`` · ``**Our statement.**`` · ``**Status:**`` · ``**Claims:**`` · ``**Reconstructed:**`` ·
``**Check first in the paper:**``

The status starts with one of :data:`STATUSES`. The audit requires the card's claim ids to be *exactly* the ids of
the **result** claims the executed chapter recorded: a card cannot cite a claim that does not exist, and no result
goes unlisted. Sanity checks and measurements are not results and are not listed on the card. A claim
listed as ```id` (full mode only)`` may be absent from a quick-mode record, and only from one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .execute import BOOK, BuildPaths, ChapterFailed, chapters

FIELDS = (
    ("original", "**Original claim"),
    ("statement", "**Our statement.**"),
    ("status", "**Status:**"),
    ("claims", "**Claims:**"),
    ("reconstructed", "**Reconstructed:**"),
    ("check_first", "**Check first in the paper:**"),
)
STATUSES = ("[Re]", "partial", "[¬Re]", "extension")
# Seed papers (and the classical result the book starts from), recognised in the "Original claim" field.
PAPERS = (
    ("Pinson, Lenaerts & Ginis 2023", r"Pinson|pinson2023linear"),
    ("Wen & Jacot 2024", r"Wen\s*&\s*Jacot|wen2024frequencies"),
    ("Yu, Zhang & Zhu 2019", r"Yu,\s*Zhang\s*&\s*Zhu|yu2019learning"),
    ("Beaglehole et al. 2023", r"Beaglehole|beaglehole2023mechanism"),
    ("Saxe, McClelland & Ganguli 2014", r"Saxe|saxe2014exact"),
)
_BLOCK = re.compile(r"^:::\{admonition\} Reproduction card\n(?::class: [^\n]*\n)?(.*?)^:::$", re.M | re.S)


class CardError(ChapterFailed):
    """A chapter's reproduction card is missing, malformed, or disagrees with the chapter's claims."""


@dataclass(frozen=True)
class Card:
    chapter: str
    original: str
    statement: str
    status: str  # the full status text; :attr:`verdict` is its leading keyword
    claims: tuple[str, ...]
    reconstructed: str
    check_first: str
    full_mode_only: tuple[str, ...] = ()  # ids written as `id` (full mode only): absent from quick-mode records

    @property
    def verdict(self) -> str:
        return next(s for s in STATUSES if self.status.startswith(s))

    @property
    def papers(self) -> tuple[str, ...]:
        """The seed papers the original claim cites (empty when the chapter is the book's own extension)."""
        return tuple(name for name, pattern in PAPERS if re.search(pattern, self.original))


def read_card(chapter: Path) -> Card:
    """Parse the reproduction card of ``chapter`` (a ``book/*.md`` source); :class:`CardError` names what is wrong."""
    text = chapter.read_text()
    match = _BLOCK.search(text)
    if match is None:
        raise CardError(f"{chapter.stem}: no ':::{{admonition}} Reproduction card' block")
    body = match.group(1)
    starts = []
    for name, label in FIELDS:
        position = body.find(label)
        if position < 0:
            raise CardError(f"{chapter.stem}: the reproduction card lacks the field {label}")
        starts.append((position, name, label))
    if [s[1] for s in sorted(starts)] != [name for name, _ in FIELDS]:
        raise CardError(f"{chapter.stem}: card fields must come in the order {[label for _, label in FIELDS]}")
    starts.sort()
    values: dict[str, str] = {}
    for (position, name, label), following in zip(starts, starts[1:] + [(len(body), "", "")]):
        value = body[position + len(label) : following[0]]
        values[name] = " ".join(value.strip().lstrip(".:").split())
    status = values["status"]
    if not status.startswith(STATUSES):
        raise CardError(f"{chapter.stem}: the status {status[:40]!r} must start with one of {STATUSES}")
    ids = tuple(re.findall(r"`([^`]+)`", values["claims"]))
    full_only = tuple(re.findall(r"`([^`]+)`\s*\(full mode only\)", values["claims"]))
    if not ids:
        raise CardError(f"{chapter.stem}: the card's **Claims:** field lists no claim ids (write them as `id`)")
    if len(set(ids)) != len(ids):
        raise CardError(f"{chapter.stem}: the card lists a claim id twice: {ids}")
    for name in ("original", "statement", "reconstructed", "check_first"):
        if len(values[name]) < 10:
            raise CardError(f"{chapter.stem}: the card's field {dict(FIELDS)[name]} is empty")
    return Card(chapter.stem, values["original"], values["statement"], status, ids, values["reconstructed"],
                values["check_first"], full_only)


def audit(card: Card, record: dict) -> list[str]:
    """Problems between a card and the chapter's executed claim record (empty when they agree exactly)."""
    recorded = [c["id"] for c in record["claims"] if c.get("kind", "result") == "result"]
    quick = bool(record.get("parameters", {}).get("quick", False))
    problems = [f"{card.chapter}: the card cites `{i}`, which the chapter does not check" for i in card.claims
                if i not in recorded and not (quick and i in card.full_mode_only)]
    problems += [f"{card.chapter}: the result claim `{i}` is not listed on the card" for i in recorded
                 if i not in card.claims]
    others = {c["id"] for c in record["claims"] if c.get("kind", "result") != "result"}
    problems += [f"{card.chapter}: the card lists `{i}`, which is a sanity check or a measurement, not a result"
                 for i in card.claims if i in others]
    if not record.get("complete", False):
        problems.append(f"{card.chapter}: the claim record is incomplete (the chapter did not finish)")
    return problems


def _in_reading_order(found: list[Path], book: Path) -> list[Path]:
    """Chapters in the order of ``_toc.yml`` (chapters it does not list go last, by name)."""
    toc = book.parent / "_toc.yml"
    listed = re.findall(r"file:\s*book/([\w-]+)", toc.read_text()) if toc.exists() else []
    rank = {stem: i for i, stem in enumerate(listed)}
    return sorted(found, key=lambda c: (rank.get(c.stem, len(rank)), c.stem))


def _title(chapter: Path) -> str:
    return next(line[2:].strip() for line in chapter.read_text().splitlines() if line.startswith("# "))


def cards_table(paths: BuildPaths = BuildPaths(), book: Path = BOOK) -> str:
    """A MyST list-table of every chapter's card, each audited against its claim record (raises on any problem)."""
    rows, problems, verdicts = [], [], []
    for chapter in _in_reading_order(chapters(book), book):
        card = read_card(chapter)
        record = json.loads((paths.claims / f"{chapter.stem}.json").read_text())
        problems += audit(card, record)
        results = [c for c in record["claims"] if c.get("kind", "result") == "result"]
        passed = sum(c["passed"] for c in results)
        papers = ", ".join(card.papers) or "— (the book's own extension)"
        verdicts.append(card.verdict)
        cells = [f"[{_title(chapter)}]({chapter.stem}.ipynb)", papers, card.verdict, f"{passed}/{len(results)}",
                 card.check_first]
        rows.append("* - " + "\n  - ".join(cells))
    if problems:
        raise CardError("reproduction cards disagree with the executed chapters:\n" + "\n".join(problems))
    summary = ", ".join(f"{verdicts.count(s)} {s}" for s in STATUSES if s in verdicts)
    return (
        f"**{len(rows)} chapters**: {summary}.\n\n"
        "```{list-table}\n:header-rows: 1\n:widths: 28 14 9 9 40\n\n"
        "* - chapter\n  - seed paper\n  - status\n  - results passing\n  - check first in the paper\n"
        + "\n".join(rows)
        + "\n```\n"
    )
