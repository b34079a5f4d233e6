"""Claims about scrub results that respect noise, each with a p-value.

A claim passes only when its null hypothesis is rejected: by ``sigmas`` standard errors for the
claims about recovered fractions (one-sided z; ``sigmas=2`` is p <= 0.023), at level ``alpha`` for
the formal tests. A failure is an ``AssertionError`` whose message names the estimate, its SE or
interval, n and the p-value, so pytest reports it as a failed claim (an exception of any other kind
is an error, not a failure). Inside a ``scrub check`` session every claim is recorded with its
p-value; the session reports raw and Holm-adjusted p-values (:mod:`scrub.stats.ledger`).

Comparisons of two results (``assert_improves``, ``assert_similar``) are paired per example when
both were scrubbed on the same reference rows (:func:`scrub.stats.paired.difference`); otherwise
they fall back to independent SEs and the message says so.

>>> assert_recovers(result, at_least=0.8, sigmas=2)               # doctest: +SKIP
>>> assert_improves(with_backup, name_movers_only, sigmas=2)       # doctest: +SKIP
>>> assert_minimal(scrub_setup(scrub), hypothesis, alpha=0.05)     # doctest: +SKIP
"""

from __future__ import annotations

from scrub.stats import ledger
from scrub.stats.paired import Estimate, difference, recovered, upper_tail
from scrub.stats.result import Kind, StatResult


def _describe(result) -> str:
    e = recovered(result)
    return f"{result.hypothesis!r}: recovered {e.value:.3f} +- {e.se:.3f} (SE, n={e.n})"


def _check_se(*pairs: tuple[object, Estimate]) -> None:
    for what, e in pairs:
        if not e.finite:
            raise AssertionError(
                f"{what} has no finite estimate or standard error; use more examples (n > 1) or "
                f"check that clean differs from random"
            )


def _judge(stat: StatResult, passed: bool, message: str, *, alpha: float) -> None:
    ledger.record(stat, alpha=alpha, passed=passed)
    if not passed:
        raise AssertionError(f"{message} (p = {stat.p_value:.3g})")


def _one_sided(kind: Kind, subject: str, e: Estimate, null: float, sign: float, text: str):
    """StatResult of H0 ``sign * (value - null) <= 0``, one-sided z."""
    return StatResult(kind, subject, e.value, e.ci(), upper_tail(sign * e.z(null)), text, e.note)


def assert_recovers(result, at_least: float, *, sigmas: float = 2.0) -> None:
    """Pass iff ``recovered - sigmas * SE >= at_least`` (H0: recovered <= at_least).

    >>> assert_recovers(result, at_least=0.8)   # doctest: +SKIP
    """
    e = recovered(result)
    _check_se((_describe(result), e))
    stat = _one_sided(
        Kind.RECOVERS, result.hypothesis, e, at_least, 1.0, f"recovered <= {at_least:g}"
    )
    lower = e.value - sigmas * e.se
    _judge(
        stat,
        lower >= at_least,
        f"{_describe(result)} is not at least {at_least:g} by {sigmas:g} SE "
        f"(recovered - {sigmas:g} SE = {lower:.3f})",
        alpha=upper_tail(sigmas),
    )


def assert_recovers_at_most(result, at_most: float, *, sigmas: float = 2.0) -> None:
    """Pass iff ``recovered + sigmas * SE <= at_most`` (e.g. "X alone is not enough")."""
    e = recovered(result)
    _check_se((_describe(result), e))
    stat = _one_sided(
        Kind.RECOVERS_AT_MOST, result.hypothesis, e, at_most, -1.0, f"recovered >= {at_most:g}"
    )
    upper = e.value + sigmas * e.se
    _judge(
        stat,
        upper <= at_most,
        f"{_describe(result)} is not at most {at_most:g} by {sigmas:g} SE "
        f"(recovered + {sigmas:g} SE = {upper:.3f})",
        alpha=upper_tail(sigmas),
    )


def assert_recovers_near(result, predicted: float, *, within: float, sigmas: float = 2.0) -> None:
    """Pass iff ``|recovered - predicted| + sigmas * SE <= within``: a prediction holds.

    H0: ``|recovered - predicted| >= within`` (two one-sided z-tests). For predictions from a
    high-level model, with ``within`` argued from how closely the model follows it.
    """
    e = recovered(result)
    _check_se((_describe(result), e))
    stat = StatResult(
        Kind.RECOVERS, f"{result.hypothesis} ~ {predicted:g}", e.value, e.ci(),
        e.p_within(predicted, within), f"|recovered - {predicted:g}| >= {within:g}",
    )  # fmt: skip
    _judge(
        stat,
        abs(e.value - predicted) + sigmas * e.se <= within,
        f"{_describe(result)} is not within {within:g} of the predicted {predicted:g} at "
        f"{sigmas:g} SE",
        alpha=upper_tail(sigmas),
    )


def _pairing(d: Estimate) -> str:
    return "paired per example" if d.paired else d.note


def assert_improves(better, worse, *, by: float = 0.0, sigmas: float = 2.0) -> None:
    """Pass iff ``better`` recovers more than ``worse`` by more than ``by``, by ``sigmas`` SE.

    H0: ``recovered(better) - recovered(worse) <= by``; the SE of the difference is paired when
    both share their reference rows.

    >>> assert_improves(with_backup, name_movers_only)   # doctest: +SKIP
    """
    d = difference(better, worse)
    _check_se((f"the difference of {_describe(better)} and {_describe(worse)}", d))
    subject = f"{better.hypothesis} > {worse.hypothesis}"
    stat = _one_sided(Kind.IMPROVES, subject, d, by, 1.0, f"difference <= {by:g}")
    _judge(
        stat,
        d.value - sigmas * d.se > by,
        f"{_describe(better)} does not improve on {_describe(worse)} by more than {by:g} at "
        f"{sigmas:g} SE (difference {d.value:+.3f} +- {d.se:.3f}, {_pairing(d)})",
        alpha=upper_tail(sigmas),
    )


def assert_similar(a, b, *, within: float, sigmas: float = 2.0) -> None:
    """Pass iff ``|a - b| + sigmas * SE <= within``: the two recover the same, up to ``within``.

    H0: ``|recovered(a) - recovered(b)| >= within`` (two one-sided z-tests). Used for "X does not
    depend on Y": scrubbing Y away changes recovered by less than ``within``.
    """
    d = difference(a, b)
    _check_se((f"the difference of {_describe(a)} and {_describe(b)}", d))
    stat = StatResult(
        Kind.SIMILAR, f"{a.hypothesis} ~ {b.hypothesis}", d.value, d.ci(), d.p_within(0.0, within),
        f"|difference| >= {within:g}", d.note,
    )  # fmt: skip
    _judge(
        stat,
        abs(d.value) + sigmas * d.se <= within,
        f"{_describe(a)} and {_describe(b)} differ by {d.value:+.3f} +- {d.se:.3f} "
        f"({_pairing(d)}), not within {within:g} at {sigmas:g} SE",
        alpha=upper_tail(sigmas),
    )


# -- formal tests (scrub.stats.formal) ----------------------------------------------------------


def scrub_setup(scrub, *, away=None):
    """A :class:`~scrub.stats.formal.Setup` from the pytest ``scrub`` fixture: its model, n and
    seed; the many helper runs of the formal tests are not recorded as results."""
    from scrub.scrubbing.hypothesis import random
    from scrub.stats.formal import Setup

    info = scrub.model().info
    return Setup(lambda h: scrub.run(h, record=False), info.n_layers, info.n_heads, away or random)


def _formal_message(stat: StatResult, what: str) -> str:
    lo, hi = stat.ci
    return (
        f"{what}: estimate {stat.estimate:.3f} (95% CI {lo:.3f} to {hi:.3f}); null "
        f"{stat.null!r} not rejected; {stat.detail}"
    )


def assert_equivalent(setup, hypothesis, *, epsilon: float = 0.1, alpha: float = 0.05) -> None:
    """Pass iff the scrubbed metric is within ``epsilon`` (of clean - random) of the clean one.

    >>> assert_equivalent(scrub_setup(scrub), full_circuit, epsilon=0.1)   # doctest: +SKIP
    """
    from scrub.stats.formal import equivalence

    stat = equivalence(setup, hypothesis, epsilon=epsilon)
    ok = stat.passes(alpha)
    _judge(stat, ok, _formal_message(stat, f"{hypothesis.name!r} is not equivalent"), alpha=alpha)


def assert_localised(setup, hypothesis, *, delta: float = 0.1, alpha: float = 0.05) -> None:
    """Pass iff with the hypothesis's components scrubbed away the metric is within ``delta``
    of random (see :func:`scrub.stats.formal.localisation`)."""
    from scrub.stats.formal import localisation

    stat = localisation(setup, hypothesis, delta=delta)
    ok = stat.passes(alpha)
    _judge(stat, ok, _formal_message(stat, f"{hypothesis.name!r} is not localised"), alpha=alpha)


def assert_minimal(setup, hypothesis, *, nodes=None, k: int = 20, null=None,
                   alpha: float = 0.05) -> None:  # fmt: skip
    """Pass iff every node (or each of ``nodes``) is necessary: scrubbing it away costs more than
    scrubbing away a random node added to the hypothesis (one claim recorded per node)."""
    from scrub.stats.formal import minimality

    bad = []
    for stat in minimality(setup, hypothesis, k=k, nodes=nodes, null=null):
        ledger.record(stat, alpha=alpha, passed=stat.passes(alpha))
        if not stat.passes(alpha):
            bad.append(f"{stat.subject!r}: cost {stat.estimate:.3f}, p = {stat.p_value:.3g}")
    if bad:
        raise AssertionError(
            f"{hypothesis.name!r}: node(s) not necessary at alpha {alpha:g}: {'; '.join(bad)}"
        )


def assert_not_minimal(setup, hypothesis, node: str, *, k: int = 20, null=None,
                       alpha: float = 0.05) -> None:  # fmt: skip
    """Pass iff minimality does *not* reject for ``node``: its cost is not distinguishable from
    a random added node's at level ``alpha``.

    This is the absence of evidence the minimality test can give, not a test of irrelevance: its
    p-value is recorded (as ``retain``) but left out of the Holm family.
    """
    from scrub.stats.formal import minimality

    (stat,) = minimality(setup, hypothesis, k=k, nodes=[node], null=null)
    ok = not stat.passes(alpha)
    ledger.record(stat, alpha=alpha, passed=ok, direction="retain")
    if not ok:
        raise AssertionError(
            f"{hypothesis.name!r}: node {node!r} looks necessary: cost {stat.estimate:.3f}, "
            f"p = {stat.p_value:.3g} <= {alpha:g}; {stat.detail}"
        )


def assert_sufficient(setup, hypothesis, *, k: int = 20, alpha: float = 0.05) -> None:
    """Pass iff the hypothesis recovers more than random hypotheses of its shape (rank p)."""
    from scrub.stats.formal import sufficiency

    if (k + 1) * alpha < 1:
        raise ValueError(f"k={k} random hypotheses cannot reach p <= {alpha:g}: raise k")
    stat = sufficiency(setup, hypothesis, k=k)
    ok = stat.passes(alpha)
    _judge(stat, ok, _formal_message(stat, f"{hypothesis.name!r} is not sufficient"), alpha=alpha)


__all__ = [
    "assert_equivalent",
    "assert_improves",
    "assert_localised",
    "assert_minimal",
    "assert_not_minimal",
    "assert_recovers",
    "assert_recovers_at_most",
    "assert_recovers_near",
    "assert_similar",
    "assert_sufficient",
    "scrub_setup",
]
