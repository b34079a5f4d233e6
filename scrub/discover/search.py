"""The search: a forward build from the logits backwards, each accepted step scrubbed.

What is searched. A hypothesis whose nodes are heads at named positions or at all positions
(and token embeddings at named positions as leaves), every node drawn with ``keep`` (it computes
on the reference row), so the claim is structural: *these* paths from the embeddings through
*these* heads carry the behaviour, and everything else feeding each internal node is resampled
by ``other`` (by default from a prompt of the same template, so that named positions line up, as
ACDC's resample ablation and the toy's own claims do). The output's other inputs are random, as
in ``scrub run``.

How. Start from the output and add heads at END (and the END token) feeding it, best first,
until the scrub recovers ``target`` (see :meth:`Search.good`: overshooting misses too). Every
head added is a *kept leaf* (its whole input is the reference row). Then, leaf by leaf, in the
order they were added, try to *expand* it: make it an internal node (its unexplained inputs
resampled) and add children feeding its q, k and v until the hypothesis again recovers
``target`` (:meth:`Search.build_up`; where no single child helps, :meth:`Search.prune_down` starts
from every candidate child and drops them); if that fails the leaf stays kept.
Candidates are ordered by path patching into that slot (:mod:`scrub.discover.attribution`).
A head at all positions is a candidate for k and v slots (and every slot of a node that is itself
at all positions), never for the logits or a named node's q (:meth:`Search.sender_positions`).
Each step of an expansion is a beam search step: for each of the ``beam`` best hypotheses so far,
the ``shortlist`` best heads and every embedding that can feed the slot are added in turn, and
all these candidates are scrubbed in *one batched pass* (:func:`scrub.scrubbing.scrub_many`: one
clean pass over the union of their rows, each tree evaluated on it); the ``beam`` that bring the
scrub closest to clean (:func:`per_example_miss`), each by at least ``min_gain``, go on. The first
good one is verified with its own :func:`~scrub.scrubbing.scrub_hypothesis`. Finally each head
node is dropped in turn (with what it explains) when the rest still recovers ``target``.

>>> found = discover(model, dataset, patch_inputs, target=0.9, seed=0)   # doctest: +SKIP
>>> found.recovered, len(found.head_parts())                              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from scrub.discover.attribution import receiver_scores
from scrub.discover.space import LOGITS, Site
from scrub.runner.draw import without as scrubbed_alone
from scrub.scrubbing.hypothesis import (
    OUTPUT,
    Embed,
    Head,
    Hypothesis,
    Rule,
    agree,
    keep,
    node,
    random,
)


@dataclass(frozen=True)
class Part:
    """One node of the search's hypothesis: a head or an embedding feeding ``parent``'s slots.

    ``parent`` is the name of another part or OUTPUT; ``expanded`` parts are internal (their
    other inputs resampled), the rest are kept leaves. A head at all positions (position None)
    has the site ``L.H@all`` and the name ``"L.H@all"``, and is expanded like any other head.
    """

    name: str
    component: Head | Embed
    parent: str
    slots: tuple[str, ...]
    expanded: bool = False

    @property
    def site(self) -> Site | None:
        c = self.component
        return Site(c.layer, c.head, c.position) if isinstance(c, Head) else None


@dataclass(frozen=True)
class Settings:
    """``target`` recovered fraction; ``n`` reference rows and ``seed`` of every scrub; ``other``
    draws internal nodes' unexplained inputs; per step, the ``shortlist`` best heads by path
    patching are tried on each of the ``beam`` best hypotheses; an expansion adds at most
    ``max_steps`` children, each lowering the per-example miss by ``min_gain``; ``prune`` drops
    heads the target does not need. ``beam=1`` is the greedy search. A head at all positions is
    tried only where its path-patching score beats its best named position's by ``min_spread``
    (a fraction of the clean - corrupted logit difference): otherwise one position carries what
    it does and the named head is the same claim, narrower (and near-ties would pick either)."""

    target: float = 0.9
    n: int = 200
    seed: int = 0
    other: Rule = field(default_factory=lambda: agree("template"))
    shortlist: int = 8
    beam: int = 3
    max_steps: int = 6
    min_gain: float = 0.005
    min_spread: float = 0.01
    prune: bool = True


@dataclass(frozen=True)
class Found:
    """The result: the parts, the hypothesis, its scrub, each node's cost, attribution seen."""

    parts: tuple[Part, ...]
    hypothesis: Hypothesis
    recovered: float
    recovered_se: float
    costs: dict[str, float]  # part name -> what scrubbing it alone costs (as `scrub draw` says)
    attribution: dict[tuple[Site, str, tuple[int, int] | None], float]  # (sender, slot, receiver)
    evaluations: int  # hypotheses scrubbed
    passes: int  # the batched passes they took
    reached: bool = True  # False: no hypothesis the search built reaches the target

    def head_parts(self) -> list[Part]:
        return [p for p in self.parts if isinstance(p.component, Head)]


def build(parts, name: str, other: Rule) -> Hypothesis:
    """The hypothesis of ``parts``: every node ``keep``; expanded nodes resample ``other``.

    An expanded part with no children yet is a leaf to the engine (a leaf computes on its own
    row): it is drawn by ``other`` instead, which is what "nothing of its input is explained" means.
    """
    parents = {p.parent for p in parts}
    return Hypothesis(
        name,
        [
            node(
                p.name,
                p.component,
                feeds=OUTPUT if p.parent == OUTPUT else [f"{p.parent}.{s}" for s in p.slots],
                rule=other if p.expanded and p.name not in parents else keep,
                other=other if p.expanded else random,
            )
            for p in parts
        ],
    )


def clashes(part: Part, siblings) -> bool:
    """``part`` would claim what one of ``siblings`` (its parent's other children) does: the same
    component in a shared slot at an overlapping position (equal, or either at all positions).
    The engine rejects that (a head at END and everywhere would be patched twice at END).

    >>> clashes(Part("a", Head(0, 1, None), "p", ("k",)), [Part("b", Head(0, 1, "S"), "p", ("k",))])
    True
    """
    c = part.component
    return any(
        replace(s.component, position=None) == replace(c, position=None)
        and bool(set(s.slots) & set(part.slots))
        and (s.component.position == c.position or None in (s.component.position, c.position))
        for s in siblings
    )


def without(parts, name: str) -> tuple[Part, ...]:
    """``parts`` minus ``name`` and everything that feeds only through it."""
    gone = {name}
    changed = True
    while changed:
        new = {p.name for p in parts if p.parent in gone} - gone
        changed = bool(new)
        gone |= new
    return tuple(p for p in parts if p.name not in gone)


def per_example_miss(result) -> float:
    """``mean |scrubbed - clean| / mean |clean - random|``: how far each example lands from its
    clean value, as a fraction of how far random rows land. 0 is exact, 1 is as bad as random.

    Unlike ``1 - recovered`` it cannot cancel: examples pushed too far one way and others too
    far the other do not average out, and overshooting (a hypothesis that makes the model surer
    than it is, e.g. by leaving a distractor out of the context) counts as missing. It bounds
    ``|1 - recovered|`` whenever clean - random keeps one sign.
    """
    spread = float(np.abs(result.clean - result.random).mean())
    return float(np.abs(result.scrubbed - result.clean).mean()) / spread if spread else float("inf")


class Search:
    """State of one search; :func:`discover` runs it."""

    def __init__(self, model, dataset, inputs, settings: Settings, progress: Callable | None):
        from scrub.scrubbing.experiment import scrub_hypothesis, scrub_many

        self.model, self.dataset, self.inputs, self.s = model, dataset, inputs, settings
        self._scrub, self._scrub_many = scrub_hypothesis, scrub_many
        self.progress = progress
        self.evaluations = 0  # hypotheses scrubbed
        self.passes = 0  # batched passes they took
        self._accepted = (float("nan"), 0, 0)  # recovered, heads, nodes: the progress bar
        self.closest: tuple[float, tuple] = (float("inf"), ())  # lowest miss scrubbed, and what
        self.attribution: dict = {}
        pos = {k: np.asarray(v) for k, v in dataset.positions.items()}
        self.positions = list(dataset.positions)
        # Named position p can feed a query at P when p <= P on some row.
        self.before = {
            (p, q): bool((pos[p] <= pos[q]).any()) for p in self.positions for q in self.positions
        }
        self._cache: dict[tuple, tuple[float, float]] = {}
        info = model.info
        # With grouped-query attention a head's k and v inputs are its group's, so only a node
        # holding the whole group could have children there (the engine refuses one head): the
        # search's nodes are single heads, so their keys and values stay unexplained.
        self.grouped = info.n_kv_heads not in (None, info.n_heads)
        self.head_slots = ("q",) if self.grouped else ("q", "k", "v")

    def _batch(self, hypotheses: list[Hypothesis]):
        """Scrub ``hypotheses`` in one batched pass (counted)."""
        results = self._scrub_many(
            hypotheses, self.model, self.dataset, n=self.s.n, seed=self.s.seed
        )
        self.evaluations += len(hypotheses)
        self.passes += 1
        return results

    def score_all(self, candidates) -> list[tuple[float, float, float]]:
        """Scrub every tuple of parts in ``candidates`` in one batched pass (memoised):
        (recovered, its SE, per-example miss) for each."""
        todo = [c for c in dict.fromkeys(tuple(c) for c in candidates) if c not in self._cache]
        if todo:
            results = self._batch([build(parts, "candidate", self.s.other) for parts in todo])
            for parts, r in zip(todo, results):
                self._cache[parts] = (r.recovered, r.recovered_se, per_example_miss(r))
            self._report()
        return [self._cache[tuple(c)] for c in candidates]

    def score(self, parts) -> tuple[float, float, float]:
        """Scrub ``parts``: (recovered, its SE, per-example miss); memoised."""
        return self.score_all([parts])[0]

    def verify(self, parts) -> None:
        """Scrub the accepted ``parts`` on their own with the real scrub: its numbers are the
        ones the search goes on with (a batched pass may differ in the last bits)."""
        r = self._scrub(
            build(parts, "candidate", self.s.other),
            self.model,
            self.dataset,
            n=self.s.n,
            seed=self.s.seed,
        )
        self.evaluations += 1
        self._cache[tuple(parts)] = (r.recovered, r.recovered_se, per_example_miss(r))
        heads = sum(isinstance(p.component, Head) for p in parts)
        self._accepted = (r.recovered, heads, len(parts))
        self._report()

    def _report(self) -> None:
        """Progress: the last accepted hypothesis's recovered fraction, heads and nodes, and the
        scrubs so far."""
        if self.progress:
            self.progress(*self._accepted, self.evaluations)

    def _name(self, parts, base: str) -> str:
        names = {p.name for p in parts}
        if base not in names:
            return base
        k = 2
        while f"{base} #{k}" in names:
            k += 1
        return f"{base} #{k}"

    def _feeds(self, p: str, at: str | None) -> bool:
        """Named position ``p`` can feed a query at ``at`` (None: the node queries everywhere)."""
        return at is None or self.before[(p, at)]

    def sender_positions(self, slot: str, at: str | None) -> list[str | None]:
        """Where senders into ``slot`` of a node at ``at`` are tried (None: every position).

        The logits read END. A q slot of a node at a named position reads only that position,
        which the named sender there covers: a sender at every position would add nothing (its
        output elsewhere reaches neither the query nor, in the scrub, anything else). A k or v
        slot reads every position the query can see, so a sender there can be spread over all of
        them: heads at all positions are tried alongside each named position. A node at every
        position (None) queries everywhere, so its q slot is like its k and v.
        """
        if slot == LOGITS:
            return ["END"]
        if slot == "q" and at is not None:
            return [at]
        return [p for p in self.positions if self._feeds(p, at)] + [None]

    def slot_scores(self, slot: str, recv, at: str | None) -> dict[Site, float]:
        """Path-patching scores of the senders tried into ``slot`` of ``recv`` (a node at
        ``at``), memoised per sender position; a head at all positions only where its score
        beats its best named position's by ``min_spread``."""
        scores: dict[Site, float] = {}
        for p in self.sender_positions(slot, at):
            key = (slot, recv, p)
            if key not in self.attribution:
                self.attribution[key] = receiver_scores(self.model, self.inputs, (slot, recv), [p])
            scores |= self.attribution[key]
        best: dict[tuple[int, int], float] = {}  # each head's best named position
        for site, value in scores.items():
            if site.position is not None:
                lh = (site.layer, site.head)
                best[lh] = max(best.get(lh, 0.0), abs(value))
        return {
            site: value
            for site, value in scores.items()
            if site.position is not None
            or abs(value) >= best.get((site.layer, site.head), 0.0) + self.s.min_spread
        }

    def candidates(self, parts, parent: Part | None) -> list[Part]:
        """Heads (best ``shortlist`` by path patching) and embeddings that could feed ``parent``.

        Heads at named positions and at all positions share one ranking; a head at all positions
        enters it only when spreading beats its best named position by ``min_spread``.
        """
        if parent is None:
            recvs, pname, at = [(LOGITS, None)], OUTPUT, "END"
        else:
            c = parent.component
            recvs = [(s, (c.layer, c.head)) for s in self.head_slots]
            pname, at = parent.name, c.position
        heads: list[tuple[float, str, Part]] = []
        for slot, recv in recvs:
            for site, value in self.slot_scores(slot, recv, at).items():
                comp = Head(site.layer, site.head, site.position)
                part = Part(self._name(parts, str(site)), comp, pname, (slot,))
                heads.append((-abs(value), f"{site} {slot}", part))
        siblings = [p for p in parts if p.parent == pname]
        heads = [h for h in sorted(heads, key=lambda h: h[:2]) if not clashes(h[2], siblings)]
        out = [h[2] for h in heads[: self.s.shortlist]]
        embed_at = [at] if parent is None else [p for p in self.positions if self._feeds(p, at)]
        for p in embed_at:
            if parent is None:
                slots = ("resid",)
            else:  # an embedding reaches the query only at the node's own position (or all)
                slots = self.head_slots
                slots = slots if at in (p, None) else tuple(s for s in slots if s != "q")
            if not slots:
                continue
            part = Part(self._name(parts, f"embed@{p} for {pname}"), Embed(p), pname, slots)
            if not clashes(part, siblings):
                out.append(part)
        return out

    def recovered(self, hypotheses: list[Hypothesis]) -> list[float]:
        """The recovered fraction of each of ``hypotheses``, in one batched pass."""
        return [r.recovered for r in self._batch(hypotheses)]

    def miss(self, parts) -> float:
        return self.score(parts)[2]

    def good(self, parts) -> bool:
        """Recovered within ``1 - target`` of 1, and so is the per-example miss."""
        return self._good(self.score(parts))

    def _good(self, score: tuple[float, float, float]) -> bool:
        r, _, miss = score
        return abs(1.0 - r) <= 1.0 - self.s.target and miss <= 1.0 - self.s.target

    def grow(self, parts, parent: Part | None):
        """Add children to ``parent`` (None: the output) until ``target``; None if that fails.

        First :meth:`build_up`; where no one child helps on its own (parts that only work
        together, e.g. a name mover's query and the names its keys read), :meth:`prune_down`.
        """
        return self.build_up(parts, parent) or self.prune_down(parts, parent)

    def prune_down(self, parts, parent: Part | None):
        """Every candidate child of ``parent`` at once, then, one batched pass per step, drop the
        child whose removal leaves the lowest miss while the hypothesis stays good (ACDC's order,
        in causal-scrubbing semantics); None if even all of them together are not good."""
        kept: list[Part] = []
        for c in self.candidates(parts, parent):  # best first; names unique among siblings
            if not clashes(c, kept):  # e.g. 0.1@all and 0.1@S1+1 into one slot: the first stays
                kept.append(replace(c, name=self._name((*parts, *kept), c.name)))
        if not kept:
            return None
        everything = (*parts, *kept)
        self.closest = min(self.closest, (self.miss(everything), everything), key=_first)
        if not self.good(everything):
            return None
        while kept:
            options = [(*parts, *kept[:i], *kept[i + 1 :]) for i in range(len(kept))]
            scores = self.score_all(options)
            good = [i for i, sc in enumerate(scores) if self._good(sc)]
            if not good:
                break
            kept.pop(min(good, key=lambda i: scores[i][2]))
        found = (*parts, *kept)
        self.verify(found)
        return found if self.good(found) else None

    def build_up(self, parts, parent: Part | None):
        """Add children to ``parent`` one at a time until ``target``; None if that fails.

        A beam search: each step scrubs every candidate child of each of the ``beam`` best
        hypotheses so far in one batched pass, and keeps the ``beam`` that lower the per-example
        miss most (ties go to the earlier candidate), each by at least ``min_gain`` from where it
        came from. It stops at the first step where one is good (the lowest miss among them),
        which is then verified with its own scrub.
        """
        beam = [(self.miss(parts), parts)]
        for _ in range(self.s.max_steps + 1):
            done = [(m, p) for m, p in beam if self.good(p)]
            if done:
                found = min(done, key=lambda mp: mp[0])[1]
                self.verify(found)
                return found if self.good(found) else None
            options, came_from, seen = [], [], set()
            for miss, state in beam:
                for c in self.candidates(state, parent):
                    key = frozenset((p.component, p.parent, p.slots) for p in (*state, c))
                    if key not in seen:
                        seen.add(key)
                        options.append((*state, c))
                        came_from.append(miss)
            if not options:
                return None
            misses = [m for _, _, m in self.score_all(options)]
            order = sorted(range(len(options)), key=lambda i: misses[i])
            self.closest = min(self.closest, (misses[order[0]], options[order[0]]), key=_first)
            beam = [
                (misses[i], options[i])
                for i in order
                if came_from[i] - misses[i] >= self.s.min_gain
            ][: self.s.beam]
            if not beam:
                return None
        return None

    def run(self) -> tuple[Part, ...]:
        """The search; if no set of heads at the output reaches the target, the closest one it
        scrubbed (lowest miss), verified, with nothing expanded (:attr:`Found.reached` False)."""
        self.closest = (float("inf"), ())
        parts = self.grow((), None)
        if parts is None:
            parts = self.closest[1]
            self.verify(parts)
            return parts
        queue = [p.name for p in parts if isinstance(p.component, Head)]
        while queue:
            name = queue.pop(0)
            leaf = next(p for p in parts if p.name == name)
            opened = tuple(replace(p, expanded=True) if p.name == name else p for p in parts)
            grown = self.grow(opened, replace(leaf, expanded=True))
            if grown is not None:
                parts = grown
                queue += [p.name for p in grown[len(opened) :] if isinstance(p.component, Head)]
        if self.s.prune:
            for p in reversed([p for p in parts if isinstance(p.component, Head)]):
                if any(q.name == p.name for q in parts):
                    smaller = without(parts, p.name)
                    if self.good(smaller):
                        self.verify(smaller)
                        if self.good(smaller):
                            parts = smaller
        return parts


def _first(pair):
    return pair[0]


def discover(model, dataset, inputs, settings: Settings = Settings(), progress=None) -> Found:
    """Search ``model`` on ``dataset`` (scrub's rows) ordered by path patching on ``inputs``."""
    search = Search(model, dataset, inputs, settings, progress)
    parts = search.run()
    recovered, se, _ = search.score(parts)
    hypothesis = build(parts, "found", settings.other)
    alone = search.recovered([scrubbed_alone(hypothesis, p.name) for p in parts]) if parts else []
    costs = {p.name: recovered - r for p, r in zip(parts, alone)}
    flat = {}
    for (slot, recv, _), scores in search.attribution.items():
        for site, value in scores.items():
            flat[(site, slot, recv)] = value
    return Found(
        parts=parts,
        hypothesis=hypothesis,
        recovered=recovered,
        recovered_se=se,
        costs=costs,
        attribution=flat,
        evaluations=search.evaluations,
        passes=search.passes,
        reached=search.good(parts),
    )
