"""ScrubResult: per-example metrics, the recovered fraction and its standard error."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from scrub.scrubbing.tree import Assignment

if TYPE_CHECKING:  # pandas costs a quarter second to import: only where a frame is made
    import pandas as pd


@dataclass(frozen=True)
class Recovered:
    """``(scrubbed - random) / (clean - random)`` two ways, each with its standard error.

    ``ratio_of_means`` uses the means of the three per-example series; its SE comes from the delta
    method. ``mean_of_ratios`` averages per-example ratios (unstable when clean ~ random for some
    example); its SE is the standard error of that mean.
    """

    ratio_of_means: float
    ratio_of_means_se: float
    mean_of_ratios: float
    mean_of_ratios_se: float

    @classmethod
    def from_series(cls, clean: np.ndarray, scrubbed: np.ndarray, random: np.ndarray) -> Recovered:
        a, b = scrubbed - random, clean - random
        n = len(a)
        mb = b.mean()
        r = a.mean() / mb if mb != 0 else math.nan
        if n > 1 and mb != 0:
            cov = np.cov(a, b, ddof=1)
            var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * mb * mb)
            se = math.sqrt(max(var, 0.0))
        else:
            se = math.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(b != 0, a / b, np.nan)
        ok = ratios[np.isfinite(ratios)]
        mor = float(ok.mean()) if len(ok) else math.nan
        mor_se = float(ok.std(ddof=1) / math.sqrt(len(ok))) if len(ok) > 1 else math.nan
        return cls(float(r), se, mor, mor_se)


@dataclass(frozen=True, eq=False)
class ScrubResult:
    """The outcome of scrubbing one hypothesis: per-example values and their summary.

    >>> result.recovered, result.recovered_se          # doctest: +SKIP
    (0.91, 0.02)
    >>> result.to_frame().head()                       # doctest: +SKIP
    """

    hypothesis: str
    metric: str
    clean: np.ndarray
    scrubbed: np.ndarray
    random: np.ndarray
    stats: Recovered
    assignment: Assignment
    settings: Mapping[str, object] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    #: The dataset's feature columns at the reference rows (``example`` i is row ``rows[i]``).
    features: Mapping[str, tuple] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.clean)

    @property
    def recovered(self) -> float:
        return self.stats.ratio_of_means

    @property
    def recovered_se(self) -> float:
        return self.stats.ratio_of_means_se

    def per_example_recovered(self) -> np.ndarray:
        """``(scrubbed - random) / (clean - random)`` per example; NaN where clean == random."""
        return per_example_recovered(self.clean, self.scrubbed, self.random)

    def to_frame(self) -> pd.DataFrame:
        """One row per reference example: its dataset row and feature columns (io, s, order,
        template, ... as the dataset has them), the clean, scrubbed and random metric values and
        the example's own recovered fraction (NaN where its clean equals its random value).

        >>> frame = result.to_frame()                                   # doctest: +SKIP
        >>> frame.groupby("template")["recovered"].median()             # doctest: +SKIP
        """
        import pandas as pd

        ref = self.assignment.rows.get("")
        frame = pd.DataFrame({"example": np.arange(self.n)})
        if ref is not None and len(ref) == self.n:
            frame["row"] = np.asarray(ref)
        for name, values in self.features.items():
            frame[name] = list(values)
        frame["clean"], frame["scrubbed"], frame["random"] = self.clean, self.scrubbed, self.random
        frame["recovered"] = self.per_example_recovered()
        return frame

    def summary(self) -> dict:
        return {
            "hypothesis": self.hypothesis,
            "metric": self.metric,
            "n": self.n,
            "clean": float(self.clean.mean()),
            "scrubbed": float(self.scrubbed.mean()),
            "random": float(self.random.mean()),
            "recovered": self.recovered,
            "recovered_se": self.recovered_se,
            "recovered_se_method": "delta",
            "mean_of_ratios": self.stats.mean_of_ratios,
            "mean_of_ratios_se": self.stats.mean_of_ratios_se,
        }

    def to_json(self) -> dict:
        """Summary, settings, warnings and the per-example values (JSON-ready)."""
        return {
            **self.summary(),
            "settings": dict(self.settings),
            "warnings": list(self.warnings),
            "per_example": {k: getattr(self, k).tolist() for k in ("clean", "scrubbed", "random")},
            # Replay with scrub_hypothesis(..., assignment=Assignment.from_json(doc)).
            "assignment": self.assignment.to_json(),
        }

    def __str__(self) -> str:
        s = self.summary()
        return (
            f"{self.hypothesis}: clean {s['clean']:.3f}  scrubbed {s['scrubbed']:.3f}  "
            f"random {s['random']:.3f}  recovered {s['recovered']:.3f} +- {s['recovered_se']:.3f}"
            f"  (n={self.n}, {self.metric})"
        )


def per_example_recovered(
    clean: np.ndarray, scrubbed: np.ndarray, random: np.ndarray
) -> np.ndarray:
    """Each example's ``(scrubbed - random) / (clean - random)``; NaN where clean == random."""
    b = np.asarray(clean, dtype=float) - np.asarray(random, dtype=float)
    a = np.asarray(scrubbed, dtype=float) - np.asarray(random, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / b, np.nan)


def reference_features(dataset, rows: np.ndarray) -> dict[str, tuple]:
    """The dataset's feature columns at ``rows`` (empty for a dataset without features)."""
    features = getattr(dataset, "features", None) or {}
    return {k: tuple(v[int(i)] for i in rows) for k, v in features.items()}


def cancellation_warnings(
    scrubbed: np.ndarray, clean: np.ndarray, random: np.ndarray
) -> tuple[str, ...]:
    """Warn when per-example values spread widely around the mean (averages hide cancellation)."""
    out = []
    a, b = scrubbed - random, clean - random
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = a / b
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios) > 1 and ratios.std() > max(1.0, abs(ratios.mean())):
        out.append(
            f"per-example recovered fractions spread widely (std {ratios.std():.2f} around mean "
            f"{ratios.mean():.2f}): the average hides examples that cancel; inspect to_frame()"
        )
    return tuple(out)
