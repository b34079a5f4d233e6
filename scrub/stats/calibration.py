"""Calibration: claims simulated under a true null, and intervals checked against a precise value.

For each hypothesis H, on a dataset of ``P = slices * n`` rows (the pool):

* **truth**: H scrubbed with every row as a reference example (n' = P, 20x the examples when
  ``slices = 20``), on its own seed: the recovered fraction the small runs estimate;
* **replicates**: the reference rows are slice j of the dataset (the dataset reordered so that
  slice j comes first; the pool is all P rows), scrubbed with seeds ``0 .. seeds-1``;
* **coverage**: the share of replicates whose 95% interval of recovered contains the truth (the
  truth has its own noise, about 1/sqrt(20) of a replicate's, which costs ~0.6 points);
* **false positives**: replicates of one slice are paired, seed 2i against seed 2i + 1, and the
  paired claim "seed 2i improves on seed 2i + 1" (one-sided z at ``alpha``, as
  :func:`scrub.runner.claims.assert_improves` computes it) is tested. Both are the same
  hypothesis, so the null is true: the rate of passes estimates the test's false-positive rate.

>>> report = calibrate(model, dataset, [h], n=100, seeds=20)     # doctest: +SKIP
>>> report.false_positive_rate, report.coverage                   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scrub.stats.paired import difference, recovered, z_quantile

TRUTH_SEED = 1_000_003  # far from the replicates' seeds 0, 1, 2, ...


def reorder(dataset, rows: np.ndarray):
    """A TokenSet of ``dataset``'s rows in the order ``rows`` (features and positions follow)."""
    import torch

    from scrub.data import TokenSet

    idx = torch.as_tensor(np.asarray(rows), dtype=torch.long)
    return TokenSet(
        dataset.tokens[idx],
        dataset.mask[idx],
        {k: v[idx] for k, v in dataset.positions.items()},
        dataset.answers[idx],
        {k: tuple(np.asarray(v, dtype=object)[rows].tolist()) for k, v in dataset.features.items()},
        (*getattr(dataset, "lineage", ()), "reordered"),
    )


@dataclass(frozen=True)
class HypothesisCalibration:
    """One hypothesis's truth, intervals and null claims."""

    hypothesis: str
    truth: float
    truth_se: float
    intervals: int
    covered: int
    claims: int
    false_positives: int


@dataclass(frozen=True)
class Calibration:
    """The figures over all hypotheses (see the module docstring)."""

    n: int
    slices: int
    seeds: int
    alpha: float
    per_hypothesis: tuple[HypothesisCalibration, ...]

    @property
    def claims(self) -> int:
        return sum(h.claims for h in self.per_hypothesis)

    @property
    def false_positive_rate(self) -> float:
        return sum(h.false_positives for h in self.per_hypothesis) / self.claims

    @property
    def intervals(self) -> int:
        return sum(h.intervals for h in self.per_hypothesis)

    @property
    def coverage(self) -> float:
        return sum(h.covered for h in self.per_hypothesis) / self.intervals

    def lines(self) -> list[str]:
        out = [
            f"{'hypothesis':<40} {'truth':>14} {'coverage':>14} {'false positives':>18}",
        ]
        for h in self.per_hypothesis:
            out.append(
                f"{h.hypothesis[:40]:<40} {h.truth:>7.3f} +- {h.truth_se:.3f} "
                f"{h.covered:>5}/{h.intervals:<5} {h.covered / h.intervals:>5.3f} "
                f"{h.false_positives:>5}/{h.claims:<5} {h.false_positives / h.claims:>5.3f}"
            )
        out.append(
            f"n={self.n} per run, truth from {self.n * self.slices} examples; "
            f"false-positive rate at alpha {self.alpha:g}: {self.false_positive_rate:.3f} over "
            f"{self.claims} null claims; coverage of 95% intervals: {self.coverage:.3f} over "
            f"{self.intervals} intervals"
        )
        return out


def calibrate(
    model,
    dataset,
    hypotheses: Sequence,
    *,
    n: int,
    seeds: int,
    slices: int = 20,
    alpha: float = 0.05,
    progress: bool = False,
) -> Calibration:
    """Simulate (see the module docstring); ``dataset`` must have ``slices * n`` rows."""
    from scrub.scrubbing.experiment import scrub_hypothesis

    if len(dataset) != slices * n:
        raise ValueError(f"the dataset needs slices * n = {slices * n} rows, not {len(dataset)}")
    if seeds < 2:
        raise ValueError("seeds must be >= 2 (claims pair seed 2i with 2i + 1)")
    z_alpha = z_quantile(1 - 2 * alpha)  # one-sided critical value
    z95 = z_quantile(0.95)
    views = [reorder(dataset, np.roll(np.arange(len(dataset)), -j * n)) for j in range(slices)]
    out = []
    for h in hypotheses:
        truth = recovered(scrub_hypothesis(h, model, dataset, n=len(dataset), seed=TRUTH_SEED))
        covered = intervals = claims = positives = 0
        for j, view in enumerate(views):
            runs = [scrub_hypothesis(h, model, view, n=n, seed=s) for s in range(seeds)]
            for r in runs:
                e = recovered(r)
                intervals += 1
                covered += abs(e.value - truth.value) <= z95 * e.se
            for a, b in zip(runs[0::2], runs[1::2]):
                d = difference(a, b)
                claims += 1
                positives += d.value - z_alpha * d.se > 0
            if progress:
                print(f"  {h.name}: slice {j + 1}/{slices}", flush=True)
        out.append(
            HypothesisCalibration(
                h.name, truth.value, truth.se, intervals, covered, claims, positives
            )
        )
    return Calibration(n, slices, seeds, alpha, tuple(out))


__all__ = ["Calibration", "HypothesisCalibration", "calibrate", "reorder"]
