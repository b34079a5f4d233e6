"""An edge-resolved forward pass of a GPT-2 on the functional kernel, differentiable.

Every head's q, k and v inputs are the residual stream, except that chosen edges (a sender head
at a named position -> a receiver's slot) read the sender's *corrupted* output there instead of
its current one (ACDC's patching of single edges). The logits read the final residual at END,
with their own removed edges. MLPs, if any, read the residual stream as it is (they are not
edge-resolved). With ``grad=True`` the per-head slot inputs and outputs keep their gradients,
which is all EAP needs.

>>> cut = Removal.of(edges, inputs, n_layers=4, n_heads=4)                  # doctest: +SKIP
>>> forward(w, inputs.clean, inputs, removed=cut, corrupted=outs).logit_diff  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from scrub.discover.space import Edge
from scrub.models import kernel
from scrub.models.weights import ModelWeights


@dataclass
class Run:
    """Per-example logit difference, per-layer head outputs and the slot inputs (for gradients)."""

    logit_diff: Float[Tensor, " n"]
    outputs: list[Float[Tensor, "n t head d"]]  # result of each head (no b_O), per layer
    slots: list[dict[str, Tensor]]  # per layer: {"q"|"k"|"v": [n, t, head, d] inputs}
    final: Float[Tensor, "n t d"]


SLOT_INDEX = {"q": 0, "k": 1, "v": 2}


class Removal:
    """Which edges read the corrupted sender: one 0/1 tensor per receiver layer, rows (prompt,
    token) by (slot, receiver head) by (sender layer, head), plus [n, layer * head] for the
    logits at END. Edges are set and cleared in place (ACDC tries one at a time)."""

    def __init__(self, inputs, n_layers: int, n_heads: int):
        n, t = inputs.clean.shape
        self.inputs, self.n_heads = inputs, n_heads
        # per receiver layer: [n * t, (q|k|v) x receiver head, sender layer x head], for one bmm
        self.slots = {
            layer: torch.zeros(n * t, 3 * n_heads, layer * n_heads) for layer in range(1, n_layers)
        }
        self._t = t
        self.logits = torch.zeros(n, n_layers * n_heads)
        self._rows = torch.arange(n)

    def set(self, e: Edge, value: float = 1.0) -> None:
        s = e.sender
        col = s.layer * self.n_heads + s.head
        at = self.inputs.positions[s.position]
        if e.receiver is None:
            self.logits[:, col] = value * (at == self.inputs.positions["END"]).float()
        else:
            row = self._rows * self._t + at
            recv = SLOT_INDEX[e.slot] * self.n_heads + e.receiver[1]
            self.slots[e.receiver[0]][row, recv, col] = value

    @classmethod
    def of(cls, edges: Iterable[Edge], inputs, n_layers: int, n_heads: int) -> Removal:
        r = cls(inputs, n_layers, n_heads)
        for e in edges:
            r.set(e)
        return r


def forward(
    w: ModelWeights,
    tokens,
    inputs,
    *,
    removed: Removal | None = None,
    corrupted: list[Tensor] | None = None,
    grad: bool = False,
) -> Run:
    """Run ``tokens`` (rows aligned with ``inputs``) with ``removed`` edges reading ``corrupted``
    head outputs (from a plain run of the corrupted prompts)."""
    n, t = tokens.shape
    n_heads = w.n_heads
    rows = torch.arange(n)
    end = inputs.positions["END"]
    resid = kernel.embed(w, tokens)
    if grad:
        resid.requires_grad_()
    outputs: list[Tensor] = []
    slots: list[dict[str, Tensor]] = []
    d = resid.shape[-1]
    cut = removed is not None and corrupted is not None
    for layer, lw in enumerate(w.layers):
        base = resid[:, :, None].expand(-1, -1, n_heads, -1)
        if cut and layer:
            # sum over removed senders of (corrupted - current output), per receiver slot
            delta = torch.cat([c - o for c, o in zip(corrupted, outputs)], 2).reshape(n * t, -1, d)
            change = torch.bmm(removed.slots[layer], delta).view(n, t, 3, n_heads, d)
            ins = {s: base + change[:, :, i] for s, i in SLOT_INDEX.items()}
        else:
            ins = {s: base + 0.0 for s in SLOT_INDEX}  # its own tensor, for its own gradient
        if grad:
            for x in ins.values():
                x.retain_grad()
        result, _ = kernel.attention(w, layer, ins["q"], ins["k"], ins["v"], inputs.mask)
        if grad:
            result.retain_grad()
        outputs.append(result)
        slots.append(ins)
        resid = kernel.block_out(w, layer, resid, result.sum(2) + lw.b_O)
    final = resid
    if cut:
        delta = torch.cat([c[rows, end] - o[rows, end] for c, o in zip(corrupted, outputs)], 1)
        final = final.clone()
        final[rows, end] = final[rows, end] + torch.einsum("bs,bsd->bd", removed.logits, delta)
    if grad:
        final.retain_grad()
    logits = kernel.unembed(w, final[rows, end][:, None], inputs.answers)[:, 0]
    return Run(logits[:, 0] - logits[:, 1], outputs, slots, final)
