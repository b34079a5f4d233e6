"""Activation patching: replace one component's output with its corrupted-run value.

Semantics (noising): the clean prompts run, one component's output is replaced by its value on the
row-aligned corrupted prompt, the rest of the model runs freely, and the metric is the logit
difference logit(IO) - logit(S) at END under the clean answers.

How it is made fast (same arithmetic as one full forward pass per patch, less work):

* the clean and corrupted runs are computed once and cached (residual streams, per-head z, MLP
  outputs) with the functional kernel, no hooks;
* a patch starts at the layer it changes, from the cached clean residual stream;
* all patches starting at one layer share one batched pass (chunked to a memory budget);
* the last layer computes its queries, its MLP and the unembedding at END only, and only the two
  answer columns.

>>> inputs = PatchInputs.from_promptsets(clean_ps, corrupted_ps)     # doctest: +SKIP
>>> result = activation_scan(model, inputs, "heads", position="END")  # doctest: +SKIP
>>> result.to_frame().head()                                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from scrub.models.runs import RunCache, run_free
from scrub.models.weights import ModelWeights
from scrub.patching.inputs import (
    DEFAULT_BUDGET_BYTES,
    Component,
    PatchInputs,
    batch_rows,
    chunk_size,
    progress_bar,
    run_caches,
    run_logit_diffs,
)
from scrub.patching.results import PatchResult, PatchSettings, build_result, check_normalization

#: Components activation patching can replace.
ACTIVATION_KINDS = ("head", "resid_pre", "attn_out", "mlp_out")


def _start_state(
    w: ModelWeights, clean: RunCache, corrupt: RunCache, comp: Component, where: Tensor
) -> tuple[Tensor, int, bool]:
    """The residual stream where a patch of ``comp`` first changes the run: (state, layer, mid),
    with ``mid`` when the state is ``layer``'s MLP input after attention (sequential blocks)."""
    m = where[..., None].to(clean.resid_pre[comp.layer].device)
    layer = comp.layer
    if comp.kind == "attn_out" and not w.parallel:  # the whole attention output, swapped
        out = torch.where(m, corrupt.attn_out[layer], clean.attn_out[layer])
        return clean.resid_pre[layer] + out, layer, True
    if comp.kind in ("head", "attn_out"):
        if comp.kind == "head":
            delta = (
                corrupt.head_result(w, layer, comp.head) - clean.head_result(w, layer, comp.head)
            ) * m
        else:
            delta = torch.where(m, corrupt.attn_out[layer] - clean.attn_out[layer], 0.0)
        if w.parallel:  # the MLP of this block does not read its attention
            return clean.resid_pre[layer + 1] + delta, layer + 1, False
        return clean.resid_mid[layer] + delta, layer, True
    if comp.kind == "mlp_out":
        out = torch.where(m, corrupt.mlp_out[layer], clean.mlp_out[layer])
        return clean.resid_mid[layer] + out, layer + 1, False
    state = torch.where(m, corrupt.resid_pre[layer], clean.resid_pre[layer])
    return state, layer, False


def activation_patch(
    w: ModelWeights,
    inputs: PatchInputs,
    components: Sequence[Component],
    *,
    caches: tuple[RunCache, RunCache] | None = None,
    progress: bool = False,
    budget: int = DEFAULT_BUDGET_BYTES,
) -> Float[Tensor, "component n"]:
    """Per-example logit differences with each component patched from the corrupted run.

    Equals one full forward pass per component with that component's output replaced (tested
    against hooks and against ``transformer_lens.patching``).

    >>> activation_patch(w, inputs, [Component("head", 0, 1, "END")]).shape   # doctest: +SKIP
    torch.Size([1, 50])
    """
    n_layers, n_heads = len(w.layers), w.n_heads
    for comp in components:
        comp.check(n_layers, n_heads, ACTIVATION_KINDS)
    wheres = [inputs.position_mask(c.position) for c in components]  # validates positions early
    clean, corrupt = caches or run_caches(w, inputs)
    out = torch.full((len(components), inputs.n), float("nan"), dtype=w.dtype)
    groups: dict[tuple[int, bool], list[tuple[int, Tensor]]] = {}
    with torch.no_grad():
        for i, (comp, where) in enumerate(zip(components, wheres)):
            state, layer, mid = _start_state(w, clean, corrupt, comp, where)
            groups.setdefault((layer, mid), []).append((i, state))
        n, t = inputs.clean.shape
        size = chunk_size(n, t, w.d_model, budget)
        chunks = [
            (key, items[j : j + size])
            for key, items in groups.items()
            for j in range(0, len(items), size)
        ]
        for (layer, mid), items in progress_bar(chunks, progress, "activation patching"):
            k = len(items)
            ld = run_free(
                w,
                torch.cat([s for _, s in items]),
                layer,
                batch_rows(inputs.mask, k),
                batch_rows(inputs.end, k),
                batch_rows(inputs.answers, k),
                mid=mid,
            )
            out[[i for i, _ in items]] = ld.reshape(k, n).cpu()
    return out


def scan_components(
    kind: str, n_layers: int, n_heads: int, position: str | None, width: int
) -> list[Component]:
    """Every component of ``kind``; ``position="each"`` scans every token index too."""
    positions: list[str | int | None] = list(range(width)) if position == "each" else [position]
    heads: list[int | None] = list(range(n_heads)) if kind == "head" else [None]
    return [
        Component(kind, layer, h, p) for layer in range(n_layers) for h in heads for p in positions
    ]


def activation_scan(
    model: Any,
    inputs: PatchInputs,
    kind: str = "head",
    *,
    position: str | None = None,
    normalization: str = "clean",
    progress: bool = False,
    settings: dict[str, Any] | None = None,
) -> PatchResult:
    """Patch every component of ``kind`` (every head, every layer, or every (layer, position)).

    >>> res = activation_scan(model, inputs, "resid_pre", position="each")    # doctest: +SKIP
    >>> res.to_frame().pivot(index="layer", columns="position")  # doctest: +SKIP
    """
    normalization = check_normalization(normalization)
    info = model.info
    comps = scan_components(kind, info.n_layers, info.n_heads, position, inputs.clean.shape[1])
    if model.weights is None:  # the hook backend: one bridge pass per component
        from scrub.patching import hooked

        for c in comps:
            c.check(info.n_layers, info.n_heads, ACTIVATION_KINDS)
        per_example = hooked.activation_patch(model, inputs, comps)
        clean_ld, corrupt_ld = (
            hooked.run_logit_diff(model, x, inputs).cpu() for x in (inputs.clean, inputs.corrupted)
        )
    else:
        w = model.weights
        caches = run_caches(w, inputs)
        per_example = activation_patch(w, inputs, comps, caches=caches, progress=progress)
        clean_ld, corrupt_ld = run_logit_diffs(w, caches, inputs)
    stated = PatchSettings(
        experiment="activation",
        model=model.info.name,
        senders=kind,
        sender_position=position,
        receivers="logits",
        receiver_position=None,
        mlps="n/a",
        normalization=normalization,
        n=inputs.n,
        **(settings or {}),
    )
    return build_result(stated, clean_ld, corrupt_ld, [c.label for c in comps], per_example)
