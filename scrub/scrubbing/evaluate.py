"""Fast evaluation of a treeified hypothesis on the functional kernel.

Why this is exact and cheap: in the treeified model, every tree node's *world* is a clean run on
one dataset row, except for the node's own components, whose slot inputs are patched by their
children (design.md, "Causal-scrubbing semantics"). Clean runs on the same row are identical, so
one batched clean pass over the distinct rows an assignment uses provides every world; the pass
keeps only the activations some node reads, and a row stops after the last layer anything reads
from it. Then each internal node recomputes just its own components (only at their positions,
one head at a time) from patched slot inputs, bottom-up, and the output node unembeds only END,
only the two answer columns when the metric is the logit difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from scrub.models import kernel
from scrub.scrubbing.hypothesis import Component, Head, Mlp, Slot
from scrub.scrubbing.tree import Assignment, TreeNode
from scrub.scrubbing.validate import can_feed


@dataclass(frozen=True)
class Need:
    """An activation of the clean pass: kind in {embed, resid_pre, resid_mid, head, mlp, final}."""

    kind: str
    layer: int = -1
    head: int = -1


def _source(c: Component) -> Need:
    """The clean activation holding ``c``'s output."""
    if isinstance(c, Head):
        return Need("head", c.layer, c.head)
    if isinstance(c, Mlp):
        return Need("mlp", c.layer)
    return Need("embed")


def _slot_base(c: Component) -> Need:
    """The clean activation ``c``'s slots read before patching."""
    return Need("resid_pre", c.layer) if isinstance(c, Head) else Need("resid_mid", c.layer)


def _depth(need: Need, n_layers: int) -> int:
    return n_layers if need.kind == "final" else max(need.layer, 0)


class CleanCache:
    """Activations of one batched clean pass, gathered by dataset row."""

    def __init__(
        self,
        w: kernel.GPT2Weights,
        tokens: Int[Tensor, "n t"],
        mask: Bool[Tensor, "n t"],
        needs: Mapping[Need, np.ndarray],
        *,
        max_bytes: int,
        progress: bool = False,
    ):
        n_layers = len(w.layers)
        rows = np.unique(np.concatenate([np.asarray(r) for r in needs.values()]))
        self._index = np.full(tokens.shape[0], -1, dtype=np.int64)
        depth = np.zeros(len(rows), dtype=np.int64)
        self._index[rows] = np.arange(len(rows))
        self._members: dict[Need, tuple[np.ndarray, Tensor]] = {}
        t, d = tokens.shape[1], w.W_E.shape[1]
        for need, r in needs.items():
            r = np.unique(np.asarray(r))
            slot = np.full(len(rows), -1, dtype=np.int64)
            slot[self._index[r]] = np.arange(len(r))
            self._members[need] = (slot, torch.empty(len(r), t, d, dtype=w.W_E.dtype))
            depth[self._index[r]] = np.maximum(depth[self._index[r]], _depth(need, n_layers))
        # Deepest rows first, so the rows still running at any layer are a prefix of the chunk.
        order = np.argsort(-depth, kind="stable")
        h = w.n_heads
        per_row = 4 * t * (d * (h + 10) + 2 * h * t + 4 * d)  # live float32 bytes of one row
        # Chunks of at most 128 rows: larger batches stop getting faster on a CPU and only cost
        # memory (measured on GPT-2-small shapes).
        chunk = max(1, min(128, int(max_bytes // per_row)))
        starts = range(0, len(order), chunk)
        if progress and len(starts) > 1:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="scrub pass", unit="chunk")
        with torch.no_grad():
            for s in starts:
                idx = order[s : s + chunk]
                self._run(w, tokens[rows[idx]], mask[rows[idx]], idx, depth[idx], n_layers)
        self.n_rows = len(rows)

    def _store(self, need: Need, idx: np.ndarray, act: Tensor) -> None:
        member = self._members.get(need)
        if member is None:
            return
        slot, buf = member
        at = slot[idx[: act.shape[0]]]
        keep = at >= 0
        if keep.any():
            buf[torch.from_numpy(at[keep])] = act[torch.from_numpy(keep)]

    def _run(self, w, tokens, mask, idx, depth, n_layers) -> None:
        resid = kernel.embed(w, tokens)
        self._store(Need("embed"), idx, resid)
        for layer, lw in enumerate(w.layers):
            active = int((depth >= layer).sum())
            if active == 0:
                return
            resid, mask = resid[:active], mask[:active]
            self._store(Need("resid_pre", layer), idx, resid)
            z = kernel.self_attention_z(w, layer, resid, mask)
            for hd in range(w.n_heads):  # per-head results only for heads some node reads
                if Need("head", layer, hd) in self._members:
                    self._store(Need("head", layer, hd), idx, z[:, :, hd] @ lw.W_O[hd])
            resid = resid + z.flatten(2) @ lw.W_O.flatten(0, 1) + lw.b_O
            self._store(Need("resid_mid", layer), idx, resid)
            out = kernel.mlp(w, layer, resid)
            self._store(Need("mlp", layer), idx, out)
            resid = resid + out
        self._store(Need("final"), idx, resid[: int((depth >= n_layers).sum())])

    def get(self, need: Need, rows: np.ndarray) -> Float[Tensor, "n t d"]:
        slot, buf = self._members[need]
        return buf[torch.from_numpy(slot[self._index[rows]])]


def needs_of(
    tree: TreeNode, a: Assignment, ref: np.ndarray, random_rows: np.ndarray
) -> dict[Need, list[np.ndarray]]:
    """Which clean activations the evaluation reads, on which rows."""
    needs: dict[Need, list[np.ndarray]] = {Need("final"): [ref, random_rows, a.other[tree.path]]}

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
                    add(_slot_base(c), world)
    return needs


def _positions(pos: Mapping[str, Tensor], name: str | None, rows: np.ndarray) -> Tensor | None:
    return None if name is None else pos[name][torch.from_numpy(rows)]


class TreeEvaluator:
    """Bottom-up computation of every tree node's component outputs from a :class:`CleanCache`."""

    def __init__(
        self,
        w: kernel.GPT2Weights,
        cache: CleanCache,
        a: Assignment,
        positions: Mapping[str, Tensor],
        mask: Bool[Tensor, "n t"],
    ):
        self.w, self.cache, self.a, self.pos, self.mask = w, cache, a, positions, mask

    def outputs(self, t: TreeNode) -> dict[Component, Tensor]:
        """Each component's output [n, 1, d] at its named position or [n, t, d] at all."""
        world = self.a.world(t)
        if t.is_leaf:
            return {
                c: self._at(self.cache.get(_source(c), world), c.position, world)
                for c in t.node.components
            }
        kids = [(k, self.outputs(k)) for k in t.children]
        return {c: self._recompute(c, world, kids) for c in t.node.components}

    def _at(self, act: Tensor, position: str | None, rows: np.ndarray) -> Tensor:
        p = _positions(self.pos, position, rows)
        return act if p is None else act[torch.arange(len(rows)), p][:, None]

    def patched_slot(
        self, base: Tensor, slot: Slot, target: Component | None, world: np.ndarray, kids
    ) -> Tensor:
        """``base`` (clean, world rows) minus the children's clean outputs plus their outputs."""
        x = base.clone()
        ar = torch.arange(len(world))
        for kid, outs in kids:
            if kid.slot is not slot:
                continue
            for c, out in outs.items():
                if not can_feed(c, target, slot):
                    continue
                clean = self.cache.get(_source(c), world)
                p = _positions(self.pos, c.position, world)
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
        end = self.pos["END"][torch.from_numpy(world)]
        base = self.cache.get(Need("final"), world)
        x = self.patched_slot(base, Slot.RESID, None, world, kids)
        return x[torch.arange(len(world)), end]


__all__ = ["CleanCache", "Need", "TreeEvaluator", "needs_of"]
