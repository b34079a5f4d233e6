"""Path-patching attribution: how much each head at each named position matters to a receiver.

The score of sender ``s`` for receiver slot ``q|k|v`` of head ``L.H`` (or the logits) is the
fraction of the clean logit difference lost when the receiver reads ``s``'s corrupted output at
``s``'s position, every other head frozen (:func:`scrub.patching.path_scan`): 0 means no effect.
A sender at every position (position None) is read there by the receiver's slot at every
position: for a k or v slot, every key the receiver's query can see. The receiver's own output
then changes at every query position, not only at the one its node sits at; the named k and v
scores share that approximation, which only orders candidates: every step the search accepts
is scrubbed.

>>> scores = receiver_scores(model, inputs, ("q", (3, 1)), positions=["END"])  # doctest: +SKIP
>>> scores[Site(2, 0, "END")]                                                  # doctest: +SKIP
0.93
>>> receiver_scores(model, inputs, ("v", (2, 0)), positions=[None])           # doctest: +SKIP
{Site(layer=0, head=0, position=None): 0.41, ...}
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from scrub.discover.space import LOGITS, Edge, Site


def receiver_scores(
    model, inputs, receiver: tuple[str, tuple[int, int] | None], positions: Iterable[str | None]
) -> dict[Site, float]:
    """Scores of every upstream head at each of ``positions`` for one receiver slot.

    ``receiver`` is ``(slot, (layer, head))`` or ``("logits", None)``. At a named position the
    senders and the receiver's slot are patched there; at None (every position), senders at
    every position and the slot at every position (``Receivers(slot, heads, None)``). The logits
    read END only, so they skip every other position, None included.
    """
    from scrub.patching import Receivers, path_scan

    slot, head = receiver
    out: dict[Site, float] = {}
    for p in positions:
        if slot == LOGITS:
            if p != "END":
                continue  # the logit difference is read at END only
            recv = Receivers("logits", (), None)
        else:
            if head[0] == 0:
                continue
            recv = Receivers(slot, (head,), p)
        with torch.no_grad():
            frame = path_scan(model, inputs, "heads", recv, position=p).to_frame()
        for row in frame.dropna(subset=["normalized"]).itertuples():
            out[Site(int(row.layer), int(row.head), p)] = 1.0 - float(row.normalized)
    return out


def edge_scores(model, inputs, space) -> dict[Edge, float]:
    """The path-patching scan over every edge of ``space``: one scan per receiver slot and
    position (the path-patching ranking baseline)."""
    scores: dict[Edge, float] = {}
    receivers = [(LOGITS, None)] + [
        (slot, (layer, head))
        for layer in range(1, space.n_layers)
        for head in range(space.n_heads)
        for slot in ("q", "k", "v")
    ]
    for recv in receivers:
        for site, value in receiver_scores(model, inputs, recv, space.positions).items():
            if recv[1] is None or site.layer < recv[1][0]:
                scores[Edge(site, recv[1], recv[0])] = value
    return scores
