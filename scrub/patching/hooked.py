"""The hook backend of path patching: two full bridge passes per sender (Wang et al. 2022,
App. B, as ARENA writes it). Slow and obviously correct: models the kernel cannot express run on
it, and the tests use it as the independent reference for the fast path (:mod:`.path`).
"""

from __future__ import annotations

import torch

from scrub.metrics import logit_diff
from scrub.models import Model, Site, SiteKind
from scrub.patching.inputs import Component, PatchInputs

SLOT_SITES = {"q": SiteKind.Q_INPUT, "k": SiteKind.K_INPUT, "v": SiteKind.V_INPUT}


def _per_example_ld(logits: torch.Tensor, inputs: PatchInputs) -> torch.Tensor:
    return logit_diff(logits[torch.arange(inputs.n), inputs.end], inputs.answers)


def reference_caches(model: Model, inputs: PatchInputs) -> tuple[dict, dict]:
    L = model.info.n_layers
    sites = [Site(SiteKind.Z, i) for i in range(L)] + [Site(SiteKind.MLP_OUT, i) for i in range(L)]
    clean = model.run_with_cache(inputs.clean, sites, attn_mask=inputs.mask)
    corrupt = model.run_with_cache(inputs.corrupted, sites, attn_mask=inputs.mask)
    return clean, corrupt


def reference_path_patch(
    model: Model,
    inputs: PatchInputs,
    sender: Component,
    receivers,
    mlps: str,
    caches: tuple[dict, dict],
) -> torch.Tensor:
    """Per-example logit differences: two full hooked passes (one for logits receivers)."""
    clean, corrupt = caches
    smask = inputs.position_mask(sender.position)

    def freeze_z(layer: int):
        def fn(z: torch.Tensor) -> torch.Tensor:
            new = clean[Site(SiteKind.Z, layer)].clone()
            if sender.kind == "head" and sender.layer == layer:
                h = sender.head
                bad = corrupt[Site(SiteKind.Z, layer)][:, :, h]
                new[:, :, h] = torch.where(smask[..., None], bad, new[:, :, h])
            return new

        return fn

    def mlp_hook(layer: int):
        def fn(m: torch.Tensor) -> torch.Tensor:
            base = clean[Site(SiteKind.MLP_OUT, layer)] if mlps == "frozen" else m
            if sender.kind == "mlp" and sender.layer == layer:
                bad = corrupt[Site(SiteKind.MLP_OUT, layer)]
                return torch.where(smask[..., None], bad, base)
            return base

        return fn

    L = model.info.n_layers
    first = [(Site(SiteKind.Z, i), freeze_z(i)) for i in range(L)]
    first += [(Site(SiteKind.MLP_OUT, i), mlp_hook(i)) for i in range(L)]
    if receivers.slot == "logits":
        return _per_example_ld(model.run(inputs.clean, first, inputs.mask), inputs)
    layers = sorted({lay for lay, _ in receivers.heads})
    kind = SLOT_SITES[receivers.slot]
    captured = model.run_with_cache(
        inputs.clean, [Site(kind, lay) for lay in layers], first, inputs.mask
    )
    rmask = inputs.position_mask(receivers.position)[:, :, None, None]

    ratio = model.info.n_heads // model.info.n_kv_heads

    def patch_in(layer: int):
        heads = [h for lay, h in receivers.heads if lay == layer]
        if receivers.slot != "q":  # k and v inputs are per key/value group
            heads = sorted({h // ratio for h in heads})

        def fn(x: torch.Tensor) -> torch.Tensor:
            x = x.clone()
            x[:, :, heads] = torch.where(
                rmask, captured[Site(kind, layer)][:, :, heads], x[:, :, heads]
            )
            return x

        return fn

    second = [(Site(kind, lay), patch_in(lay)) for lay in layers]
    return _per_example_ld(model.run(inputs.clean, second, inputs.mask), inputs)


def run_logit_diff(model: Model, tokens: torch.Tensor, inputs: PatchInputs) -> torch.Tensor:
    """One plain pass's per-example logit differences."""
    return _per_example_ld(model.run(tokens, attn_mask=inputs.mask), inputs)


_OUTPUT_SITES = {
    "head": SiteKind.HEAD_RESULT,
    "resid_pre": SiteKind.RESID_PRE,
    "attn_out": SiteKind.ATTN_OUT,
    "mlp_out": SiteKind.MLP_OUT,
}


def activation_patch(
    model: Model, inputs: PatchInputs, components: list[Component]
) -> torch.Tensor:
    """Per-example logit differences with each component's output replaced by its corrupted
    value at its positions: one corrupted pass, then one hooked clean pass per component."""
    sites = sorted({Site(_OUTPUT_SITES[c.kind], c.layer) for c in components}, key=str)
    bad = model.run_with_cache(inputs.corrupted, sites, attn_mask=inputs.mask)
    out = []
    for c in components:
        site = Site(_OUTPUT_SITES[c.kind], c.layer)
        where = inputs.position_mask(c.position).to(bad[site].device)[..., None]

        def hook(x: torch.Tensor, c=c, site=site, where=where) -> torch.Tensor:
            x = x.clone()
            if c.kind == "head":
                x[:, :, c.head] = torch.where(where, bad[site][:, :, c.head], x[:, :, c.head])
                return x
            return torch.where(where, bad[site], x)

        out.append(_per_example_ld(model.run(inputs.clean, [(site, hook)], inputs.mask), inputs))
    return torch.stack(out).cpu()
