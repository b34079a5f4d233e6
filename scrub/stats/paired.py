"""Recovered fractions and their differences, paired per example when runs share reference rows.

Every scrub result holds three per-example series on its reference rows: clean ``c``, scrubbed
``s`` and random ``r``. Its recovered fraction is a ratio of means,
``R = mean(s - r) / mean(c - r)``. Two results scrubbed on the same reference rows (same model,
dataset, rows: :func:`shared_reference`) are compared example by example: ``R_a - R_b`` is a smooth
function of four per-example means, and its standard error comes from their joint covariance.

Why the delta method and not a bootstrap: the estimate is a smooth function of means over
n >= 100 examples whose denominators are far from zero (a result whose ``mean(c - r)`` is near 0
has no recovered fraction to speak of), which is where the delta method is accurate; it is
deterministic (no resampling stream to seed), costs one covariance matrix, and is the same
formula as the SE every result already reports. ``benchmarks/calibrate.py`` measures the result:
the coverage of its 95% intervals and the false-positive rate of the one-sided tests built on it.
``tests/test_stats_paired.py`` checks it against a slow, independent jackknife.

>>> d = difference(better, worse)          # doctest: +SKIP
>>> d.value, d.se, d.ci(), d.paired        # doctest: +SKIP
(0.26, 0.02, (0.22, 0.30), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()


def z_quantile(level: float) -> float:
    """The two-sided normal quantile of a ``level`` interval (1.96 for 0.95)."""
    return _NORMAL.inv_cdf(0.5 + level / 2)


def upper_tail(z: float) -> float:
    """P(Z >= z) for a standard normal Z (a one-sided p-value)."""
    return 1.0 - _NORMAL.cdf(z) if math.isfinite(z) else (0.0 if z > 0 else 1.0)


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error; ``paired`` says whether it used per-example pairing.

    >>> Estimate(0.5, 0.1, 200).ci()
    (0.3040036015459947, 0.6959963984540053)
    """

    value: float
    se: float
    n: int
    paired: bool = True
    note: str = ""

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        half = z_quantile(level) * self.se
        return (self.value - half, self.value + half)

    def z(self, null: float = 0.0) -> float:
        """``(value - null) / se``; infinite when the SE is 0 and the value differs."""
        if self.se > 0:
            return (self.value - null) / self.se
        return 0.0 if self.value == null else math.copysign(math.inf, self.value - null)

    def p_within(self, center: float, within: float) -> float:
        """p of H0 ``|value - center| >= within`` against ``|value - center| < within``: the
        larger of two one-sided z-tests (TOST). NaN when the estimate is not finite."""
        if not self.finite:
            return math.nan
        below = upper_tail(self.z(center - within))  # H0: value <= center - within
        above = upper_tail(-self.z(center + within))  # H0: value >= center + within
        return max(below, above)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value) and math.isfinite(self.se)


def ratio_difference(x: np.ndarray, signs: tuple[float, ...]) -> tuple[float, float]:
    """``sum_j sign_j * mean(x[2j]) / mean(x[2j+1])`` and its delta-method SE.

    ``x`` is [2m, n]: m (numerator, denominator) pairs of per-example series, all on the same n
    examples, so their covariance enters the SE.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[1]
    means = x.mean(1)
    num, den = means[0::2], means[1::2]
    if n < 2 or np.any(den == 0):
        return math.nan, math.nan
    value = float(np.sum(np.asarray(signs) * num / den))
    grad = np.empty(len(means))
    grad[0::2] = np.asarray(signs) / den
    grad[1::2] = -np.asarray(signs) * num / den**2
    var = float(grad @ np.cov(x, ddof=1) @ grad) / n
    return value, math.sqrt(max(var, 0.0))


def _series(result) -> tuple[np.ndarray, np.ndarray]:
    """(scrubbed - random, clean - random): numerator and denominator series of recovered."""
    return result.scrubbed - result.random, result.clean - result.random


def recovered(result) -> Estimate:
    """A result's recovered fraction with its delta-method SE (as ``result.recovered_se``)."""
    value, se = ratio_difference(np.stack(_series(result)), (1.0,))
    return Estimate(value, se, result.n)


def shared_reference(a, b) -> str:
    """Why ``a`` and ``b`` cannot be paired per example, or ``""`` when they can.

    They can when they ran on the same model, dataset and pool, on the same reference rows, and
    their clean values agree example by example (the reference rows really are the same prompts).
    """
    sa, sb = dict(a.settings), dict(b.settings)
    for key in ("model", "dataset", "pool", "metric"):
        if sa.get(key) != sb.get(key):
            return f"their {key} differs ({sa.get(key)!r} vs {sb.get(key)!r})"
    ra, rb = a.assignment.rows.get(""), b.assignment.rows.get("")
    if ra is None or rb is None or not np.array_equal(ra, rb):
        return "their reference rows differ"
    if not np.array_equal(a.clean, b.clean):
        return "their clean values differ per example"
    return ""


def difference(a, b) -> Estimate:
    """``recovered(a) - recovered(b)``: paired when they share reference rows, else independent.

    Paired: the delta method over the four per-example series (both numerators and both
    denominators; the two denominators are equal when the runs also share a baseline). Otherwise
    the SEs add in quadrature, which ignores the (usually positive) correlation and is wider;
    ``note`` says why it was not paired.
    """
    why = shared_reference(a, b)
    if not why:
        value, se = ratio_difference(np.stack([*_series(a), *_series(b)]), (1.0, -1.0))
        return Estimate(value, se, a.n, paired=True)
    ea, eb = recovered(a), recovered(b)
    return Estimate(
        ea.value - eb.value,
        math.hypot(ea.se, eb.se),
        min(a.n, b.n),
        paired=False,
        note=f"not paired ({why}): independent SEs",
    )


__all__ = [
    "Estimate",
    "difference",
    "ratio_difference",
    "recovered",
    "shared_reference",
    "upper_tail",
    "z_quantile",
]
