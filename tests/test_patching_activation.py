"""Fast activation patching against transformer_lens's own ``patching`` module and plain hooks.

transformer_lens 4.3's ``transformer_lens.patching`` works with the TransformerBridge (it patches
by hook name: hook_z, hook_resid_pre, hook_attn_out, hook_mlp_out). Its functions patch a cached
activation into a run of other tokens; our noising experiment (corrupted values into the clean
run) is its call with the clean tokens and the corrupted run's cache.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens import patching as tl_patching

from scrub.errors import ScrubError
from scrub.models import Model, Site, SiteKind
from scrub.patching import Component, PatchInputs, activation_patch, activation_scan

ATOL = 1e-5


def tiny_inputs(n: int = 5, t: int = 7, vocab: int = 40, seed: int = 1) -> PatchInputs:
    """Random right-padded prompts: per-row END and S2 positions."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([t, t - 2, t, t - 1, t - 3][:n])
    mask = torch.arange(t)[None] < lengths[:, None]
    clean = torch.randint(2, vocab, (n, t), generator=g).masked_fill(~mask, 0)
    corrupted = torch.randint(2, vocab, (n, t), generator=g).masked_fill(~mask, 0)
    answers = torch.randint(2, vocab, (n, 2), generator=g)
    s2 = torch.tensor([2, 3, 1, 4, 2][:n])
    return PatchInputs(clean, corrupted, mask, answers, {"END": lengths - 1, "S2": s2})


@pytest.fixture(scope="module")
def inputs() -> PatchInputs:
    return tiny_inputs()


def _metric(inputs: PatchInputs):
    def metric(logits: torch.Tensor) -> torch.Tensor:
        pair = logits[torch.arange(inputs.n), inputs.end].gather(1, inputs.answers)
        return (pair[:, 0] - pair[:, 1]).mean()

    return metric


@pytest.fixture(scope="module")
def corrupted_cache(tiny_model: Model, inputs: PatchInputs):
    # Right padding needs no mask for real positions: a causal query never sees later padding.
    _, cache = tiny_model.bridge.run_with_cache(inputs.corrupted)
    return cache


def _ours(w, inputs, comps, shape) -> torch.Tensor:
    return activation_patch(w, inputs, comps).mean(1).reshape(shape)


def test_heads_all_positions_equal_transformer_lens(tiny_model, w, inputs, corrupted_cache):
    tl = tl_patching.get_act_patch_attn_head_out_all_pos(
        tiny_model.bridge, inputs.clean, corrupted_cache, _metric(inputs)
    )
    comps = [Component("head", layer, h) for layer in range(3) for h in range(4)]
    ours = _ours(w, inputs, comps, (3, 4))
    torch.testing.assert_close(ours, tl.float(), atol=ATOL, rtol=0)
    assert tl.std() > 1e-2  # able to fail


def test_heads_by_position_equal_transformer_lens(tiny_model, w, inputs, corrupted_cache):
    tl = tl_patching.get_act_patch_attn_head_out_by_pos(
        tiny_model.bridge, inputs.clean, corrupted_cache, _metric(inputs)
    )  # [layer, pos, head]
    t = inputs.clean.shape[1]
    comps = [Component("head", L, h, p) for L in range(3) for p in range(t) for h in range(4)]
    torch.testing.assert_close(_ours(w, inputs, comps, (3, t, 4)), tl.float(), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("kind", "tl_fn"),
    [
        ("resid_pre", tl_patching.get_act_patch_resid_pre),
        ("attn_out", tl_patching.get_act_patch_attn_out),
        ("mlp_out", tl_patching.get_act_patch_mlp_out),
    ],
)
def test_layer_position_scans_equal_transformer_lens(
    tiny_model, w, inputs, corrupted_cache, kind, tl_fn
):
    tl = tl_fn(tiny_model.bridge, inputs.clean, corrupted_cache, _metric(inputs))  # [layer, pos]
    t = inputs.clean.shape[1]
    comps = [Component(kind, L, None, p) for L in range(3) for p in range(t)]
    torch.testing.assert_close(_ours(w, inputs, comps, (3, t)), tl.float(), atol=ATOL, rtol=0)
    assert tl.std() > 1e-2


def reference_activation_patch(model: Model, inputs: PatchInputs, comp: Component) -> torch.Tensor:
    """One hooked full pass: the component's activation replaced at its (per-row) positions."""
    kind = {
        "head": SiteKind.Z,
        "resid_pre": SiteKind.RESID_PRE,
        "attn_out": SiteKind.ATTN_OUT,
        "mlp_out": SiteKind.MLP_OUT,
    }[comp.kind]
    site = Site(kind, comp.layer)
    bad = model.run_with_cache(inputs.corrupted, [site], attn_mask=inputs.mask)[site]
    where = inputs.position_mask(comp.position)[..., None]

    def hook(x: torch.Tensor) -> torch.Tensor:
        if comp.kind == "head":
            x = x.clone()
            x[:, :, comp.head] = torch.where(where, bad[:, :, comp.head], x[:, :, comp.head])
            return x
        return torch.where(where, bad, x)

    logits = model.run(inputs.clean, [(site, hook)], inputs.mask)
    pair = logits[torch.arange(inputs.n), inputs.end].gather(1, inputs.answers)
    return pair[:, 0] - pair[:, 1]


@pytest.mark.parametrize("position", [None, "END", "S2"])
@pytest.mark.parametrize("kind", ["head", "resid_pre", "attn_out", "mlp_out"])
def test_named_positions_equal_hook_reference(tiny_model, w, inputs, kind, position):
    heads = [0, 3] if kind == "head" else [None]
    comps = [Component(kind, L, h, position) for L in range(3) for h in heads]
    fast = activation_patch(w, inputs, comps)
    slow = torch.stack([reference_activation_patch(tiny_model, inputs, c) for c in comps])
    torch.testing.assert_close(fast, slow, atol=ATOL, rtol=0)


def test_scan_frame_and_json(tiny_model, inputs):
    res = activation_scan(tiny_model, inputs, "resid_pre", position="each")
    frame = res.to_frame()
    assert len(frame) == 3 * inputs.clean.shape[1]
    assert {"layer", "position", "logit_diff", "normalized", "experiment", "mlps"} <= set(frame)
    # Layer 0's residual stream patched at every position is the corrupted run itself.
    whole = activation_scan(tiny_model, inputs, "resid_pre").to_frame()
    assert whole["normalized"].iloc[0] == pytest.approx(0.0, abs=1e-4)
    assert res.to_json()["scores"][0]["position"] == 0


def test_errors(w, inputs):
    with pytest.raises(ScrubError, match="no position named 'IO'"):
        activation_patch(w, inputs, [Component("head", 0, 0, "IO")])
    with pytest.raises(ScrubError, match="head 0.4 does not exist"):
        activation_patch(w, inputs, [Component("head", 0, 4)])
    with pytest.raises(ScrubError, match="layer 3 does not exist"):
        activation_patch(w, inputs, [Component("mlp_out", 3)])
    with pytest.raises(ScrubError, match="unknown component kind"):
        activation_patch(w, inputs, [Component("mlp", 0)])


def test_heatmap_pngs():
    from scrub.patching.views import dla_png, patterns_png

    pats = torch.rand(2, 5, 5).tril().numpy()
    assert patterns_png(pats, [(0, 1), (2, 3)], [f"t{i}" for i in range(5)])[:4] == b"\x89PNG"
    assert dla_png(torch.randn(3, 4))[:4] == b"\x89PNG"
