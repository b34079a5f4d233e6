"""Fast evaluation of a treeified hypothesis on the model layer's cached run.

Why this is exact and cheap: in the treeified model, every tree node's *world* is a clean run on
one dataset row, except for the node's own components, whose slot inputs are patched by their
children (design.md, "Causal-scrubbing semantics"). Clean runs on the same row are identical, so
one batched clean pass over the distinct rows an assignment uses provides every world
(:func:`scrub.models.runs.shared_run`, which also computes shared prompt prefixes once); the
pass keeps only the activations some node reads, and a row stops after the last layer anything
reads from it. Then each internal node recomputes just its own components (only at their
positions, one head at a time) from patched slot inputs, bottom-up, and the output node unembeds
only END, only the two answer columns when the metric is the logit difference.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from scrub.models import kernel
from scrub.models.runs import shared_run
from scrub.models.weights import ModelWeights
from scrub.scrubbing.hypothesis import Component, Embed, Head, Mlp, Slot
from scrub.scrubbing.tree import Assignment, TreeNode
from scrub.scrubbing.validate import can_feed


class Act(enum.Enum):
    """Activations of the clean pass the evaluation can read."""

    EMBED = "embed"
    RESID_PRE = "resid_pre"  # a head's slots read it
    MLP_IN = "mlp_in"  # an MLP's slot reads it
    HEAD = "head"  # a head's result (no b_O)
    MLP = "mlp"  # an MLP's output
    FINAL = "final"  # the final residual stream at END only: [n, d_model]


@dataclass(frozen=True)
class Need:
    """An activation of the clean pass, at a layer (and head)."""

    kind: Act
    layer: int = -1
    head: int = -1

    def blocks(self, n_layers: int) -> int:
        """How many blocks a row must run to provide this."""
        if self.kind is Act.FINAL:
            return n_layers
        if self.kind in (Act.HEAD, Act.MLP, Act.MLP_IN):
            return self.layer + 1
        return max(self.layer, 0)


def _source(c: Component) -> Need:
    """The clean activation holding ``c``'s output."""
    if isinstance(c, Head):
        return Need(Act.HEAD, c.layer, c.head)
    if isinstance(c, Mlp):
        return Need(Act.MLP, c.layer)
    return Need(Act.EMBED)


def _slot_base(c: Component) -> Need:
    """The clean activation ``c``'s slots read before patching."""
    return Need(Act.RESID_PRE, c.layer) if isinstance(c, Head) else Need(Act.MLP_IN, c.layer)


class CleanCache:
    """Activations of one batched clean pass, gathered by dataset row.

    Rows are grouped by how deep they must run (and whether any node reads the last block away
    from END, which then runs at every position), and each group runs in chunks under
    ``max_bytes`` of live activations.
    """

    def __init__(
        self,
        w: ModelWeights,
        tokens: Int[Tensor, "n t"],
        mask: Bool[Tensor, "n t"],
        end: Int[Tensor, " n"],
        needs: Mapping[Need, np.ndarray],
        *,
        max_bytes: int,
        progress: bool = False,
    ):
        n_layers = len(w.layers)
        rows = np.unique(np.concatenate([np.asarray(r) for r in needs.values()]))
        self._index = np.full(tokens.shape[0], -1, dtype=np.int64)
        self._index[rows] = np.arange(len(rows))
        depth = np.zeros(len(rows), dtype=np.int64)
        full_last = np.zeros(len(rows), dtype=bool)
        self._members: dict[Need, tuple[np.ndarray, Tensor]] = {}
        t, d = tokens.shape[1], w.d_model
        for need, r in needs.items():
            r = np.unique(np.asarray(r))
            slot = np.full(len(rows), -1, dtype=np.int64)
            slot[self._index[r]] = np.arange(len(r))
            shape = _buffer_shape(need, len(r), t, d)
            self._members[need] = (slot, torch.empty(shape, dtype=w.dtype, device=w.W_U.device))
            at = self._index[r]
            depth[at] = np.maximum(depth[at], need.blocks(n_layers))
            if need.layer == n_layers - 1 and need.kind is not Act.RESID_PRE:
                full_last[at] = True  # read away from END: the last block at every position
        elt = torch.finfo(w.dtype).bits // 8
        per_row = elt * t * (d * (6 * n_layers + 10) + 2 * w.n_heads * t)
        chunk = max(1, min(256, int(max_bytes // per_row)))
        jobs = []
        for key in sorted({(int(a), bool(b)) for a, b in zip(depth, full_last)}, reverse=True):
            idx = np.flatnonzero((depth == key[0]) & (full_last == key[1]))
            jobs += [(key, idx[s : s + chunk]) for s in range(0, len(idx), chunk)]
        if progress and len(jobs) > 1:
            from tqdm.auto import tqdm

            jobs = tqdm(jobs, desc="scrub pass", unit="chunk")
        with torch.no_grad():
            for (blocks, full), idx in jobs:
                r = torch.from_numpy(rows[idx])
                # Padded positions computed as HF does: an all-position child's output there
                # can land on a real position of a longer row (see alignment_warnings).
                (cache,) = shared_run(
                    w,
                    tokens[r],
                    mask[r],
                    end[r],
                    depth=blocks,
                    last_at_end=not full,
                    exact_padding=True,
                )
                self._store_all(w, cache, idx)

    @staticmethod
    def buffer_bytes(w: ModelWeights, t: int, needs: Mapping[Need, np.ndarray]) -> int:
        """The bytes a cache of ``needs`` keeps (its buffers; the pass's live activations are
        bounded by ``max_bytes`` on top).

        10 final residuals of a float32 model with d_model 64:

        >>> CleanCache.buffer_bytes(w, 20, {Need(Act.FINAL): np.arange(10)})   # doctest: +SKIP
        2560
        """
        elt = torch.finfo(w.dtype).bits // 8
        return sum(
            elt * math.prod(_buffer_shape(need, len(np.unique(r)), t, w.d_model))
            for need, r in needs.items()
        )

    def _store_all(self, w: ModelWeights, cache, idx: np.ndarray) -> None:
        for need, (slot, buf) in self._members.items():
            at = slot[idx]
            keep = at >= 0
            if not keep.any():
                continue
            if need.kind is Act.EMBED:
                act = cache.resid_pre[0]
            elif need.kind is Act.RESID_PRE:
                act = cache.resid_pre[need.layer]
            elif need.kind is Act.MLP_IN:
                act = cache.mlp_in[need.layer]
            elif need.kind is Act.HEAD:
                act = cache.head_result(w, need.layer, need.head)
            elif need.kind is Act.MLP:
                act = cache.mlp_out[need.layer]
            else:
                act = cache.final_end
            buf[torch.from_numpy(at[keep])] = act[torch.from_numpy(keep)].to(buf.device)

    def get(self, need: Need, rows: np.ndarray) -> Tensor:
        """[len(rows), t, d] (or [len(rows), d] for the final residual at END)."""
        slot, buf = self._members[need]
        return buf[torch.from_numpy(slot[self._index[rows]])]


def _buffer_shape(need: Need, rows: int, t: int, d: int) -> tuple[int, ...]:
    return (rows, d) if need.kind is Act.FINAL else (rows, t, d)


def needs_of(
    tree: TreeNode, a: Assignment, ref: np.ndarray, random_rows: np.ndarray
) -> dict[Need, list[np.ndarray]]:
    """Which clean activations the evaluation reads, on which rows."""
    needs: dict[Need, list[np.ndarray]] = {Need(Act.FINAL): [ref, random_rows, a.world(tree)]}

    def add(need: Need, rows: np.ndarray) -> None:
        needs.setdefault(need, []).append(rows)

    for t in tree.walk():
        world = a.world(t)
        if t.node is not None and t.is_leaf:
            for c in t.node.components:
                add(_source(c), world)
        if t.children:
            for child in t.children:
                for c in child.node.components:
                    add(_source(c), world)  # the clean value the child's output replaces
            if t.node is not None:
                for c in t.node.components:
                    # An embedding reads nothing: in a node with children it stays clean.
                    add(_source(c) if isinstance(c, Embed) else _slot_base(c), world)
    return needs


def _positions(pos: Mapping[str, Tensor], name: str | None, rows: np.ndarray) -> Tensor | None:
    return None if name is None else pos[name][torch.from_numpy(rows)]


class TreeEvaluator:
    """Bottom-up computation of every tree node's component outputs from a :class:`CleanCache`."""

    def __init__(
        self,
        w: ModelWeights,
        cache: CleanCache,
        a: Assignment,
        positions: Mapping[str, Tensor],
        mask: Bool[Tensor, "n t"],
    ):
        self.w, self.cache, self.a, self.pos, self.mask = w, cache, a, positions, mask

    def _feeds(self, c: Component, target: Component | None, slot: Slot) -> bool:
        return can_feed(c, target, slot, parallel=self.w.parallel)

    def outputs(self, t: TreeNode) -> dict[Component, Tensor]:
        """Each component's output [n, 1, d] at its named position or [n, t, d] at all."""
        world = self.a.world(t)
        if t.is_leaf:
            return {
                c: self._at(self.cache.get(_source(c), world), c.position, world)
                for c in t.node.components
            }
        kids = [(k, self.outputs(k)) for k in t.children]
        return {
            c: (
                self._at(self.cache.get(_source(c), world), c.position, world)
                if isinstance(c, Embed)  # reads nothing, so nothing of its children reaches it
                else self._recompute(c, world, kids)
            )
            for c in t.node.components
        }

    def _at(self, act: Tensor, position: str | None, rows: np.ndarray) -> Tensor:
        p = _positions(self.pos, position, rows)
        return act if p is None else act[torch.arange(len(rows)), p][:, None]

    def _feeding(self, slot: Slot, target: Component | None, world: np.ndarray, kids):
        """``(output, clean output, position or None)`` of each child component that feeds
        ``slot`` of ``target`` (None: the output), on ``world``'s rows."""
        for kid, outs in kids:
            if kid.slot is not slot:
                continue
            for c, out in outs.items():
                if self._feeds(c, target, slot):
                    clean = self.cache.get(_source(c), world)
                    yield out, clean, _positions(self.pos, c.position, world)

    def patched_slot(
        self, base: Tensor, slot: Slot, target: Component | None, world: np.ndarray, kids
    ) -> Tensor:
        """``base`` (clean, world rows) minus the children's clean outputs plus their outputs."""
        x = base.clone()
        ar = torch.arange(len(world))
        for out, clean, p in self._feeding(slot, target, world, kids):
            if p is None:
                x += out - clean
            else:
                x[ar, p] += out[:, 0] - clean[ar, p]
        return x

    def _recompute(self, c: Component, world: np.ndarray, kids) -> Tensor:
        base = self.cache.get(_slot_base(c), world)
        q_pos = _positions(self.pos, c.position, world)
        if isinstance(c, Mlp):
            x = self.patched_slot(base, Slot.MLP, c, world, kids)
            return kernel.mlp(self.w, c.layer, self._at(x, c.position, world))
        assert isinstance(c, Head)
        q, k, v = (
            self.patched_slot(base, s, c, world, kids)[:, :, None] for s in (Slot.Q, Slot.K, Slot.V)
        )
        if q_pos is not None:
            q = q[torch.arange(len(world)), q_pos][:, None]
            q_pos = q_pos[:, None]
        result, _ = kernel.attention(
            self.w,
            c.layer,
            q,
            k,
            v,
            self.mask[torch.from_numpy(world)],
            q_positions=q_pos,
            heads=[c.head],
        )
        return result[:, :, 0]

    def final_at_end(self, tree: TreeNode) -> Float[Tensor, "n d"]:
        """The output node's final residual at END of its world, with children patched in."""
        world = self.a.world(tree)
        kids = [(k, self.outputs(k)) for k in tree.children]
        ar = torch.arange(len(world))
        end = self.pos["END"][torch.from_numpy(world)]
        x = self.cache.get(Need(Act.FINAL), world).clone()
        for out, clean, p in self._feeding(Slot.RESID, None, world, kids):
            if p is None:
                x += out[ar, end] - clean[ar, end]
            else:  # a named position adds to the final residual at END only if it is END
                hit = (p == end)[:, None].to(x.device)
                x += torch.where(hit, out[:, 0] - clean[ar, p], 0.0)
        return x


__all__ = ["Act", "CleanCache", "Need", "TreeEvaluator", "needs_of"]
