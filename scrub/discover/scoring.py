"""ROC AUC of a ranking against a known circuit, and the comparison table.

``roc_auc(scores, positives)`` is the probability that a random positive outranks a random
negative, ties counting one half (the Mann-Whitney U statistic over the number of pairs); every
item of ``scores`` is ranked, items missing from it are not.

>>> roc_auc({"a": 3.0, "b": 2.0, "c": 1.0}, {"a"})
1.0
>>> roc_auc({"a": 1.0, "b": 1.0, "c": 0.0}, {"a"})
0.75
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np

from scrub.errors import ScrubError


def roc_auc(scores: Mapping[Hashable, float], positives) -> float:
    pos = np.array([v for k, v in scores.items() if k in positives], dtype=np.float64)
    neg = np.array([v for k, v in scores.items() if k not in positives], dtype=np.float64)
    if not len(pos) or not len(neg):
        raise ScrubError(
            f"ROC AUC needs positives and negatives among the scored items "
            f"({len(pos)} and {len(neg)})",
            fix="score every site or edge of the model's space",
        )
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


@dataclass(frozen=True)
class Row:
    method: str
    node_auc: float
    edge_auc: float
    seconds: float
    note: str = ""


def format_table(rows: list[Row], width: int = 34) -> str:
    """One line per method; ``width`` for the method column."""
    head = f"{'method':<{width}}{'node AUC':>9}{'edge AUC':>9}{'time s':>9}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.method:<{width}}{r.node_auc:>9.3f}{r.edge_auc:>9.3f}{r.seconds:>9.1f}  {r.note}"
        )
    return "\n".join(lines)
