"""Formal tests of a circuit hypothesis, in causal-scrubbing semantics (after Shi et al. 2024).

Shi et al., "Hypothesis testing the circuit hypothesis in LLMs" (2024), test a circuit's
equivalence to the model, its localisation, its minimality, and its sufficiency against random
circuits. Here each test is stated with scrub's own operations: a hypothesis is scrubbed, a node
is *scrubbed away* by drawing its input with the ``away`` rule (``random`` by default; e.g.
``agree("template")`` when all-position parts must keep the layout) instead of its own rule.
``R(H)`` is the recovered fraction of hypothesis H. All runs of one :class:`Setup` share the
model, dataset, reference rows and seed, so every comparison is paired per example
(:mod:`scrub.stats.paired`). Random choices (random nodes, random hypotheses) come from child
streams of the run's seed: the same seed gives the same tests, bit for bit.

* :func:`equivalence`: H0 ``|R(H) - 1| >= epsilon`` (the scrubbed metric is at least ``epsilon``
  of the clean-random gap away from the clean model's). Two one-sided z-tests (TOST) on the
  delta-method SE; p is the larger of the two one-sided p-values.
* :func:`localisation`: the complement of H (every component of H scrubbed away together, on its
  direct path to the output; everything else kept from the reference) should fall to random.
  H0 ``|R(complement)| >= delta``; TOST as above. Paths from H's components through components
  outside H into the output stay kept: the engine patches a node into its parent's slot only.
* :func:`minimality`: for each node v, its cost ``R(H) - R(H with v scrubbed away)`` (paired SE)
  against the costs of K random nodes, each a random head at one of H's positions added (rule
  ``keep``) to a random slot of H and then scrubbed away (Shi et al.'s inflated circuit). H0: v's
  cost is a draw from that null distribution (plus v's own estimation noise) or below it.
  p = P(Z >= (cost - m) / sqrt(s^2 (1 + 1/K) + se^2)), with m, s the null costs' mean and SD and
  se the SE of v's paired cost: a one-sided normal prediction test. v's own SE is in the scale
  because most random nodes are structurally idle (a head at IO feeding a query read at END
  costs exactly 0), so s alone would call any noisy positive cost necessary. Normal rather than
  Student t: for small K a little anti-conservative; K >= 20 is advised.
* :func:`sufficiency`: R(H) against R of K random hypotheses of H's shape (same nodes, slots,
  positions, rules and layers; each head replaced by a random other head of its layer). H0: H is
  exchangeable with the random hypotheses. p = (1 + #{k: R_k >= R(H)}) / (K + 1), the rank
  (permutation) p-value: exact under H0, and at least 1 / (K + 1).

>>> setup = Setup.on(model, dataset, n=200, seed=0)                  # doctest: +SKIP
>>> [r.p_value for r in minimality(setup, hypothesis, k=20)]         # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from scrub.errors import ScrubError
from scrub.scrubbing.hypothesis import OUTPUT, Head, Hypothesis, Node, Rule, keep, node, random
from scrub.scrubbing.tree import child_rng
from scrub.stats.paired import Estimate, difference, recovered, upper_tail
from scrub.stats.result import Kind, StatResult

#: Child streams of the seed (the sampler uses the seed itself, the baseline stream 1).
MINIMALITY_STREAM = 2
SUFFICIENCY_STREAM = 3
#: Draws of a random node or hypothesis that fail validation (e.g. a head claimed twice for one
#: slot) are redrawn; this many failures in a row is an error.
MAX_REDRAWS = 200


@dataclass(frozen=True)
class Setup:
    """What the tests need: ``run(hypothesis) -> ScrubResult`` on one model, dataset, n and seed,
    the model's shape (for random heads), and the rule that scrubs a node away."""

    run: Callable[[Hypothesis], object]
    n_layers: int
    n_heads: int
    away: Rule = random

    @classmethod
    def on(cls, model, dataset, *, n: int = 200, seed: int = 0, metric: str = "logit-diff",
           away: Rule = random) -> Setup:  # fmt: skip
        """Scrub on ``model`` and ``dataset``; identical hypotheses are scrubbed once."""
        from scrub.scrubbing.experiment import scrub_hypothesis

        memo: dict[Hypothesis, object] = {}

        def run(h: Hypothesis):
            if h not in memo:
                memo[h] = scrub_hypothesis(h, model, dataset, n=n, seed=seed, metric=metric)
            return memo[h]

        return cls(run, model.info.n_layers, model.info.n_heads, away)

    def seed_of(self, h: Hypothesis) -> int:
        return int(self.run(h).settings.get("seed", 0))


# -- hypothesis transforms -------------------------------------------------------------------------


def _rebuild(h: Hypothesis, name: str, nodes, **options) -> Hypothesis:
    kw = {"output_other": h.output_other, "description": h.description, "dataset": h.dataset}
    return Hypothesis(name, nodes, **{**kw, **options})


def scrubbed_away(h: Hypothesis, name: str, away: Rule = random) -> Hypothesis:
    """``h`` with node ``name``'s input drawn by ``away`` (its subtree then explains nothing)."""
    h.node(name)  # KeyError for an unknown node
    nodes = [replace(n, rule=away) if n.name == name else n for n in h.nodes]
    return _rebuild(h, f"{h.name} / {name} scrubbed away", nodes)


def complement(h: Hypothesis, away: Rule = random) -> Hypothesis:
    """Every component of ``h`` in one node drawn by ``away``; everything else kept.

    A component listed at all positions absorbs its copies at named positions (one patch each).
    """
    comps = list(dict.fromkeys(c for n in h.nodes for c in n.components))
    everywhere = {replace(c, position=None) for c in comps if c.position is None}
    comps = [c for c in comps if c.position is None or replace(c, position=None) not in everywhere]
    if not comps:
        raise ScrubError(f"hypothesis {h.name!r} has no components", fix="add nodes to it")
    body = node("hypothesis components", comps, feeds=OUTPUT, rule=away)
    return _rebuild(h, f"{h.name} complement", [body], output_other=keep)


def with_node(h: Hypothesis, extra: Node) -> Hypothesis:
    """``h`` plus one node (an inflated hypothesis)."""
    return _rebuild(h, f"{h.name} + {extra.name}", [*h.nodes, extra])


def _positions(h: Hypothesis) -> list[str | None]:
    return sorted({c.position for n in h.nodes for c in n.components}, key=str)


def random_node(h: Hypothesis, n_layers: int, n_heads: int, rng: np.random.Generator) -> Node:
    """A random head, not in ``h`` at that position, feeding a random slot of ``h`` it can feed.

    Parents: the output (slot resid, the head at END when ``h`` uses END) or a node of heads only
    (slot q, k or v; the new head's layer is below the node's last head layer). Its position is
    one of ``h``'s positions; its rule is ``keep`` (it claims to matter).
    """
    taken = {c for n in h.nodes for c in n.components}
    parents: list[tuple[str, int]] = [(OUTPUT, n_layers)]
    for n in h.nodes:
        # Only all-head nodes: their q, k, v slots are what a random head can feed.
        if all(isinstance(c, Head) for c in n.components):
            top = max(c.layer for c in n.components)
            if top > 0:
                parents.append((n.name, top))
    positions = _positions(h)
    parent, top = parents[rng.integers(len(parents))]
    slot = "" if parent == OUTPUT else "." + "qkv"[rng.integers(3)]
    layer, head = int(rng.integers(top)), int(rng.integers(n_heads))
    position = positions[rng.integers(len(positions))] if positions else None
    if parent == OUTPUT and "END" in positions:
        position = "END"  # only END's residual reaches the metric directly
    comp = Head(layer, head, position)
    if comp in taken or replace(comp, position=None) in taken:
        raise ScrubError(f"{comp} is already in the hypothesis")  # redrawn by the caller
    name = f"random {comp} -> {parent}{slot}"
    return node(name, comp, feeds=f"{parent}{slot}" if slot else OUTPUT, rule=keep)


def random_shape(h: Hypothesis, n_heads: int, rng: np.random.Generator, k: int) -> Hypothesis:
    """``h`` with every head replaced by a random head of the same layer (distinct within a node);
    nodes, slots, positions, rules and non-head components unchanged."""
    nodes = []
    for n in h.nodes:
        comps = list(n.components)
        groups: dict[tuple[int, str | None], list[int]] = {}
        for i, c in enumerate(comps):
            if isinstance(c, Head):
                groups.setdefault((c.layer, c.position), []).append(i)
        for (layer, position), idx in groups.items():
            picks = rng.choice(n_heads, size=len(idx), replace=False)
            for i, hd in zip(idx, picks):
                comps[i] = Head(layer, int(hd), position)
        nodes.append(replace(n, components=tuple(comps)))
    return _rebuild(h, f"{h.name} (random shape {k})", nodes)


def _draw_valid(setup: Setup, make: Callable[[], Hypothesis]):
    """Draw until the hypothesis validates; returns it with its result."""
    for _ in range(MAX_REDRAWS):
        try:
            candidate = make()
            return candidate, setup.run(candidate)
        except ScrubError:
            continue
    raise ScrubError(
        f"no valid random draw in {MAX_REDRAWS} attempts",
        fix="check that the hypothesis leaves heads to draw (a larger model, fewer nodes)",
    )


# -- the tests ------------------------------------------------------------------------------------


def equivalence(setup: Setup, h: Hypothesis, *, epsilon: float = 0.1) -> StatResult:
    """Estimate ``R(H) - 1``; H0 ``|R(H) - 1| >= epsilon``; TOST p (see the module docstring)."""
    r = recovered(setup.run(h))
    gap = Estimate(r.value - 1.0, r.se, r.n)
    return StatResult(
        Kind.EQUIVALENCE,
        h.name,
        gap.value,
        gap.ci(),
        gap.p_within(0.0, epsilon),
        f"|recovered - 1| >= {epsilon:g}",
        f"recovered {r.value:.3f} +- {r.se:.3f} (n={r.n})",
    )


def localisation(setup: Setup, h: Hypothesis, *, delta: float = 0.1) -> StatResult:
    """Estimate ``R(complement of H)``; H0 ``|R| >= delta``; TOST p."""
    c = recovered(setup.run(complement(h, setup.away)))
    return StatResult(
        Kind.LOCALISATION,
        h.name,
        c.value,
        c.ci(),
        c.p_within(0.0, delta),
        f"|recovered of the complement| >= {delta:g}",
        f"H's components scrubbed away ({setup.away}), the rest kept: recovered "
        f"{c.value:.3f} +- {c.se:.3f}",
    )


def null_costs(setup: Setup, h: Hypothesis, *, k: int = 20) -> np.ndarray:
    """Costs of scrubbing away K random nodes, each added to ``h`` (minimality's null sample)."""
    rng = child_rng(setup.seed_of(h), MINIMALITY_STREAM)
    costs = []
    for _ in range(k):
        inflated, result = _draw_valid(
            setup, lambda: with_node(h, random_node(h, setup.n_layers, setup.n_heads, rng))
        )
        extra = inflated.nodes[-1].name
        costs.append(difference(result, setup.run(scrubbed_away(inflated, extra, setup.away))))
    return np.array([c.value for c in costs])


def minimality(
    setup: Setup,
    h: Hypothesis,
    *,
    k: int = 20,
    nodes: Sequence[str] | None = None,
    null: np.ndarray | None = None,
) -> list[StatResult]:
    """One test per node (all, or ``nodes``): is scrubbing it away costlier than the null's?

    ``null`` reuses a sample of :func:`null_costs` (e.g. one sample for several hypotheses that
    differ by one added node).
    """
    null = null_costs(setup, h, k=k) if null is None else np.asarray(null)
    m, s = float(null.mean()), float(null.std(ddof=1)) if len(null) > 1 else math.nan
    base = setup.run(h)
    out = []
    for name in nodes if nodes is not None else [n.name for n in h.nodes]:
        cost = difference(base, setup.run(scrubbed_away(h, name, setup.away)))
        scale = math.sqrt(s**2 * (1 + 1 / len(null)) + cost.se**2)
        z = (cost.value - m) / scale if scale > 0 else math.copysign(math.inf, cost.value - m)
        out.append(
            StatResult(
                Kind.MINIMALITY,
                name,
                cost.value,
                cost.ci(),
                upper_tail(z),
                "its cost is no larger than a random added node's",
                f"cost of scrubbing it away {cost.value:.3f} +- {cost.se:.3f}; {len(null)} random "
                f"nodes cost {m:.3f} +- {s:.3f} (mean +- SD)",
            )
        )
    return out


def sufficiency(setup: Setup, h: Hypothesis, *, k: int = 20) -> StatResult:
    """Where R(H) falls among K random hypotheses of its shape; rank p (module docstring)."""
    rng = child_rng(setup.seed_of(h), SUFFICIENCY_STREAM)
    mine = recovered(setup.run(h))
    others = np.array(
        [
            recovered(_draw_valid(setup, lambda i=i: random_shape(h, setup.n_heads, rng, i))[1])
            for i in range(k)
        ]
    )
    others = np.array([o.value for o in others])
    gap = Estimate(
        mine.value - float(others.mean()),
        math.sqrt(mine.se**2 + float(others.var(ddof=1)) / k) if k > 1 else math.nan,
        mine.n,
    )
    p = (1 + int(np.sum(others >= mine.value))) / (k + 1)
    return StatResult(
        Kind.SUFFICIENCY,
        h.name,
        gap.value,
        gap.ci(),
        p,
        "H is exchangeable with random hypotheses of its shape",
        f"recovered {mine.value:.3f}; {k} random hypotheses: median {np.median(others):.3f}, "
        f"max {others.max():.3f}",
    )


TESTS = ("equivalence", "localisation", "minimality", "sufficiency")


__all__ = [
    "TESTS",
    "Setup",
    "complement",
    "equivalence",
    "localisation",
    "minimality",
    "null_costs",
    "random_node",
    "random_shape",
    "scrubbed_away",
    "sufficiency",
    "with_node",
]
