"""The candidate space: heads at named positions, and the edges between them.

A :class:`Site` is one head at one named position (``0.1@S1+1``), or at every position
(``1.2@all``: only the search proposes those; the space and ground truth are named positions);
an :class:`Edge` says that a receiver reads a sender's output at the sender's position through
one slot (``q``, ``k``, ``v``) or that the logits read it (receiver ``None``, only at END).
Ground truth, found circuits and every baseline's scores are expressed on these, so they can be
compared.

>>> Site(0, 1, "S1+1")
Site(layer=0, head=1, position='S1+1')
>>> str(Edge(Site(2, 0, "END"), (3, 1), "q"))
'2.0@END -> 3.1.q'
>>> str(Site(1, 2, None))
'1.2@all'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scrub.errors import ScrubError

SLOTS = ("q", "k", "v")
LOGITS = "logits"


@dataclass(frozen=True, order=True)
class Site:
    """Head ``layer.head`` at named position ``position``, or at every position (None).

    None is written ``@all``, as ``scrub patch path`` writes a receiver at every position, so a
    site never reads as a bare ``L.H``. Sort only sites of one kind (None and a name do not order).
    """

    layer: int
    head: int
    position: str | None

    def __str__(self) -> str:
        return f"{self.layer}.{self.head}@{'all' if self.position is None else self.position}"


@dataclass(frozen=True, order=True)
class Edge:
    """``receiver`` (a head; None = the logits) reads ``sender``'s output through ``slot``.

    The receiver's position is not part of the edge: a q edge is read at the sender's position
    (the receiver's query there), a k or v edge at the sender's position as a key (every
    position, for a sender at all positions).
    """

    sender: Site
    receiver: tuple[int, int] | None
    slot: str

    def __str__(self) -> str:
        if self.receiver is None:
            return f"{self.sender} -> {LOGITS}"
        return f"{self.sender} -> {self.receiver[0]}.{self.receiver[1]}.{self.slot}"


@dataclass(frozen=True)
class Space:
    """Every site and edge of a model with ``n_layers`` x ``n_heads`` over ``positions``."""

    n_layers: int
    n_heads: int
    positions: tuple[str, ...]

    def sites(self) -> list[Site]:
        return [
            Site(layer, head, p)
            for layer in range(self.n_layers)
            for head in range(self.n_heads)
            for p in self.positions
        ]

    def edges(self) -> list[Edge]:
        """Senders at every named position into every later head's q/k/v; logits from END."""
        out = []
        for s in self.sites():
            if s.position == "END":
                out.append(Edge(s, None, LOGITS))
            for layer in range(s.layer + 1, self.n_layers):
                for head in range(self.n_heads):
                    out.extend(Edge(s, (layer, head), slot) for slot in SLOTS)
        return out


@dataclass(frozen=True)
class Truth:
    """A known circuit: its sites and edges (from ``circuit.json``)."""

    sites: frozenset[Site]
    edges: frozenset[Edge]


def load_truth(path: Path) -> Truth:
    """Sites and edges of a planted circuit file (scrub/models/toy_ioi/circuit.json).

    Sites are its heads at their positions. Edges follow the IOI story the file's variables
    name: previous token -> induction.k, induction and duplicate token -> s-inhibition.v,
    s-inhibition -> name mover.q, name mover -> logits.
    """
    try:
        spec = json.loads(Path(path).read_text())
        by_var = {h["variable"]: h for h in spec["heads"]}
        sites = {
            v: [Site(h["layer"], h["head"], p) for p in h["positions"]] for v, h in by_var.items()
        }
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ScrubError(
            f"cannot read the circuit file {path}: {e}",
            fix="pass a circuit.json like scrub/models/toy_ioi/circuit.json",
        ) from None
    story = [("PT", "IND", "k"), ("IND", "SINH", "v"), ("DUP", "SINH", "v"), ("SINH", "NM", "q")]
    missing = {v for edge in story for v in edge[:2]} - set(by_var)
    if missing:
        raise ScrubError(
            f"{path} lacks the IOI variables {', '.join(sorted(missing))}",
            fix="name the heads PT, DUP, IND, SINH and NM",
        )
    edges = {Edge(s, None, LOGITS) for s in sites["NM"]}
    for snd, rcv, slot in story:
        r = by_var[rcv]
        edges |= {Edge(s, (r["layer"], r["head"]), slot) for s in sites[snd]}
    return Truth(frozenset(s for group in sites.values() for s in group), frozenset(edges))
