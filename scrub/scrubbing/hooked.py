"""The hook backend of the scrubbing engine: plain bridge hooks, one pass per component.

Slow and obviously correct. Models the functional kernel cannot express run on it, and the tests
use it as the independent reference for the fast engine (:mod:`scrub.scrubbing.evaluate`).

It follows design.md's semantics literally. For each tree node, bottom-up: a leaf's components are
read from a clean run on its own rows; an internal node runs its world (its other-input rows) once
per component with that component's slot inputs patched by
``slot - sum(child clean outputs) + sum(child outputs)``; the output adds the same correction to
the final residual stream and reads the logits at END. Nothing is shared with the fast engine
except the hypothesis values, the assignment and ``can_feed``.
"""

from __future__ import annotations

import torch

from scrub.metrics import logit_diff
from scrub.models import Site, SiteKind
from scrub.scrubbing.hypothesis import Head, Mlp, Slot
from scrub.scrubbing.validate import can_feed

_SLOT_SITE = {Slot.Q: SiteKind.Q_INPUT, Slot.K: SiteKind.K_INPUT, Slot.V: SiteKind.V_INPUT}


def _out_site(c):
    if isinstance(c, Head):
        return Site(SiteKind.HEAD_RESULT, c.layer)
    if isinstance(c, Mlp):
        return Site(SiteKind.MLP_OUT, c.layer)
    return Site(SiteKind.EMBED)


def _read(cache, c):
    x = cache[_out_site(c)]
    return x[:, :, c.head] if isinstance(c, Head) else x


class ReferenceEngine:
    def __init__(self, model, ds, assignment):
        self.model, self.ds, self.a = model, ds, assignment

    def _run_cache(self, rows, comps, hooks=()):
        sites = list({_out_site(c) for c in comps})
        t = torch.from_numpy(rows)
        return self.model.run_with_cache(self.ds.tokens[t], sites, hooks, self.ds.mask[t])

    def _pos(self, name, rows):
        return self.ds.positions[name][torch.from_numpy(rows)]

    def outputs(self, node):
        """{component: (values [n, t, d] in the node's world, the world's rows)}."""
        if node.is_leaf:
            rows = self.a.rows[node.path]
            cache = self._run_cache(rows, node.node.components)
            return {c: (_read(cache, c), rows) for c in node.node.components}
        world = self.a.other[node.path]
        kids = [(k, self.outputs(k)) for k in node.children]
        out = {}
        for c in node.node.components:
            if isinstance(c, Head):
                # k and v inputs are per key/value group in grouped-query models.
                ratio = self.model.info.n_heads // self.model.info.n_kv_heads
                hooks = [
                    (
                        Site(_SLOT_SITE[s], c.layer),
                        self._patcher(
                            s, c, world, kids, c.head if s is Slot.Q else c.head // ratio
                        ),
                    )
                    for s in (Slot.Q, Slot.K, Slot.V)
                ]
            elif isinstance(c, Mlp):
                hooks = [(Site(SiteKind.MLP_IN, c.layer), self._patcher(Slot.MLP, c, world, kids))]
            else:  # an embedding reads nothing: clean on the node's world
                hooks = []
            cache = self._run_cache(world, [c], hooks)
            out[c] = (_read(cache, c), world)
        return out

    def _delta(self, slot, target, world, kids):
        """What to add to the slot input in ``world``: children's outputs minus their clean ones."""
        n = len(world)
        comps = [
            (c, v)
            for kid, outs in kids
            if kid.slot is slot
            for c, v in outs.items()
            if can_feed(c, target, slot, parallel=self.model.info.parallel)
        ]
        clean = self._run_cache(world, [c for c, _ in comps]) if comps else {}
        delta = None
        for c, (values, rows) in comps:
            d = torch.zeros_like(values)
            clean_c = _read(clean, c)
            for i in range(n):
                if c.position is None:
                    d[i] = values[i] - clean_c[i]
                else:
                    p_child = int(self._pos(c.position, rows)[i])
                    p_world = int(self._pos(c.position, world)[i])
                    d[i, p_world] = values[i, p_child] - clean_c[i, p_world]
            delta = d if delta is None else delta + d
        return delta

    def _patcher(self, slot, target, world, kids, head=None):
        delta = self._delta(slot, target, world, kids)

        def hook(x):
            if delta is None:
                return None
            x = x.clone()
            if head is None:
                x += delta
            else:
                x[:, :, head] += delta
            return x

        return hook

    def final_logits_at_end(self, tree):
        world = self.a.other[tree.path]
        kids = [(k, self.outputs(k)) for k in tree.children]
        hook = self._patcher(Slot.RESID, None, world, kids)
        t = torch.from_numpy(world)
        logits = self.model.run(
            self.ds.tokens[t], [(Site(SiteKind.RESID_FINAL), hook)], self.ds.mask[t]
        )
        return logits[torch.arange(len(world)), self._pos("END", world)]

    def logits_at_end(self, rows):
        t = torch.from_numpy(rows)
        logits = self.model.run(self.ds.tokens[t], attn_mask=self.ds.mask[t])
        return logits[torch.arange(len(rows)), self._pos("END", rows)]


def reference_logits(model, ds, tree, assignment, ref, random_rows):
    """(clean, scrubbed, random) full-vocabulary logits at END, the slow way."""
    eng = ReferenceEngine(model, ds, assignment)
    with torch.no_grad():
        return (
            eng.logits_at_end(ref),
            eng.final_logits_at_end(tree),
            eng.logits_at_end(random_rows),
        )


def reference_logit_diffs(model, ds, tree, assignment, ref, random_rows):
    """(clean, scrubbed, random) per-example logit differences, the slow way."""
    eng = ReferenceEngine(model, ds, assignment)
    answers = ds.answers[torch.from_numpy(ref)]

    def ld(logits):
        return logit_diff(logits, answers).double().numpy()

    with torch.no_grad():
        return (
            ld(eng.logits_at_end(ref)),
            ld(eng.final_logits_at_end(tree)),
            ld(eng.logits_at_end(random_rows)),
        )
