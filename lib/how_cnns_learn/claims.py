"""Named claims: every result the prose states is a measured value checked against theory.

A **claim** is ``(id, statement, measured, expected, tolerance, provenance)``. A chapter makes a
:class:`ClaimSet`, states each claim right after the sentence it backs (the cell shows a one-line
badge), and ends with :meth:`ClaimSet.finalize`, which

1. shows the chapter's claims table (claim, measured, expected, tolerance, pass),
2. writes a JSON record to ``$HOW_CNNS_LEARN_CLAIMS_DIR/<chapter>.json`` when that variable is set
   (the book's executor sets it; the "Reproduction status" page is built from these records). The record
   is also written after every claim, marked incomplete, so that the claims broken before a crash are
   still reported; a broken claim is printed to stderr when it is stated,
3. raises :class:`ClaimFailure` naming every failed claim with its measured value and tolerance.

Failing at the end (not at the first broken claim) is deliberate: the log and the table then show
*all* broken claims of a run at once. The executor also fails a chapter that never calls
``finalize`` (no record), so a claim cannot be skipped silently.

A claim's ``theory`` text may cite an equation of the book by its MyST label in parentheses, ``"eq. (eq-cost)"``.
In the badge and the table it becomes a link ``<a class="claim-eqref" href="#equation-eq-cost">``; the build
(``pipeline.eqrefs``) replaces the label by the equation's number and points the link at the page that defines it.
The status page, written in MyST, cites it with the ``{eq}`` role instead.

Provenance of the reference value, one of :data:`PROVENANCE`:
``paper`` (stated in a seed paper), ``restated`` (stated by a later paper), ``derived`` (derived in
this book), ``recipe`` (an expected number from the research notes' reproduction recipes).
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CLAIMS_DIR_ENV", "EQREF_CLASS", "EQUATION_REF", "PROVENANCE", "Claim", "ClaimFailure", "ClaimSet", "format_value", "theory_html"]

CLAIMS_DIR_ENV = "HOW_CNNS_LEARN_CLAIMS_DIR"
PROVENANCE = ("paper", "restated", "derived", "recipe")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
EQUATION_REF = re.compile(r"\((eq-[A-Za-z0-9_-]+)\)")  # "(eq-label)" in a claim text: a MyST equation label
EQREF_CLASS = "claim-eqref"


def theory_html(theory: str) -> str:
    """The theory text as HTML: escaped, each ``(eq-label)`` turned into a link to ``#equation-eq-label``."""
    return EQUATION_REF.sub(
        lambda m: f'(<a class="{EQREF_CLASS}" href="#equation-{m[1]}">{m[1]}</a>)', html.escape(theory)
    )


class ClaimFailure(AssertionError):
    """Raised by :meth:`ClaimSet.finalize` when at least one claim of the chapter failed."""


def format_value(value: Any) -> str:
    """Compact text for a measured or expected value (lists shortened, floats to 4 significant digits)."""
    if isinstance(value, (list, tuple)):
        if len(value) > 6:
            return "[" + ", ".join(format_value(v) for v in value[:3]) + ", …, " + format_value(value[-1]) + f"] ({len(value)})"
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass(frozen=True)
class Claim:
    """One checked claim. ``measured``/``expected`` are scalars or equal-length lists (all must pass)."""

    id: str
    statement: str
    measured: Any
    expected: Any
    tolerance: str
    passed: bool
    theory: str
    provenance: str
    worst: str = ""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Claim:
        """The claim back from one entry of a chapter's JSON record."""
        return cls(**{name: record[name] for name in cls.__dataclass_fields__ if name in record})

    def measured_text(self) -> str:
        """The measured value; for many values, their count and the worst one."""
        if isinstance(self.measured, list) and self.worst:
            return f"{len(self.measured)} values; worst {self.worst}"
        return format_value(self.measured)

    def summary(self) -> str:
        """One line for logs and error messages."""
        verdict = "PASS" if self.passed else "FAIL"
        worst = f" (worst: {self.worst})" if self.worst else ""
        return (
            f"[{verdict}] {self.id}: measured {format_value(self.measured)}{worst}; "
            f"expected {format_value(self.expected)} with {self.tolerance} [{self.provenance}: {self.theory}]"
        )

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else "#cf222e"
        mark = "✓" if self.passed else "✗"
        worst = f" (worst: {html.escape(self.worst)})" if self.worst else ""
        return (
            f'<div class="claim-badge" id="claim-{self.id}" style="border-left:4px solid {colour};'
            f'padding:2px 8px;margin:4px 0;font-size:0.9em">'
            f'<b style="color:{colour}">{mark} {html.escape(self.id)}</b> — measured '
            f"<code>{html.escape(format_value(self.measured))}</code>{worst}, expected "
            f"<code>{html.escape(format_value(self.expected))}</code> with {html.escape(self.tolerance)}"
            f" <span style='color:#666'>({html.escape(self.provenance)}: {theory_html(self.theory)})</span></div>"
        )

    def __repr__(self) -> str:
        return self.summary()

    def _ipython_display_(self) -> None:
        """Show the badge once: at the check itself (see :meth:`ClaimSet._add`), not again as the cell's result."""
        if id(self) in _SHOWN:
            return
        from IPython.display import publish_display_data

        publish_display_data({"text/html": self._repr_html_(), "text/plain": self.summary()})
        _SHOWN.add(id(self))


_SHOWN: set[int] = set()  # ids of claims whose badge is already on the page (ClaimSet keeps them alive)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples → plain Python values and lists (comparable, JSON-serialisable)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _as_list(value: Any, name: str) -> list[float]:
    arr = np.asarray(value, dtype=float).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return [float(v) for v in arr]


@dataclass
class ClaimSet:
    """The claims of one chapter. ``chapter`` is the chapter's file stem (it names the record)."""

    chapter: str
    parameters: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)

    def _add(self, claim: Claim) -> Claim:
        if not _ID.match(claim.id):
            raise ValueError(f"claim id {claim.id!r} must be lowercase letters, digits and '-'")
        if any(c.id == claim.id for c in self.claims):
            raise ValueError(f"claim id {claim.id!r} is used twice in chapter {self.chapter!r}")
        if claim.provenance not in PROVENANCE:
            raise ValueError(f"provenance {claim.provenance!r} of claim {claim.id!r} is not one of {PROVENANCE}")
        if not claim.statement.strip() or not claim.theory.strip():
            raise ValueError(f"claim {claim.id!r} needs a statement and the theory it is compared with")
        self.claims.append(claim)
        if _in_notebook():  # every badge right after its check, also when a cell makes several
            claim._ipython_display_()
        if not claim.passed:  # visible in the log at once, even if the chapter stops before finalize()
            print(claim.summary(), file=sys.stderr)
        self._write_record(complete=False)
        return claim

    def _write_record(self, complete: bool) -> None:
        target = os.environ.get(CLAIMS_DIR_ENV)
        if not target:
            return
        path = Path(target)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".{self.chapter}.json.tmp"
        tmp.write_text(json.dumps({**self.record(), "complete": complete}, indent=2, default=str))
        tmp.replace(path / f"{self.chapter}.json")

    def check_close(
        self,
        claim_id: str,
        statement: str,
        measured: float | Sequence[float] | np.ndarray,
        expected: float | Sequence[float] | np.ndarray,
        *,
        rtol: float | None = None,
        atol: float | None = None,
        theory: str,
        provenance: str = "derived",
    ) -> Claim:
        """Pass when ``|measured − expected| ≤ atol + rtol·|expected|`` for every element.

        ``measured`` and ``expected`` broadcast (e.g. many seeds against one theory value).
        """
        if rtol is None and atol is None:
            raise ValueError(f"claim {claim_id!r}: give rtol and/or atol")
        if (rtol is not None and rtol < 0) or (atol is not None and atol < 0):
            raise ValueError(f"claim {claim_id!r}: tolerances must be >= 0")
        m = np.asarray(measured, dtype=float)
        e = np.asarray(expected, dtype=float)
        try:
            m_b, e_b = np.broadcast_arrays(m, e)
        except ValueError as err:
            raise ValueError(f"claim {claim_id!r}: measured {m.shape} and expected {e.shape} do not broadcast") from err
        bound = (atol or 0.0) + (rtol or 0.0) * np.abs(e_b)
        err = np.abs(m_b - e_b)
        passed = bool(np.all(np.isfinite(m_b)) and np.all(err <= bound))
        parts = ([f"rtol {rtol:g}"] if rtol is not None else []) + ([f"atol {atol:g}"] if atol is not None else [])
        i = int(np.nanargmax(np.where(np.isfinite(err), err - bound, np.inf))) if err.size else 0
        worst = ""
        if m_b.size > 1:
            if rtol is not None and e_b.flat[i] != 0:
                worst = f"{m_b.flat[i]:.4g} vs {e_b.flat[i]:.4g}, rel. err {err.flat[i] / abs(e_b.flat[i]):.2g}"
            else:
                worst = f"{m_b.flat[i]:.4g} vs {e_b.flat[i]:.4g}, abs. err {err.flat[i]:.2g}"
        measured_out: Any = float(m) if m.ndim == 0 else _as_list(m, "measured")
        expected_out: Any = float(e) if e.ndim == 0 else _as_list(e, "expected")
        return self._add(
            Claim(claim_id, statement, measured_out, expected_out, " + ".join(parts), passed, theory, provenance, worst)
        )

    def check_between(
        self,
        claim_id: str,
        statement: str,
        measured: float | Sequence[float] | np.ndarray,
        *,
        lower: float | None = None,
        upper: float | None = None,
        theory: str,
        provenance: str = "derived",
    ) -> Claim:
        """Pass when every element lies in ``[lower, upper]`` (either bound may be open)."""
        if lower is None and upper is None:
            raise ValueError(f"claim {claim_id!r}: give lower and/or upper")
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(f"claim {claim_id!r}: lower {lower} > upper {upper}")
        m = np.asarray(measured, dtype=float)
        ok = np.isfinite(m)
        if lower is not None:
            ok &= m >= lower
        if upper is not None:
            ok &= m <= upper
        if lower is None:
            expected = f"≤ {upper:g}"
        elif upper is None:
            expected = f"≥ {lower:g}"
        else:
            expected = f"in [{lower:g}, {upper:g}]"
        worst = ""
        if m.size > 1:
            worst = f"min {np.nanmin(m):.4g}, max {np.nanmax(m):.4g}"
        measured_out: Any = float(m) if m.ndim == 0 else _as_list(m, "measured")
        return self._add(
            Claim(claim_id, statement, measured_out, expected, "bound", bool(ok.all()), theory, provenance, worst)
        )

    def check_equal(
        self, claim_id: str, statement: str, measured: Any, expected: Any, *, theory: str, provenance: str = "derived"
    ) -> Claim:
        """Pass when a discrete result (an order, a count, a label) equals the expected one exactly."""
        m, e = _plain(measured), _plain(expected)
        return self._add(Claim(claim_id, statement, m, e, "exact", bool(m == e), theory, provenance))

    @property
    def failed(self) -> list[Claim]:
        """Claims that did not pass."""
        return [c for c in self.claims if not c.passed]

    def table(self):  # -> pandas.DataFrame (pandas imported lazily)
        """The claims as a table: claim, measured, expected, tolerance, reference, pass (statements are in the badges).

        Cells are HTML-escaped text; the reference links its equations (:func:`theory_html`).
        """
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "claim": c.id,
                    "measured": html.escape(c.measured_text()),
                    "expected": html.escape(format_value(c.expected)),
                    "tolerance": html.escape(c.tolerance),
                    "reference": f"{theory_html(c.theory)} [{html.escape(c.provenance)}]",
                    "pass": "✓" if c.passed else "✗ FAIL",
                }
                for c in self.claims
            ]
        )

    def record(self) -> dict[str, Any]:
        """The machine-readable record of this chapter's claims."""
        return {
            "chapter": self.chapter,
            "parameters": self.parameters,
            "n_claims": len(self.claims),
            "n_failed": len(self.failed),
            "claims": [asdict(c) for c in self.claims],
        }

    def finalize(self) -> None:
        """Show the table, write the record (if the executor asked for one), raise if any claim failed."""
        if not self.claims:
            raise ClaimFailure(f"chapter {self.chapter!r} states no claims; every chapter must check its results")
        try:
            from IPython.display import display

            display(self.table().style.hide(axis="index"))
        except ImportError:  # pragma: no cover - IPython is a dependency
            print(self.table().to_string(index=False))
        self._write_record(complete=True)
        if self.failed:
            lines = "\n".join("  " + c.summary() for c in self.failed)
            raise ClaimFailure(
                f"{len(self.failed)} of {len(self.claims)} claims failed in chapter {self.chapter!r}:\n{lines}"
            )
