"""How the search's result ranks every site and edge, to score it against a known circuit.

The found hypothesis's heads (and their edges) come first, ordered by what scrubbing each alone
costs; everything else follows, ordered by the largest path-patching score the search saw for it
(0 if none). Scores are only an order: members map into (1, 2), the rest into [0, 1).

>>> roc_auc(site_scores(found, space), truth.sites)   # doctest: +SKIP
0.996
"""

from __future__ import annotations

import numpy as np

from scrub.discover.search import Found
from scrub.discover.space import LOGITS, Edge, Site
from scrub.scrubbing.hypothesis import OUTPUT, Head


def _squash(v: float) -> float:
    """[0, inf) -> [0, 1), order kept: attribution of what the search did not take."""
    v = abs(v)
    return v / (1.0 + v)


def _member(cost: float) -> float:
    """(1, 2), order kept: what the search took ranks above everything it did not."""
    return 1.0 + 1.0 / (1.0 + float(np.exp(-cost)))


def claimed(site: Site, space) -> list[Site]:
    """The named sites a found node claims: itself, or for a head at all positions, that head
    at every named position of ``space`` (it carries whatever the head does at each of them).

    >>> claimed(Site(1, 2, None), Space(2, 4, ("S", "END")))
    [Site(layer=1, head=2, position='S'), Site(layer=1, head=2, position='END')]
    """
    if site.position is not None:
        return [site]
    return [Site(site.layer, site.head, p) for p in space.positions]


def site_scores(found: Found, space) -> dict[Site, float]:
    """A ranking of every site: the found hypothesis's heads first (by what dropping each costs),
    then the rest by the largest path-patching score the search saw for them (0 if none).

    A head found at all positions claims that head at every named position (:func:`claimed`):
    each of those sites gets its membership score. A path-patching score of a sender at all
    positions ranks no site: it is not evidence about any one position, and each named position
    has its own score.
    """
    out = dict.fromkeys(space.sites(), 0.0)
    for (site, _, _), v in found.attribution.items():
        if site in out:
            out[site] = max(out[site], _squash(v))
    for p in found.head_parts():
        for site in claimed(p.site, space):
            out[site] = max(out[site], _member(found.costs[p.name]))
    return out


def edge_scores(found: Found, space) -> dict:
    """The same for edges: the hypothesis's head -> head (or -> logits) edges first; a head at
    all positions claims its edge from every named position (as in :func:`site_scores`)."""
    out = dict.fromkeys(space.edges(), 0.0)
    for (site, slot, recv), v in found.attribution.items():
        e = Edge(site, recv, slot)
        if e in out:
            out[e] = max(out[e], _squash(v))
    by_name = {p.name: p for p in found.parts}
    for p in found.head_parts():
        parent = by_name.get(p.parent)
        senders = claimed(p.site, space)
        if p.parent == OUTPUT:
            edges = [Edge(s, None, LOGITS) for s in senders]
        elif parent is not None and isinstance(parent.component, Head):
            recv = (parent.component.layer, parent.component.head)
            edges = [Edge(s, recv, slot) for s in senders for slot in p.slots]
        else:
            edges = []
        for e in edges:
            if e in out:
                out[e] = max(out[e], _member(found.costs[p.name]))
    return out
