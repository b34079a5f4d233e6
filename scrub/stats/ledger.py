"""The claims a pytest session makes: recorded per test, stored per test, adjusted together.

Claim helpers (:mod:`scrub.runner.claims`) call :func:`record`; the pytest plugin opens a page per
test (:func:`begin`), stores it when the test ends (:func:`write`, ``claims/<test>.json`` in the
run directory) and, at the end of the session, adjusts every p-value of the session with Holm's
method (:func:`write_table`: ``claims.csv``) and prints the table (:func:`format_claims`).

Holm's family is every claim whose pass means "null rejected" (``direction == "reject"``); claims
that pass when a test does *not* reject (``assert_not_minimal``) are listed with their raw p only.
Outside a session (no :func:`begin`) recording does nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from scrub.atomic import atomic_path
from scrub.stats.result import StatResult, holm

# One pytest process runs one test at a time (xdist workers are processes), so a module-level
# page is enough; it is keyed by test id so that a stale page is never written to another test.
_pages: dict[str, list[dict[str, Any]]] = {}
_current: str | None = None

COLUMNS = (
    "test", "kind", "subject", "estimate", "ci_low", "ci_high", "p_value", "p_holm", "alpha",
    "direction", "passed", "outcome", "null",
)  # fmt: skip


def begin(test_id: str) -> None:
    """Start recording the claims of test ``test_id``."""
    global _current
    _current = test_id
    _pages[test_id] = []


def record(stat: StatResult, *, alpha: float, passed: bool, direction: str = "reject") -> None:
    """Note one claim of the current test (no-op outside a session)."""
    if _current is None or _current not in _pages:
        return
    doc = stat.to_json()
    lo, hi = doc.pop("ci")
    _pages[_current].append(
        {**doc, "ci_low": lo, "ci_high": hi, "alpha": alpha, "passed": passed,
         "direction": direction}
    )  # fmt: skip


def take(test_id: str) -> list[dict[str, Any]]:
    """The claims test ``test_id`` recorded (and forget them)."""
    global _current
    if _current == test_id:
        _current = None
    return _pages.pop(test_id, [])


def write(run_path: Path, test_id: str, outcome: str, claims: list[dict[str, Any]]) -> None:
    """Store a test's claims as ``claims/<test>.json`` (atomically)."""
    from scrub.runner.store import safe_key

    doc = [{"test": test_id, "outcome": outcome, **c} for c in claims]
    with atomic_path(Path(run_path) / "claims" / f"{safe_key(test_id)}.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=1))


def read(run_path: Path) -> list[dict[str, Any]]:
    """Every stored claim of a run, in test order, with ``p_holm`` over the session's family."""
    folder = Path(run_path) / "claims"
    claims = [c for f in sorted(folder.glob("*.json")) for c in json.loads(f.read_text())]
    family = [i for i, c in enumerate(claims) if c.get("direction") == "reject"]
    adjusted = holm([_p(claims[i]) for i in family])
    for c in claims:
        c["p_holm"] = None
    for i, p in zip(family, adjusted):
        claims[i]["p_holm"] = p if math.isfinite(p) else None
    return claims


def _p(claim: dict[str, Any]) -> float:
    p = claim.get("p_value")
    return math.nan if p is None else float(p)


def write_table(run_path: Path) -> pd.DataFrame | None:
    """Write ``claims.csv`` (raw and Holm-adjusted p-values) when the run recorded claims."""
    if not (Path(run_path) / "claims").is_dir():
        return None
    frame = pd.DataFrame(read(run_path), columns=list(COLUMNS))
    with atomic_path(Path(run_path) / "claims.csv") as tmp:
        frame.to_csv(tmp, index=False)
    return frame


def format_claims(claims: list[dict[str, Any]]) -> list[str]:
    """Fixed-width lines: test, kind, subject, estimate [95% CI], p, Holm p, outcome."""

    def num(x, fmt: str) -> str:
        return format(x, fmt) if isinstance(x, (int, float)) else "-"

    width = max([7, *(len(str(c.get("subject", ""))) for c in claims)])
    width = min(width, 48)
    head = (
        f"{'kind':<16} {'subject':<{width}} {'estimate':>8} {'95% CI':>17} {'p':>9} "
        f"{'p (Holm)':>9}  claim"
    )
    lines = [head, "-" * len(head)]
    for c in claims:
        ci = f"[{num(c.get('ci_low'), '.3f')}, {num(c.get('ci_high'), '.3f')}]"
        verdict = "PASS" if c.get("passed") else "FAIL"
        if c.get("direction") == "retain":  # passes when the test does not reject
            verdict += " (null kept)" if c.get("passed") else " (null rejected)"
        lines.append(
            f"{str(c.get('kind')):<16} {str(c.get('subject'))[:width]:<{width}} "
            f"{num(c.get('estimate'), '8.3f')} {ci:>17} {num(c.get('p_value'), '9.2g')} "
            f"{num(c.get('p_holm'), '9.2g')}  {verdict}"
        )
    return lines


__all__ = ["begin", "format_claims", "read", "record", "take", "write", "write_table"]
