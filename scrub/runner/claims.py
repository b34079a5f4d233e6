"""Claims about scrub results that respect noise.

A claim passes only when it holds by ``sigmas`` standard errors; a failure is an
``AssertionError`` whose message names the value, its SE and the sample size, so pytest reports
it as a failed claim (an exception of any other kind is an error, not a failure).

>>> assert_recovers(result, at_least=0.8, sigmas=2)               # doctest: +SKIP
>>> assert_improves(with_backup, name_movers_only, sigmas=2)       # doctest: +SKIP
"""

from __future__ import annotations

import math


def _value(result) -> tuple[float, float, int, str]:
    return float(result.recovered), float(result.recovered_se), int(result.n), result.hypothesis


def _describe(result) -> str:
    r, se, n, name = _value(result)
    return f"{name!r}: recovered {r:.3f} +- {se:.3f} (SE, n={n})"


def _check_se(*results) -> None:
    for res in results:
        r, se, _, _ = _value(res)
        if not (math.isfinite(r) and math.isfinite(se)):
            raise AssertionError(
                f"{_describe(res)} has no finite estimate or standard error; "
                f"use more examples (n > 1) or check that clean differs from random"
            )


def assert_recovers(result, at_least: float, *, sigmas: float = 2.0) -> None:
    """Pass iff ``recovered - sigmas * SE >= at_least``.

    >>> assert_recovers(result, at_least=0.8)   # doctest: +SKIP
    """
    _check_se(result)
    r, se, _, _ = _value(result)
    lower = r - sigmas * se
    if not lower >= at_least:
        raise AssertionError(
            f"{_describe(result)} is not at least {at_least:g} by {sigmas:g} SE "
            f"(recovered - {sigmas:g} SE = {lower:.3f})"
        )


def assert_recovers_at_most(result, at_most: float, *, sigmas: float = 2.0) -> None:
    """Pass iff ``recovered + sigmas * SE <= at_most`` (e.g. "X alone is not enough")."""
    _check_se(result)
    r, se, _, _ = _value(result)
    upper = r + sigmas * se
    if not upper <= at_most:
        raise AssertionError(
            f"{_describe(result)} is not at most {at_most:g} by {sigmas:g} SE "
            f"(recovered + {sigmas:g} SE = {upper:.3f})"
        )


def _diff(a, b) -> tuple[float, float]:
    """``a - b`` in recovered and its SE, treating the two estimates as independent.

    Two scrubs on the same reference rows are positively correlated, so this SE is, if anything,
    too large: the claims below err on the side of not passing.
    """
    ra, sa, _, _ = _value(a)
    rb, sb, _, _ = _value(b)
    return ra - rb, math.hypot(sa, sb)


def assert_improves(better, worse, *, by: float = 0.0, sigmas: float = 2.0) -> None:
    """Pass iff ``better`` recovers more than ``worse`` by more than ``by``, by ``sigmas`` SE.

    >>> assert_improves(with_backup, name_movers_only)   # doctest: +SKIP
    """
    _check_se(better, worse)
    d, se = _diff(better, worse)
    if not d - sigmas * se > by:
        raise AssertionError(
            f"{_describe(better)} does not improve on {_describe(worse)} by more than {by:g} "
            f"at {sigmas:g} SE (difference {d:+.3f} +- {se:.3f})"
        )


def assert_similar(a, b, *, within: float, sigmas: float = 2.0) -> None:
    """Pass iff ``|a - b| + sigmas * SE <= within``: the two recover the same, up to ``within``.

    Used for "X does not depend on Y": scrubbing Y away changes recovered by less than ``within``.
    """
    _check_se(a, b)
    d, se = _diff(a, b)
    if not abs(d) + sigmas * se <= within:
        raise AssertionError(
            f"{_describe(a)} and {_describe(b)} differ by {d:+.3f} +- {se:.3f}, not within "
            f"{within:g} at {sigmas:g} SE"
        )


__all__ = ["assert_improves", "assert_recovers", "assert_recovers_at_most", "assert_similar"]
