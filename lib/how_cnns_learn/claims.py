"""Named claims: every result the prose states is a measured value checked against theory, *and* against the
nearest wrong theory, which the check must reject.

Three kinds of record, kept apart on the page and in the status table (:data:`KINDS`):

``result``
    theory vs measurement (:meth:`ClaimSet.check_close`, :meth:`~ClaimSet.check_between`,
    :meth:`~ClaimSet.check_equal`). A result names an :class:`Alternative`: the nearest *plausible* wrong answer
    (the FCNN rate instead of s·Φ*, the unmerged width, a factor a plausible bug would give, or "no effect" where
    that is the honest rival), evaluated under the **same tolerance**. The result fails when the measurement misses
    the theory, and also when the alternative passes as well ("cannot tell its theory from …"). The record keeps the
    alternative's *margin*: how far outside the tolerance it lies, in units of the tolerance (> 1 means rejected).
    A result's tolerance also states where it comes from (``tolerance_from``: a derivation, the statistics over
    seeds, the O(η) Euler term); a bound of one's choosing is not a result.
``sanity``
    checks of the construction, of definitions and identities (orthonormal by construction, Parseval, a formula
    evaluated two ways): :meth:`ClaimSet.sanity_close`, :meth:`~ClaimSet.sanity_between`,
    :meth:`~ClaimSet.sanity_equal`. They fail the build like results but are shown apart, in grey, and not
    counted as results.
``measurement``
    a value the chapter reports without a pass/fail verdict (:meth:`ClaimSet.measure`): recorded and glued for
    the prose (``{glue:text}`id```), never typed in by hand.

A chapter makes a :class:`ClaimSet`, states each claim right after the sentence it backs (the cell shows a
one-line badge), and ends with :meth:`ClaimSet.finalize`, which shows the chapter's tables, writes a JSON record to
``$HOW_CNNS_LEARN_CLAIMS_DIR/<chapter>.json`` when that variable is set (also after every claim, marked incomplete,
so that claims broken before a crash are still reported) and raises :class:`ClaimFailure` naming every failed
claim with its measured value and tolerance. Failing at the end shows *all* broken claims of a run at once.

A claim's ``theory`` text may cite an equation of the book by its MyST label in parentheses, ``"eq. (eq-cost)"``.
Badges and tables are published twice: as HTML for Jupyter and Colab, where the citation is a link
``<a class="claim-eqref" href="#equation-eq-cost">`` showing the label, and as MyST markdown for the book, where it is
the ``{eq}`` role: MyST-NB renders that version (``nb_render_markdown_format: myst`` in ``_config.yml``), so Sphinx
shows the equation's number and an unknown label fails the strict build. The status page uses the same role.

Provenance of the reference value, one of :data:`PROVENANCE`:
``paper`` (stated in a seed paper), ``restated`` (stated by a later paper), ``derived`` (derived in
this book), ``recipe`` (an expected number from the research notes' reproduction recipes), ``notebook`` (a number
printed by an author's published notebook, not stated in the paper).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CLAIMS_DIR_ENV",
    "EQREF_CLASS",
    "EQUATION_REF",
    "KINDS",
    "PROVENANCE",
    "Alternative",
    "Claim",
    "ClaimFailure",
    "ClaimSet",
    "binomial_sd",
    "format_value",
    "mean_tolerance",
    "theory_html",
    "theory_markdown",
]

CLAIMS_DIR_ENV = "HOW_CNNS_LEARN_CLAIMS_DIR"
PROVENANCE = ("paper", "restated", "derived", "recipe", "notebook")
KINDS = ("result", "sanity", "measurement")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
EQUATION_REF = re.compile(r"\((eq-[A-Za-z0-9_-]+)\)")  # "(eq-label)" in a claim text: a MyST equation label
EQREF_CLASS = "claim-eqref"


def theory_html(theory: str) -> str:
    """The theory text as HTML: escaped, each ``(eq-label)`` turned into a link to ``#equation-eq-label``."""
    return EQUATION_REF.sub(
        lambda m: f'(<a class="{EQREF_CLASS}" href="#equation-{m[1]}">{m[1]}</a>)', html.escape(theory)
    )


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|$~])")


def _md_escape(text: str) -> str:
    """Plain text for a MyST paragraph or table cell: every markdown punctuation character backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def theory_markdown(theory: str) -> str:
    """The theory text as MyST: escaped, each ``(eq-label)`` turned into the ``{eq}`` role, which Sphinx renders as
    the equation's number in parentheses, linked to it (an unknown label fails the strict build)."""
    parts = EQUATION_REF.split(theory)  # [text, label, text, label, ..., text]
    return "".join(f"{{eq}}`{part}`" if i % 2 else _md_escape(part) for i, part in enumerate(parts))


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


def binomial_sd(p: float, n: int, *, population: int | None = None) -> float:
    """Standard deviation ``√(p(1 − p)/n)`` of a fraction (an accuracy, a share of images) measured on ``n`` items
    whose true probability is ``p``; with ``population`` the items are drawn without replacement from a fixed set of
    that size (hypergeometric correction ``(N − n)/(N − 1)``). ``p = ½`` gives the largest value, ``√(1/(4n))``.

    >>> binomial_sd(0.5, 100)
    0.05
    """
    if not 0.0 <= p <= 1.0 or n < 1:
        raise ValueError(f"binomial_sd needs 0 <= p <= 1 and n >= 1, got p={p}, n={n}")
    if population is not None and not n <= population:
        raise ValueError(f"binomial_sd: n = {n} items cannot be drawn from a population of {population}")
    correction = 1.0 if population is None or population == 1 else (population - n) / (population - 1)
    return float(math.sqrt(p * (1 - p) / n * correction))


def mean_tolerance(values: Sequence[float] | np.ndarray, *, z: float = 3.0) -> float:
    """A derived tolerance for a mean over independent runs: ``z · sd / √n`` (sample sd, ``ddof=1``).

    ``values`` holds one measurement per seed (n ≥ 2). With z = 3 a correct theory fails with probability
    about 0.3 % under a normal approximation of the mean.

    >>> round(mean_tolerance([1.0, 2.0, 3.0]), 4)
    1.7321
    """
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.size < 2:
        raise ValueError(f"mean_tolerance needs at least two values (one per seed), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("mean_tolerance: values must be finite")
    return float(z * arr.std(ddof=1) / math.sqrt(arr.size))


@dataclass(frozen=True)
class Alternative:
    """The nearest plausible wrong theory of a result: a label and the value it predicts for the measurement.

    ``value`` has the form of the claim's ``expected`` (a scalar or an array that broadcasts with ``measured``;
    for :meth:`ClaimSet.check_equal` the discrete result the rival predicts).
    """

    label: str
    value: Any

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError("an alternative needs a label naming the wrong theory it stands for")


@dataclass(frozen=True)
class Claim:
    """One checked claim. ``measured``/``expected`` are scalars or equal-length lists (all must pass).

    ``kind`` is one of :data:`KINDS`. A result also carries its alternative (label, value), the alternative's
    ``margin`` (its distance outside the tolerance, in units of the tolerance; > 1 rejects it; ``None`` for
    exact checks, where any difference rejects) and ``tolerance_from`` (why the tolerance is what it is).
    """

    id: str
    statement: str
    measured: Any
    expected: Any
    tolerance: str
    passed: bool
    theory: str
    provenance: str
    worst: str = ""
    kind: str = "result"
    alternative: str = ""
    alternative_value: Any = None
    alternative_rejected: bool = False
    margin: float | None = None
    tolerance_from: str = ""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Claim:
        """The claim back from one entry of a chapter's JSON record."""
        return cls(**{name: record[name] for name in cls.__dataclass_fields__ if name in record})

    def measured_text(self) -> str:
        """The measured value; for many values, their count and the worst one."""
        if isinstance(self.measured, list) and self.worst:
            return f"{len(self.measured)} values; worst {self.worst}"
        return format_value(self.measured)

    def alternative_text(self, escape: Any = None, label: Any = None) -> str:
        """``'label' (value): rejected, margin 3.2×`` — the rival of a result. ``escape`` formats the plain parts and
        ``label`` the rival's label (which may cite equations), for HTML or MyST; plain text by default."""
        if self.kind != "result":
            return ""
        escape = escape or (lambda text: text)
        label = label or escape
        verdict = "rejected" if self.alternative_rejected else "NOT rejected"
        margin = f", margin {self.margin:.3g}×" if self.margin is not None and math.isfinite(self.margin) else ""
        return f"‘{label(self.alternative)}’ " + escape(f"({format_value(self.alternative_value)}): {verdict}{margin}")

    def summary(self) -> str:
        """One line for logs and error messages."""
        verdict = "PASS" if self.passed else "FAIL"
        worst = f" (worst: {self.worst})" if self.worst else ""
        if self.kind == "measurement":
            return f"[MEASURED] {self.id}: {format_value(self.measured)}"
        line = (
            f"[{verdict}] {self.id}: measured {format_value(self.measured)}{worst}; "
            f"expected {format_value(self.expected)} with {self.tolerance} [{self.provenance}: {self.theory}]"
        )
        if self.kind == "sanity":
            return "[sanity] " + line
        line += f"; alternative {self.alternative_text()}"
        if not self.alternative_rejected:
            line += f" — claim {self.id} cannot tell its theory from ‘{self.alternative}’"
        return line

    def _badge(self, markdown: bool) -> str:
        """The badge as HTML, or as MyST markdown (inline HTML for the colours, ``{eq}`` roles for equations).

        Colours are the site's theme variables (light and dark, ``_static/claims.css``) with light-mode fallbacks, so
        a downloaded notebook shows the same badge without the site's stylesheet."""
        if self.kind == "measurement":
            return ""
        esc, theory = (_md_escape, theory_markdown) if markdown else (html.escape, theory_html)
        code = (lambda v: f"`{v}`") if markdown else (lambda v: f"<code>{html.escape(v)}</code>")
        state = "pass" if self.passed else "fail"
        colour = f"var(--claim-{state}, {_FALLBACK[state]})"
        mark = "✓" if self.passed else "✗"
        worst = f" (worst: {esc(self.worst)})" if self.worst else ""
        sanity = self.kind == "sanity"
        label = "sanity check " if sanity else ""
        border = f"var(--claim-sanity, {_FALLBACK['sanity']})" if sanity and self.passed else colour
        muted = f"color:var(--claim-muted, {_FALLBACK['muted']})"
        body = (
            f'<b style="color:{colour}">{mark} {label}{esc(self.id)}</b> — measured '
            f"{code(format_value(self.measured))}{worst}, expected "
            f"{code(format_value(self.expected))} with {esc(self.tolerance)}"
            f" <span class='claim-theory' style='{muted}'>({esc(self.provenance)}: {theory(self.theory)})</span>"
        )
        if not sanity:
            body += (
                f"<br><span class='claim-alternative' style='{muted}'>rival: {self.alternative_text(esc, theory)}"
                + (f"; tolerance from {theory(self.tolerance_from)}"
                   if self.tolerance_from and self.tolerance != "exact" else "")
                + "</span>"
            )
        css = f"claim-badge claim-{self.kind} claim-{state}"
        size = "0.8em" if sanity else "0.9em"
        opening = (f'<div class="{css}" id="claim-{self.id}" style="border-left:4px solid {border};'
                   f'padding:2px 8px;margin:4px 0;font-size:{size}">')
        # In markdown the body is a paragraph of its own between two raw-HTML blocks, so that MyST parses it.
        return f"{opening}\n\n{body}\n\n</div>" if markdown else f"{opening}{body}</div>"

    def _repr_html_(self) -> str:
        """The badge for Jupyter and Colab (equations cited by label)."""
        return self._badge(markdown=False)

    def _repr_markdown_(self) -> str:
        """The badge for the book: MyST-NB renders it as MyST, so Sphinx numbers and links its ``{eq}`` roles."""
        return self._badge(markdown=True)

    def __repr__(self) -> str:
        return self.summary()

    def _ipython_display_(self) -> None:
        """Show the badge once: at the check itself (see :meth:`ClaimSet._add`), not again as the cell's result."""
        if id(self) in _SHOWN or self.kind == "measurement":
            return
        from IPython.display import publish_display_data

        publish_display_data(
            {"text/html": self._repr_html_(), "text/markdown": self._repr_markdown_(), "text/plain": self.summary()}
        )
        _SHOWN.add(id(self))


_TITLES = (("result", "Results"), ("sanity", "Sanity checks"), ("measurement", "Measurements"))
_FALLBACK = {"pass": "#1a7f37", "fail": "#cf222e", "sanity": "#6e7781", "muted": "#57606a"}  # light mode, ≥ 4.5:1
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


def _numeric_out(arr: np.ndarray, name: str) -> Any:
    return float(arr) if arr.ndim == 0 else _as_list(arr, name)


def _alternative(claim_id: str, alternative: Alternative | tuple[str, Any] | None) -> Alternative:
    if alternative is None:
        raise ValueError(
            f"result claim {claim_id!r} needs an alternative: the nearest plausible wrong theory, as "
            "Alternative(label, value) or (label, value); a check of the construction is a sanity check "
            "(sanity_close / sanity_between / sanity_equal)"
        )
    if isinstance(alternative, Alternative):
        return alternative
    if isinstance(alternative, tuple) and len(alternative) == 2:
        return Alternative(*alternative)
    raise ValueError(f"claim {claim_id!r}: alternative must be Alternative(label, value) or a (label, value) pair")


def _tolerance_from(claim_id: str, text: str | None) -> str:
    if text is None or not str(text).strip():
        raise ValueError(
            f"result claim {claim_id!r} needs tolerance_from: where its tolerance comes from (a derivation, the "
            "statistics over seeds, the O(η) Euler term); report the value with measure() if it has none"
        )
    return str(text)


def _close(measured: Any, expected: Any, rtol: float | None, atol: float | None, claim_id: str):
    """Elementwise ``|m − e| ≤ atol + rtol·|e|``: (m, e broadcast, error, bound, passed)."""
    m = np.asarray(measured, dtype=float)
    e = np.asarray(expected, dtype=float)
    try:
        m_b, e_b = np.broadcast_arrays(m, e)
    except ValueError as err:
        raise ValueError(f"claim {claim_id!r}: measured {m.shape} and expected {e.shape} do not broadcast") from err
    bound = (atol or 0.0) + (rtol or 0.0) * np.abs(e_b)
    error = np.abs(m_b - e_b)
    passed = bool(np.all(np.isfinite(m_b)) and np.all(np.isfinite(e_b)) and np.all(error <= bound))
    return m, e, m_b, e_b, error, bound, passed


def _between(values: np.ndarray, lower: float | None, upper: float | None) -> np.ndarray:
    ok = np.isfinite(values)
    if lower is not None:
        ok &= values >= lower
    if upper is not None:
        ok &= values <= upper
    return ok


def _between_margin(values: np.ndarray, lower: float | None, upper: float | None) -> float:
    """Largest distance of ``values`` outside ``[lower, upper]``, in units of the interval's scale, plus one.

    The scale is the half-width for a two-sided interval and ``|bound|`` (or 1 where the bound is 0) for a
    one-sided one; a value on the boundary has margin 1, inside < 1 (``1 − depth/scale``, floored at 0).
    """
    if lower is not None and upper is not None:
        scale = (upper - lower) / 2 or 1.0
    else:
        bound = lower if lower is not None else upper
        scale = abs(bound) or 1.0  # type: ignore[arg-type]
    outside = np.zeros_like(values)
    if lower is not None:
        outside = np.maximum(outside, lower - values)
    if upper is not None:
        outside = np.maximum(outside, values - upper)
    if np.any(~np.isfinite(values)):
        return math.inf
    if np.any(outside > 0):
        return float(1.0 + outside.max() / scale)
    depth = np.full_like(values, np.inf)
    if lower is not None:
        depth = np.minimum(depth, values - lower)
    if upper is not None:
        depth = np.minimum(depth, upper - values)
    return float(max(0.0, 1.0 - depth.min() / scale))


@dataclass
class ClaimSet:
    """The claims of one chapter. ``chapter`` is the chapter's file stem (it names the record)."""

    chapter: str
    parameters: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)

    # ---------------------------------------------------------------- bookkeeping
    def _add(self, claim: Claim) -> Claim:
        if not _ID.match(claim.id):
            raise ValueError(f"claim id {claim.id!r} must be lowercase letters, digits and '-'")
        if any(c.id == claim.id for c in self.claims):
            raise ValueError(f"claim id {claim.id!r} is used twice in chapter {self.chapter!r}")
        if claim.provenance not in PROVENANCE:
            raise ValueError(f"provenance {claim.provenance!r} of claim {claim.id!r} is not one of {PROVENANCE}")
        if not claim.statement.strip() or (claim.kind != "measurement" and not claim.theory.strip()):
            raise ValueError(f"claim {claim.id!r} needs a statement and the theory it is compared with")
        for name in ("statement", "theory", "alternative", "tolerance_from"):
            if _CONTROL.search(getattr(claim, name)):
                raise ValueError(f"claim {claim.id!r}: its {name} holds a control character (a stray escape?)")
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

    # ---------------------------------------------------------------- shared check bodies
    def _close_claim(self, claim_id, statement, measured, expected, rtol, atol, theory, provenance, kind,
                     alternative, tolerance_from) -> Claim:
        if rtol is None and atol is None:
            raise ValueError(f"claim {claim_id!r}: give rtol and/or atol")
        if (rtol is not None and rtol < 0) or (atol is not None and atol < 0):
            raise ValueError(f"claim {claim_id!r}: tolerances must be >= 0")
        m, e, m_b, e_b, err, bound, passed = _close(measured, expected, rtol, atol, claim_id)
        parts = ([f"rtol {rtol:g}"] if rtol is not None else []) + ([f"atol {atol:g}"] if atol is not None else [])
        i = int(np.nanargmax(np.where(np.isfinite(err), err - bound, np.inf))) if err.size else 0
        worst = ""
        if m_b.size > 1:
            if rtol is not None and e_b.flat[i] != 0:
                worst = f"{m_b.flat[i]:.4g} vs {e_b.flat[i]:.4g}, rel. err {err.flat[i] / abs(e_b.flat[i]):.2g}"
            else:
                worst = f"{m_b.flat[i]:.4g} vs {e_b.flat[i]:.4g}, abs. err {err.flat[i]:.2g}"
        extra: dict[str, Any] = {"kind": kind}
        if kind == "result":
            alt = _alternative(claim_id, alternative)
            _, a, _, a_b, alt_err, alt_bound, alt_passes = _close(measured, alt.value, rtol, atol, claim_id)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(alt_bound > 0, alt_err / alt_bound, np.where(alt_err > 0, np.inf, 0.0))
            margin = float(np.where(np.isfinite(ratio), ratio, np.inf).max()) if ratio.size else 0.0
            extra.update(alternative=alt.label, alternative_value=_numeric_out(a, "alternative"),
                         alternative_rejected=not alt_passes, margin=margin,
                         tolerance_from=_tolerance_from(claim_id, tolerance_from))
            passed = passed and not alt_passes
        return self._add(Claim(claim_id, statement, _numeric_out(m, "measured"), _numeric_out(e, "expected"),
                               " + ".join(parts), passed, theory, provenance, worst, **extra))

    def _between_claim(self, claim_id, statement, measured, lower, upper, theory, provenance, kind, alternative,
                       tolerance_from) -> Claim:
        if lower is None and upper is None:
            raise ValueError(f"claim {claim_id!r}: give lower and/or upper")
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(f"claim {claim_id!r}: lower {lower} > upper {upper}")
        m = np.asarray(measured, dtype=float)
        passed = bool(_between(m, lower, upper).all())
        if lower is None:
            expected = f"≤ {upper:g}"
        elif upper is None:
            expected = f"≥ {lower:g}"
        else:
            expected = f"in [{lower:g}, {upper:g}]"
        worst = f"min {np.nanmin(m):.4g}, max {np.nanmax(m):.4g}" if m.size > 1 else ""
        extra: dict[str, Any] = {"kind": kind}
        if kind == "result":
            alt = _alternative(claim_id, alternative)
            a = np.asarray(alt.value, dtype=float)
            alt_passes = bool(_between(a, lower, upper).all())
            extra.update(alternative=alt.label, alternative_value=_numeric_out(a, "alternative"),
                         alternative_rejected=not alt_passes, margin=_between_margin(a.reshape(-1), lower, upper),
                         tolerance_from=_tolerance_from(claim_id, tolerance_from))
            passed = passed and not alt_passes
        return self._add(Claim(claim_id, statement, _numeric_out(m, "measured"), expected, "bound", passed, theory,
                               provenance, worst, **extra))

    def _equal_claim(self, claim_id, statement, measured, expected, theory, provenance, kind, alternative) -> Claim:
        m, e = _plain(measured), _plain(expected)
        passed = bool(m == e)
        extra: dict[str, Any] = {"kind": kind}
        if kind == "result":
            alt = _alternative(claim_id, alternative)
            a = _plain(alt.value)
            extra.update(alternative=alt.label, alternative_value=a, alternative_rejected=bool(a != m),
                         margin=None, tolerance_from="exact: a discrete result")
            passed = passed and a != m
        return self._add(Claim(claim_id, statement, m, e, "exact", passed, theory, provenance, **extra))

    # ---------------------------------------------------------------- results
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
        alternative: Alternative | tuple[str, Any] | None = None,
        tolerance_from: str | None = None,
        provenance: str = "derived",
    ) -> Claim:
        """A result: pass when ``|measured − expected| ≤ atol + rtol·|expected|`` for every element **and** the
        alternative fails the same test (``|measured − alt| > atol + rtol·|alt|`` for some element).

        ``measured``, ``expected`` and the alternative's value broadcast (e.g. many seeds against one theory
        value). The margin is ``max |measured − alt| / (atol + rtol·|alt|)``.
        """
        return self._close_claim(claim_id, statement, measured, expected, rtol, atol, theory, provenance, "result",
                                 alternative, tolerance_from)

    def check_between(
        self,
        claim_id: str,
        statement: str,
        measured: float | Sequence[float] | np.ndarray,
        *,
        lower: float | None = None,
        upper: float | None = None,
        theory: str,
        alternative: Alternative | tuple[str, Any] | None = None,
        tolerance_from: str | None = None,
        provenance: str = "derived",
    ) -> Claim:
        """A result: pass when every element lies in ``[lower, upper]`` and the alternative's value does not
        (some element of it lies outside). Prefer two-sided intervals derived from the theory."""
        return self._between_claim(claim_id, statement, measured, lower, upper, theory, provenance, "result",
                                   alternative, tolerance_from)

    def check_equal(
        self,
        claim_id: str,
        statement: str,
        measured: Any,
        expected: Any,
        *,
        theory: str,
        alternative: Alternative | tuple[str, Any] | None = None,
        provenance: str = "derived",
    ) -> Claim:
        """A discrete result (an order, a count, a label): pass when it equals the expected one exactly and
        differs from the alternative's prediction."""
        return self._equal_claim(claim_id, statement, measured, expected, theory, provenance, "result", alternative)

    # ---------------------------------------------------------------- sanity checks
    def sanity_close(self, claim_id: str, statement: str, measured: Any, expected: Any, *, rtol: float | None = None,
                     atol: float | None = None, theory: str, provenance: str = "derived") -> Claim:
        """A check of the construction or of an identity (shown apart; no alternative): ``|m − e| ≤ atol + rtol·|e|``."""
        return self._close_claim(claim_id, statement, measured, expected, rtol, atol, theory, provenance, "sanity",
                                 None, None)

    def sanity_between(self, claim_id: str, statement: str, measured: Any, *, lower: float | None = None,
                       upper: float | None = None, theory: str, provenance: str = "derived") -> Claim:
        """A check of the construction or of an identity: every element in ``[lower, upper]``."""
        return self._between_claim(claim_id, statement, measured, lower, upper, theory, provenance, "sanity", None,
                                   None)

    def sanity_equal(self, claim_id: str, statement: str, measured: Any, expected: Any, *, theory: str,
                     provenance: str = "derived") -> Claim:
        """A check of the construction or of an identity: exact equality."""
        return self._equal_claim(claim_id, statement, measured, expected, theory, provenance, "sanity", None)

    # ---------------------------------------------------------------- measurements
    def measure(self, name: str, statement: str, value: Any, *, glue: bool = True) -> Any:
        """Record a value the chapter reports without a verdict, and glue it as ``name`` for the prose
        (``{glue:text}`name:.3f```). Returns ``value``. ``name`` follows the claim-id rules."""
        plain = _plain(value)
        self._add(Claim(name, statement, plain, "", "", True, "", "derived", kind="measurement"))
        if glue:
            from .repro import glue as glue_value  # a no-op where MyST-NB is absent (a launched notebook)

            glue_value(name, value)
        return value

    # ---------------------------------------------------------------- views
    @property
    def failed(self) -> list[Claim]:
        """Claims that did not pass."""
        return [c for c in self.claims if not c.passed]

    def of_kind(self, kind: str) -> list[Claim]:
        """The claims of one of :data:`KINDS`."""
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {KINDS}")
        return [c for c in self.claims if c.kind == kind]

    def table(self, kind: str = "result", markdown: bool = False):  # -> pandas.DataFrame (imported lazily)
        """The claims of one kind as a table (statements are in the badges). Cells are escaped text, HTML or MyST
        markdown; the reference cites its equations (:func:`theory_html`, :func:`theory_markdown`). Results add the
        rival and the tolerance's source."""
        import pandas as pd

        esc, theory = (_md_escape, theory_markdown) if markdown else (html.escape, theory_html)
        rows = []
        for c in self.of_kind(kind):
            if kind == "measurement":
                rows.append({"measurement": esc(c.id), "value": esc(c.measured_text()), "what": esc(c.statement)})
                continue
            row = {
                "claim": esc(c.id),
                "measured": esc(c.measured_text()),
                "expected": esc(format_value(c.expected)),
                "tolerance": esc(c.tolerance),
                "reference": f"{theory(c.theory)} {esc('[' + c.provenance + ']')}",
            }
            if kind == "result":
                row["rival: verdict, margin"] = c.alternative_text(esc, theory)
                row["tolerance from"] = theory(c.tolerance_from)
            row["pass"] = "✓" if c.passed else "✗ FAIL"
            rows.append(row)
        return pd.DataFrame(rows)

    def _tables_markdown(self) -> str:
        """Every non-empty kind as a titled MyST table (the book's rendering of the claims tables)."""
        parts = []
        for kind, title in _TITLES:
            frame = self.table(kind, markdown=True)
            if frame.empty:
                continue
            head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns)
            rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
            parts.append(f"**{title}**\n\n" + head + "\n" + "\n".join(rows))
        return "\n\n".join(parts)

    def _tables_html(self) -> str:
        """The same tables as HTML (Jupyter, Colab)."""
        return "".join(
            f"<p class='claims-table-title'><b>{title}</b></p>" + self.table(kind).style.hide(axis="index").to_html()
            for kind, title in _TITLES
            if self.of_kind(kind)
        )

    def record(self) -> dict[str, Any]:
        """The machine-readable record of this chapter's claims."""
        return {
            "chapter": self.chapter,
            "parameters": self.parameters,
            "n_claims": len(self.claims),
            "n_failed": len(self.failed),
            "n_results": len(self.of_kind("result")),
            "n_sanity": len(self.of_kind("sanity")),
            "n_measurements": len(self.of_kind("measurement")),
            "claims": [asdict(c) for c in self.claims],
        }

    def finalize(self) -> None:
        """Show the tables, write the record (if the executor asked for one), raise if any claim failed."""
        if not self.of_kind("result"):
            raise ClaimFailure(f"chapter {self.chapter!r} states no result claims; every chapter must check its results")
        if _in_notebook():
            from IPython.display import publish_display_data

            publish_display_data({"text/html": self._tables_html(), "text/markdown": self._tables_markdown(),
                                  "text/plain": "\n".join(c.summary() for c in self.claims)})
        else:
            print("\n".join(c.summary() for c in self.claims))
        self._write_record(complete=True)
        if self.failed:
            lines = "\n".join("  " + c.summary() for c in self.failed)
            raise ClaimFailure(
                f"{len(self.failed)} of {len(self.claims)} claims failed in chapter {self.chapter!r}:\n{lines}"
            )
