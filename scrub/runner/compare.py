"""Compare two stored runs result by result, keyed by hypothesis and settings (not by claim).

Records are first merged into distinct results (several claims storing one result count once).
A result of A is paired with the result of B of the same hypothesis and the same settings; those
left over are paired with a result of the same hypothesis under other settings (in the order they
were stored), and the settings that differ are shown ("n 200 -> 100"). Each pair states the
change of recovered and its SE, ``sqrt(se_a^2 + se_b^2)``: the runs are treated as independent
samples, which over-states the SE when both used the same seed and rows (then identical settings
give identical numbers anyway).

>>> frame = compare_runs(RunDir(Path("runs/a")), RunDir(Path("runs/b")))   # doctest: +SKIP
>>> print("\\n".join(format_comparison(frame)))                             # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from scrub.runner.store import SETTINGS, RunDir, result_identity, settings_of, worst

COLUMNS = [
    "hypothesis",
    "settings",
    "differs",
    "recovered_a",
    "recovered_b",
    "delta",
    "delta_se",
    "outcome_a",
    "outcome_b",
    "status",
]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " -> ".join(map(str, value))
    return str(value)


def distinct_results(records: list[dict]) -> list[dict]:
    """One entry per distinct result (hypothesis, settings, numbers), with the worst outcome."""
    out: dict[str, dict] = {}
    for r in records:
        entry = out.setdefault(
            result_identity(r), {"record": r, "settings": settings_of(r), "outcomes": []}
        )
        entry["outcomes"].append(r.get("outcome") or "?")
    for e in out.values():
        e["outcome"] = worst(e["outcomes"])
    return list(out.values())


def _pairs(a: list[dict], b: list[dict]) -> list[tuple[dict | None, dict | None]]:
    """Same hypothesis and settings first, then same hypothesis, then the unpaired."""
    left_b = list(b)
    pairs: list[tuple[dict | None, dict | None]] = []
    rest_a = []
    for x in a:
        hit = next(
            (
                y
                for y in left_b
                if y["record"].get("hypothesis") == x["record"].get("hypothesis")
                and y["settings"] == x["settings"]
            ),
            None,
        )
        if hit is None:
            rest_a.append(x)
        else:
            left_b.remove(hit)
            pairs.append((x, hit))
    for x in rest_a:
        name = x["record"].get("hypothesis")
        hit = next((y for y in left_b if y["record"].get("hypothesis") == name), None)
        if hit is not None:
            left_b.remove(hit)
        pairs.append((x, hit))
    pairs.extend((None, y) for y in left_b)
    return pairs


def _row(x: dict | None, y: dict | None) -> dict[str, Any]:
    ra = x["record"] if x else {}
    rb = y["record"] if y else {}
    sa, sb = (x or y)["settings"], (y or x)["settings"]
    differs = [f"{k} {_text(sa[k])} -> {_text(sb[k])}" for k in SETTINGS if sa[k] != sb[k]]
    shown = {k: v for k, v in sa.items() if sb[k] == v and v is not None and k != "dataset"}
    row = {
        "hypothesis": ra.get("hypothesis", rb.get("hypothesis")),
        "settings": " ".join(f"{k}={_text(v)}" for k, v in shown.items()),
        "differs": "; ".join(differs) if x and y else "",
        "recovered_a": ra.get("recovered", math.nan),
        "recovered_b": rb.get("recovered", math.nan),
        "outcome_a": x["outcome"] if x else "",
        "outcome_b": y["outcome"] if y else "",
    }
    se_a, se_b = ra.get("recovered_se"), rb.get("recovered_se")
    row["delta"] = row["recovered_b"] - row["recovered_a"] if x and y else math.nan
    if x and y and se_a is not None and se_b is not None:
        row["delta_se"] = math.hypot(float(se_a), float(se_b))
    else:
        row["delta_se"] = math.nan
    if not x:
        row["status"] = "only in B"
    elif not y:
        row["status"] = "only in A"
    else:
        d, se = row["delta"], row["delta_se"]
        moved = abs(d) > 2 * se if math.isfinite(se) else d != 0
        flipped = row["outcome_a"] != row["outcome_b"]
        row["status"] = "changed" if (moved or flipped or differs) else "same"
    return row


def compare_runs(a: RunDir, b: RunDir) -> pd.DataFrame:
    """One row per paired result (see the module docstring) with :data:`COLUMNS`.

    ``status``: ``changed`` (settings differ, the outcome flipped, or recovered moved by more than
    2 SE of the difference), ``same``, ``only in A`` or ``only in B``.
    """
    pairs = _pairs(distinct_results(a.records()), distinct_results(b.records()))
    return pd.DataFrame([_row(x, y) for x, y in pairs], columns=COLUMNS)


def format_comparison(frame: pd.DataFrame) -> list[str]:
    """Lines for a terminal: per pair, hypothesis and settings, A -> B with delta +- SE."""

    def num(v: float) -> str:
        return f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else "-"

    lines = []
    for r in frame.itertuples(index=False):
        change = (
            f"{num(r.delta):>7} +- {num(r.delta_se)}" if math.isfinite(r.delta) else f"{'':>15}"
        )
        lines.append(
            f"{r.status:<10} {r.hypothesis}  [{r.settings}]\n"
            f"{'':<10} recovered {num(r.recovered_a):>6} -> {num(r.recovered_b):<6} "
            f"delta {change}  outcome {r.outcome_a or '-'} -> {r.outcome_b or '-'}"
            + (f"\n{'':<10} settings differ: {r.differs}" if r.differs else "")
        )
    return lines
