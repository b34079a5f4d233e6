"""Eager checks of a hypothesis against a model and a dataset, before any forward pass.

Every problem is a :class:`ScrubError` naming the node and the fix.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import networkx as nx

from scrub.errors import ScrubError
from scrub.scrubbing.hypothesis import OUTPUT, Component, Embed, Head, Hypothesis, Mlp, Rule, Slot

_HEAD_SLOTS = (Slot.Q, Slot.K, Slot.V)


def can_feed(
    child: Component, parent: Component | None, slot: Slot, *, parallel: bool = False
) -> bool:
    """Whether ``child``'s output is upstream of ``parent``'s ``slot`` (None = the output).

    A head in layer L reads embeddings, heads and MLPs of earlier layers; an MLP in layer L also
    reads the heads of layer L, except in ``parallel`` blocks (GPT-NeoX), where attention and
    MLP both read the block's input.
    """
    if parent is None:
        return slot is Slot.RESID
    if isinstance(parent, Head) and slot not in _HEAD_SLOTS:
        return False
    if isinstance(parent, Mlp) and slot is not Slot.MLP:
        return False
    if isinstance(parent, Embed):
        return False
    if isinstance(child, Embed):
        return True
    if isinstance(child, Head) and isinstance(parent, Mlp) and not parallel:
        return child.layer <= parent.layer
    return child.layer < parent.layer


def graph(h: Hypothesis) -> nx.DiGraph:
    """Edges child -> parent, labelled by slot."""
    g = nx.DiGraph()
    g.add_node(OUTPUT)
    for n in h.nodes:
        g.add_node(n.name)
        for f in n.feeds:
            g.add_edge(n.name, f.parent, slot=f.slot.value)
    return g


def check_structure(h: Hypothesis) -> None:
    """Names unique, parents exist, no cycles, everything reaches the output."""
    counts = Counter(n.name for n in h.nodes)
    dupes = [name for name, c in counts.items() if c > 1 or name == OUTPUT]
    if dupes:
        raise ScrubError(
            f"hypothesis {h.name!r}: node name(s) {', '.join(map(repr, dupes))} used twice "
            f"(or reserved)",
            fix="give every node a unique name other than 'output'",
        )
    names = set(counts) | {OUTPUT}
    for n in h.nodes:
        for f in n.feeds:
            if f.parent not in names:
                raise ScrubError(
                    f"node {n.name!r} feeds {f.parent!r}, which is not a node of {h.name!r}",
                    fix=f"feed one of: {', '.join(sorted(names))}",
                )
            if f.parent == n.name:
                raise ScrubError(f"node {n.name!r} feeds itself", fix="remove the self-edge")
        repeated = sorted({f"{f.parent!r}.{f.slot.value}" for f in n.feeds if n.feeds.count(f) > 1})
        if repeated:
            raise ScrubError(
                f"node {n.name!r} feeds {', '.join(repeated)} twice", fix="list each edge once"
            )
    g = graph(h)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join([e[0] for e in cycle] + [cycle[-1][1]])
        raise ScrubError(f"hypothesis {h.name!r} has a cycle: {path}", fix="remove one edge")
    orphans = [n.name for n in h.nodes if not nx.has_path(g, n.name, OUTPUT)]
    if orphans:
        raise ScrubError(f"nodes {orphans} do not reach the output", fix="connect them")


def check_against(
    h: Hypothesis,
    n_layers: int,
    n_heads: int,
    positions,
    features,
    *,
    n_kv_heads: int | None = None,
    parallel: bool = False,
) -> None:
    """Components exist, edges go forward (``parallel``: MLP L does not read layer L's heads),
    positions and features exist in the dataset, and in a grouped-query model (``n_kv_heads``
    < ``n_heads``) every node whose k or v slot is fed holds whole key/value groups."""
    check_structure(h)
    for n in h.nodes:
        for c in n.components:
            layer = getattr(c, "layer", 0)
            if not 0 <= layer < n_layers or (isinstance(c, Head) and not 0 <= c.head < n_heads):
                raise ScrubError(
                    f"node {n.name!r}: component {c} does not exist in a model with {n_layers} "
                    f"layers and {n_heads} heads",
                    fix=f"use layers 0-{n_layers - 1} and heads 0-{n_heads - 1}",
                )
            if c.position is not None and c.position not in positions:
                raise ScrubError(
                    f"node {n.name!r}: position {c.position!r} is not in the dataset",
                    fix=f"use one of: {', '.join(positions)} (or None for all positions)",
                )
        for rule in (n.rule, n.other):
            _check_rule(rule, n.name, features)
        for f in n.feeds:
            _check_edge(h, n, f.parent, f.slot, parallel)
    _check_rule(h.output_other, OUTPUT, features)
    if n_kv_heads is not None and n_kv_heads < n_heads:
        _check_whole_groups(h, n_heads // n_kv_heads)
    _check_no_double_claims(h)


def _check_whole_groups(h: Hypothesis, ratio: int) -> None:
    """In a grouped-query model a head's k/v input is its key/value group's (as TransformerLens
    names them): patching it for some heads of a group and not others is ambiguous."""
    for n in h.nodes:
        slots = {slot.value for _, slot in h.children(n.name) if slot in (Slot.K, Slot.V)}
        if not slots:
            continue
        heads = {(c.layer, c.head, c.position) for c in n.components if isinstance(c, Head)}
        for layer, head, position in sorted(heads, key=str):
            g = head // ratio
            group = [(layer, x, position) for x in range(g * ratio, (g + 1) * ratio)]
            if not heads.issuperset(group):
                names = " ".join(f"{a}.{b}" for a, b, _ in group)
                raise ScrubError(
                    f"node {n.name!r}: its {'/'.join(sorted(slots))} slot is fed, but in this "
                    f"grouped-query model head {layer}.{head}'s keys and values are those of its "
                    f"key/value group {g} (heads {names}), which the node holds only in part",
                    fix=f"put all of heads {names} in the node, or feed only its q slot",
                )


def _check_edge(h: Hypothesis, child, parent_name: str, slot: Slot, parallel: bool) -> None:
    parents = [None] if parent_name == OUTPUT else list(h.node(parent_name).components)
    if parent_name == OUTPUT and slot is not Slot.RESID:
        raise ScrubError(f"node {child.name!r} feeds the output through {slot.value}")
    if parent_name != OUTPUT:
        kinds = {Slot.MLP: Mlp, Slot.Q: Head, Slot.K: Head, Slot.V: Head}
        if not any(isinstance(p, kinds[slot]) for p in parents):
            raise ScrubError(
                f"node {child.name!r} feeds {parent_name!r}.{slot.value}, but {parent_name!r} has "
                f"no {'MLP' if slot is Slot.MLP else 'head'} to read it",
                fix="feed q, k or v of heads, or mlp of MLPs",
            )
    if not any(can_feed(c, p, slot, parallel=parallel) for c in child.components for p in parents):
        layers = sorted({getattr(c, "layer", -1) for c in child.components})
        why = (
            " (attention and MLP run in parallel in this model: MLP L does not read layer L's "
            "heads)"
            if parallel and slot is Slot.MLP
            else ""
        )
        raise ScrubError(
            f"node {child.name!r} (layers {layers}) cannot feed {parent_name!r}.{slot.value}: "
            f"none of its components is upstream of the parent's components{why}",
            fix="edges go from earlier layers to later ones (or to the output)",
        )


def _check_rule(rule: Rule, where: str, features) -> None:
    if rule.kind not in ("keep", "agree", "random"):
        raise ScrubError(
            f"node {where!r}: unknown rule {rule.kind!r}", fix="use keep, agree or random"
        )
    missing = [f for f in rule.features if f not in features]
    if missing:
        raise ScrubError(
            f"node {where!r}: feature(s) {missing} are not dataset columns",
            fix=f"agree on some of: {', '.join(features)}",
        )
    if rule.kind == "agree" and not rule.allow_self:
        keys = list(zip(*(features[f] for f in rule.features)))
        counts = Counter(keys)
        lonely = [k for k, c in counts.items() if c < 2]
        if lonely:
            shown = ", ".join(str(k[0] if len(k) == 1 else k) for k in lonely[:5])
            raise ScrubError(
                f"node {where!r}: agree({', '.join(rule.features)}) has {len(lonely)} value(s) "
                f"that only one row has (e.g. {shown}), so a draw would keep that row unchanged",
                fix="use a larger pool of rows, coarser features, or agree(..., allow_self=True)",
            )


def _check_no_double_claims(h: Hypothesis) -> None:
    """One component may feed one slot of one parent through one child only, at any position.

    Positions overlap when they are equal or either is None (all positions), so a head claimed at
    END by one child and everywhere by another would be patched twice at END.
    """
    for parent in [OUTPUT, *(n.name for n in h.nodes)]:
        seen: dict[tuple, list[tuple[str | None, str]]] = {}
        for child, slot in h.children(parent):
            for c in child.components:
                key = (slot, replace(c, position=None))
                for position, owner in seen.get(key, []):
                    if owner != child.name and (
                        position is None or c.position is None or position == c.position
                    ):
                        raise ScrubError(
                            f"component {c} is claimed by both {owner!r} and {child.name!r} "
                            f"feeding {parent!r}.{slot.value}",
                            fix="give each component (at each position) to one child per slot",
                        )
                seen.setdefault(key, []).append((c.position, child.name))


def check_model_has_mlps(h: Hypothesis, model_name: str, has_mlps: bool) -> None:
    """An MLP node on a model whose MLPs are exactly zero (attention-only) would be a no-op.

    Scrubbing an MLP that outputs zero changes nothing, so such a hypothesis would report a
    meaningless number (recovered 0 +- 0, no warning): refuse it instead.
    """
    if has_mlps:
        return
    for n in h.nodes:
        mlps = [c for c in n.components if isinstance(c, Mlp)]
        if mlps:
            raise ScrubError(
                f"node {n.name!r}: {', '.join(map(str, mlps))} on {model_name}, whose MLPs are "
                f"exactly zero (an attention-only model), so scrubbing them changes nothing",
                fix="remove the MLP components from the hypothesis, or use a model with MLPs",
            )
