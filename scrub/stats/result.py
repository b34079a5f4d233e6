"""The outcome of one statistical test, and the Holm adjustment of many.

Every test in :mod:`scrub.stats` states a null hypothesis and returns a :class:`StatResult`: the
estimate, its 95% interval and a p-value. A test *passes* when its null is rejected at the chosen
level (``p <= alpha``): e.g. minimality passes for a node when scrubbing it away costs more than
scrubbing away a node that does not belong.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass


class Kind(enum.Enum):
    """Which test produced a :class:`StatResult`."""

    RECOVERS = "recovers"
    RECOVERS_AT_MOST = "recovers at most"
    IMPROVES = "improves"
    SIMILAR = "similar"
    EQUIVALENCE = "equivalence"
    LOCALISATION = "localisation"
    MINIMALITY = "minimality"
    SUFFICIENCY = "sufficiency"


@dataclass(frozen=True)
class StatResult:
    """``estimate`` with its 95% ``ci`` and the ``p_value`` of the test of ``null``.

    >>> r = StatResult(Kind.MINIMALITY, "s-inhibition", 0.41, (0.35, 0.47), 1e-6, "cost <= null")
    >>> r.passes(0.05)
    True
    """

    kind: Kind
    subject: str
    estimate: float
    ci: tuple[float, float]
    p_value: float
    null: str
    detail: str = ""

    def passes(self, alpha: float = 0.05) -> bool:
        """The null is rejected at level ``alpha`` (a NaN p-value never passes)."""
        return bool(self.p_value <= alpha)

    def to_json(self) -> dict:
        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "kind": self.kind.value,
            "subject": self.subject,
            "estimate": num(self.estimate),
            "ci": [num(x) for x in self.ci],
            "p_value": num(self.p_value),
            "null": self.null,
            "detail": self.detail,
        }


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order.

    The i-th smallest p is multiplied by (m - i + 1), made non-decreasing, and capped at 1;
    rejecting every adjusted p <= alpha keeps the chance of any false rejection <= alpha.
    NaN p-values are left NaN and do not count in m.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    idx = [i for i, p in enumerate(p_values) if math.isfinite(p)]
    order = sorted(idx, key=lambda i: p_values[i])
    m = len(order)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        out[i] = round(running, 15)
    return out


__all__ = ["Kind", "StatResult", "holm"]
