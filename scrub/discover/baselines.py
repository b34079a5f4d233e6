"""The baselines scrub's search is compared with, on the same prompts and the same edge space.

* :func:`eap`: edge attribution patching (Syed et al. 2023): for an edge sender -> receiver slot,
  ``(corrupted - clean sender output) . d metric / d receiver slot input`` at the sender's
  position, averaged over prompts; one forward and one backward pass. A site's score is its own
  ``(corrupted - clean output) . d metric / d output``.
* :func:`acdc`: ACDC-style pruning (Conmy et al. 2023) with activation patching of single edges:
  receivers from the logits down, each incoming edge patched to the sender's corrupted output and
  removed when the logit difference moves by less than ``threshold`` (a fraction of clean -
  corrupted), keeping the removals. Each edge's score is how much it moved the metric when tried
  (one run gives a ranking; the kept edges are those above the threshold). A site scores the
  largest of its outgoing edges.
* :func:`path_patching_rank`: the path-patching scan of every edge (:mod:`.attribution`); a site
  scores its largest edge.

Scores are magnitudes (larger = more important). Every function returns (site scores, edge scores).
"""

from __future__ import annotations

import torch

from scrub.discover import graph
from scrub.discover.attribution import edge_scores
from scrub.discover.space import Edge, Site, Space


def _sites_from_edges(edges: dict[Edge, float], space: Space) -> dict[Site, float]:
    out = dict.fromkeys(space.sites(), 0.0)
    for e, v in edges.items():
        out[e.sender] = max(out[e.sender], abs(v))
    return out


def corrupted_outputs(w, inputs) -> list[torch.Tensor]:
    with torch.no_grad():
        return graph.forward(w, inputs.corrupted, inputs).outputs


def eap(model, inputs, space: Space):
    w = model.weights
    bad = corrupted_outputs(w, inputs)
    with torch.enable_grad():
        run = graph.forward(w, inputs.clean, inputs, grad=True)
        run.logit_diff.sum().backward()
    n = inputs.n
    rows = torch.arange(n)
    end = inputs.positions["END"]
    edges: dict[Edge, float] = {}
    sites: dict[Site, float] = {}
    with torch.no_grad():
        for e in space.edges():
            s = e.sender
            at = inputs.positions[s.position]
            delta = bad[s.layer][rows, at, s.head] - run.outputs[s.layer][rows, at, s.head]
            if e.receiver is None:
                g = run.final.grad[rows, at] * (at == end)[:, None]
            else:
                g = run.slots[e.receiver[0]][e.slot].grad[rows, at, e.receiver[1]]
            edges[e] = abs(float((delta * g).sum(-1).mean()))
        for s in space.sites():
            at = inputs.positions[s.position]
            delta = bad[s.layer][rows, at, s.head] - run.outputs[s.layer][rows, at, s.head]
            sites[s] = abs(
                float((delta * run.outputs[s.layer].grad[rows, at, s.head]).sum(-1).mean())
            )
    return sites, edges


def acdc(model, inputs, space: Space, threshold: float = 0.01):
    w = model.weights
    with torch.no_grad():
        corrupted_run = graph.forward(w, inputs.corrupted, inputs)
        clean = float(graph.forward(w, inputs.clean, inputs).logit_diff.mean())
    bad, worst = corrupted_run.outputs, float(corrupted_run.logit_diff.mean())
    scale = abs(clean - worst) or 1.0
    all_edges = space.edges()
    removed: set[Edge] = set()
    removal = graph.Removal(inputs, space.n_layers, space.n_heads)
    scores: dict[Edge, float] = dict.fromkeys(all_edges, 0.0)
    current = clean
    receivers = [None] + [
        (layer, head)
        for layer in reversed(range(1, space.n_layers))
        for head in range(space.n_heads)
    ]
    alive: set = {None}  # the logits, and every receiver with a kept edge into something alive
    for recv in receivers:
        if recv is not None:
            out = [e for e in all_edges if (e.sender.layer, e.sender.head) == recv]
            if not any(e.receiver in alive and e not in removed for e in out):
                continue  # ACDC skips heads no kept edge connects to the output
            alive.add(recv)
        incoming = sorted(
            (e for e in all_edges if e.receiver == recv),
            key=lambda e: (-e.sender.layer, e.sender.head, e.sender.position, e.slot),
        )
        for e in incoming:
            removal.set(e)
            with torch.no_grad():
                value = float(
                    graph.forward(
                        w, inputs.clean, inputs, removed=removal, corrupted=bad
                    ).logit_diff.mean()
                )
            scores[e] = abs(value - current) / scale
            if scores[e] < threshold:
                removed.add(e)
                current = value
            else:
                removal.set(e, 0.0)
    return _sites_from_edges(scores, space), scores


def path_patching_rank(model, inputs, space: Space):
    edges = {e: abs(v) for e, v in edge_scores(model, inputs, space).items()}
    return _sites_from_edges(edges, space), edges
