"""The hypothesis language: interpretation nodes, the slots they feed, and resampling rules.

A hypothesis reads like the story it tells::

    from scrub import OUTPUT, Hypothesis, agree, heads, node

    ioi = Hypothesis("ioi", [
        node("name movers", heads("3.0 3.1", at="END"), feeds=OUTPUT, rule=agree("io")),
        node("s-inhibition", heads("2.2", at="END"), feeds="name movers.q", rule=agree("order")),
        node("induction", heads("1.1", at="S2"), feeds="s-inhibition.v", rule=agree("order")),
    ])

Each node names its components, the parent slot(s) it feeds (``"parent.q"``, ``.k``, ``.v``,
``.mlp``, or ``OUTPUT`` for the final residual stream), the rule its input is drawn by (relative to
its parent's input) and the rule for its *other* inputs (everything feeding its components that
its children do not explain; random by default). Values here are plain and immutable; checking
against a model and a dataset happens in :mod:`scrub.scrubbing.validate`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scrub.errors import ScrubError

OUTPUT = "output"  #: the root: the model's final residual stream on the reference input


@dataclass(frozen=True)
class Head:
    """Attention head ``layer.head``, at one named position (e.g. "END") or all (None)."""

    layer: int
    head: int
    position: str | None = None

    def __str__(self) -> str:
        return f"{self.layer}.{self.head}" + (f"@{self.position}" if self.position else "")


@dataclass(frozen=True)
class Mlp:
    """The MLP of ``layer``, at one named position or all."""

    layer: int
    position: str | None = None

    def __str__(self) -> str:
        return f"mlp{self.layer}" + (f"@{self.position}" if self.position else "")


@dataclass(frozen=True)
class Embed:
    """Token plus position embeddings, at one named position or all."""

    position: str | None = None

    def __str__(self) -> str:
        return "embed" + (f"@{self.position}" if self.position else "")


Component = Head | Mlp | Embed


class Slot(enum.Enum):
    """Where a child's output enters its parent."""

    Q = "q"
    K = "k"
    V = "v"
    MLP = "mlp"  # an MLP's input
    RESID = "resid"  # the final residual stream (only the output reads it)


@dataclass(frozen=True)
class Rule:
    """How a node's input row is drawn given its parent's row.

    ``keep``: the parent's row. ``agree``: uniform among rows whose ``features`` equal the
    parent row's (the parent's own row included, as in Redwood's sampler). ``random``: any row.
    ``allow_self`` accepts feature values that only the parent's row has (otherwise an error,
    because such a draw silently keeps the row).
    """

    kind: str
    features: tuple[str, ...] = ()
    allow_self: bool = False

    def __str__(self) -> str:
        return f"agree({', '.join(self.features)})" if self.kind == "agree" else self.kind


keep = Rule("keep")
random = Rule("random")


def agree(*features: str, allow_self: bool = False) -> Rule:
    """Draw among rows that agree with the parent's row on ``features`` (dataset columns)."""
    if not features:
        raise ScrubError("agree() needs at least one feature", fix='e.g. agree("io")')
    return Rule("agree", tuple(features), allow_self)


@dataclass(frozen=True)
class Feed:
    """An edge: the child feeds ``slot`` of ``parent``."""

    parent: str
    slot: Slot

    def __str__(self) -> str:
        return OUTPUT if self.parent == OUTPUT else f"{self.parent}.{self.slot.value}"


@dataclass(frozen=True)
class Node:
    """An interpretation node: components, the slots it feeds, and its two sampling rules."""

    name: str
    components: tuple[Component, ...]
    feeds: tuple[Feed, ...]
    rule: Rule = random
    other: Rule = random


def _parse_feed(text: str) -> Feed:
    if text == OUTPUT:
        return Feed(OUTPUT, Slot.RESID)
    parent, _, slot = text.rpartition(".")
    slots = [s.value for s in Slot if s is not Slot.RESID]
    if not parent or slot not in slots:
        raise ScrubError(
            f"cannot read the edge {text!r}",
            fix=f"write 'parent.slot' with slot one of {', '.join(slots)}, or OUTPUT",
        )
    return Feed(parent, Slot(slot))


def heads(spec: str, at: str | None = None) -> tuple[Head, ...]:
    """Heads from ``"9.9 9.6 10.0"`` (spaces or commas), all at position ``at``.

    >>> heads("1.0, 2.3", at="END")
    (Head(layer=1, head=0, position='END'), Head(layer=2, head=3, position='END'))
    """
    out = []
    for item in re.split(r"[\s,]+", spec.strip()):
        m = re.fullmatch(r"(\d+)\.(\d+)", item)
        if not m:
            raise ScrubError(
                f"cannot read the head {item!r}", fix="write heads as LAYER.HEAD, e.g. 9.6"
            )
        out.append(Head(int(m[1]), int(m[2]), at))
    return tuple(out)


def mlps(spec: str, at: str | None = None) -> tuple[Mlp, ...]:
    """MLPs from ``"0 3"``, all at position ``at``."""
    return tuple(Mlp(int(x), at) for x in re.split(r"[\s,]+", spec.strip()))


def node(
    name: str,
    components: Component | Iterable[Component],
    *,
    feeds: str | Sequence[str],
    rule: Rule = random,
    other: Rule = random,
) -> Node:
    """Build a :class:`Node`; ``feeds`` is ``"parent.slot"``, ``OUTPUT`` or a list of them."""
    comps = (components,) if isinstance(components, (Head, Mlp, Embed)) else tuple(components)
    edges = (feeds,) if isinstance(feeds, str) else tuple(feeds)
    if not comps:
        raise ScrubError(f"node {name!r} has no components", fix="give it heads(...), mlps(...)")
    if not edges:
        raise ScrubError(f"node {name!r} feeds nothing", fix="say feeds='parent.q' or OUTPUT")
    return Node(name, comps, tuple(_parse_feed(e) for e in edges), rule, other)


@dataclass(frozen=True)
class Hypothesis:
    """A rooted graph of interpretation nodes; the root is :data:`OUTPUT`.

    ``output_other`` is the rule for the output's other inputs: everything reaching the final
    residual stream that no node explains (random by default; ``keep`` keeps the reference row).
    """

    name: str
    nodes: tuple[Node, ...]
    output_other: Rule = random
    description: str = ""
    dataset: str = "ioi"  # the dataset the story is about: "ioi" or "induction"

    def __init__(
        self,
        name: str,
        nodes: Iterable[Node],
        *,
        output_other: Rule = random,
        description: str = "",
        dataset: str = "ioi",
    ):
        # A custom __init__ only to accept any iterable of nodes and keyword-only options.
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "nodes", tuple(nodes))
        object.__setattr__(self, "output_other", output_other)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "dataset", dataset)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def children(self, parent: str) -> list[tuple[Node, Slot]]:
        """Nodes feeding ``parent``, with the slot each feeds, in declaration order."""
        return [(n, f.slot) for n in self.nodes for f in n.feeds if f.parent == parent]
