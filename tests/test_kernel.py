"""The functional GPT-2 kernel against Hugging Face and against the bridge's hooks."""

from __future__ import annotations

import copy

import pytest
import torch

from scrub.models import Model, Site, SiteKind, kernel
from scrub.models.kernel import (
    attention,
    embed,
    forward,
    mlp,
    unembed,
)
from scrub.models.weights import ModelWeights

ATOL = 1e-5


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL) -> None:
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def tokens_for(model: Model, batch: int = 3, pos: int = 9, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, model.info.d_vocab, (batch, pos), generator=g)


def per_head(x: torch.Tensor, n_heads: int = 4) -> torch.Tensor:
    return x[:, :, None].expand(-1, -1, n_heads, -1)


def test_weight_shapes_and_tied_unembedding(w: ModelWeights) -> None:
    lw = w.layers[0]
    assert len(w.layers) == 3 and w.n_heads == 4
    assert lw.W_Q.shape == lw.W_K.shape == lw.W_V.shape == (4, 32, 8)
    assert lw.b_Q.shape == (4, 8) and lw.W_O.shape == (4, 8, 32) and lw.b_O.shape == (32,)
    assert lw.W_in.shape == (32, 128) and lw.W_out.shape == (128, 32)
    assert w.W_E.shape == (40, 32) and w.W_pos.shape == (64, 32) and w.W_U.shape == (32, 40)
    assert torch.equal(w.W_U, w.W_E.T)
    assert w.has_mlps and lw.attn_scale == pytest.approx(8**0.5)


def test_has_mlps_false_for_attention_only(tiny_attn_only_model: Model) -> None:
    assert tiny_attn_only_model.weights.has_mlps is False


@pytest.mark.parametrize("seed", [0, 1])
def test_forward_matches_hf_logits(tiny_model: Model, w: ModelWeights, seed: int) -> None:
    tokens = tokens_for(tiny_model, seed=seed)
    with torch.no_grad():
        expected = tiny_model.hf_model(tokens).logits
    assert expected.std() > 1  # large enough that a 1e-5 match means something
    close(forward(w, tokens), expected)


def test_forward_matches_hf_attention_only(tiny_attn_only_model: Model) -> None:
    tokens = tokens_for(tiny_attn_only_model)
    with torch.no_grad():
        expected = tiny_attn_only_model.hf_model(tokens).logits
    close(forward(tiny_attn_only_model.weights, tokens), expected)


def test_forward_with_right_padding_matches_hf_at_real_positions(
    tiny_model: Model, w: ModelWeights
) -> None:
    tokens = tokens_for(tiny_model, batch=3, pos=10)
    lengths = [10, 6, 3]
    mask = torch.arange(10)[None, :] < torch.tensor(lengths)[:, None]
    tokens = tokens.masked_fill(~mask, 0)
    with torch.no_grad():
        expected = tiny_model.hf_model(tokens, attention_mask=mask.long()).logits
    got = forward(w, tokens, mask)
    assert torch.isfinite(got).all()
    for row, n in enumerate(lengths):
        close(got[row, :n], expected[row, :n])
        close(got[row, :n], forward(w, tokens[row : row + 1, :n])[0])


def test_components_equal_bridge_hooks(tiny_model: Model, w: ModelWeights) -> None:
    tokens = tokens_for(tiny_model)
    sites = [Site(SiteKind.EMBED), Site(SiteKind.RESID_FINAL)]
    for L in range(3):
        sites += [
            Site(k, L)
            for k in (
                SiteKind.RESID_PRE,
                SiteKind.Q_INPUT,
                SiteKind.HEAD_RESULT,
                SiteKind.PATTERN,
                SiteKind.ATTN_OUT,
                SiteKind.RESID_MID,
                SiteKind.MLP_OUT,
            )
        ]
    c = tiny_model.run_with_cache(tokens, sites)
    resid = embed(w, tokens)
    close(resid, c[Site(SiteKind.EMBED)])
    for L in range(3):
        close(per_head(resid), c[Site(SiteKind.Q_INPUT, L)])
        x = per_head(resid)
        result, pattern = attention(w, L, x, x, x)
        close(result, c[Site(SiteKind.HEAD_RESULT, L)])
        close(pattern, c[Site(SiteKind.PATTERN, L)])
        close(result.sum(2) + w.layers[L].b_O, c[Site(SiteKind.ATTN_OUT, L)])
        resid = resid + result.sum(2) + w.layers[L].b_O
        close(resid, c[Site(SiteKind.RESID_MID, L)])
        close(mlp(w, L, resid), c[Site(SiteKind.MLP_OUT, L)])
        resid = resid + mlp(w, L, resid)
    close(resid, c[Site(SiteKind.RESID_FINAL)])


def test_patched_key_input_agrees_with_bridge_hook_on_logit_difference(
    tiny_model: Model, w: ModelWeights
) -> None:
    """A slow reference (bridge hook) and the kernel compute the same patched metric."""
    clean, corrupt = tokens_for(tiny_model, seed=0), tokens_for(tiny_model, seed=1)
    L, h = 1, 2
    k_site = Site(SiteKind.K_INPUT, L)
    corrupt_k = tiny_model.run_with_cache(corrupt, [k_site])[k_site]

    def patch(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, :, h] = corrupt_k[:, :, h]
        return x

    slow = tiny_model.run(clean, [(k_site, patch)])

    resid = embed(w, clean)
    for layer in range(3):
        q = v = k = per_head(resid)
        if layer == L:
            k = k.clone()
            k[:, :, h] = corrupt_k[:, :, h]
        result, _ = attention(w, layer, q, k, v)
        resid = resid + result.sum(2) + w.layers[layer].b_O
        resid = resid + mlp(w, layer, resid)
    io, s = torch.tensor([5, 6, 7]), torch.tensor([8, 9, 10])
    fast = unembed(w, resid[:, -1], torch.stack([io, s], 1))
    rows = torch.arange(3)
    slow_diff = slow[rows, -1, io] - slow[rows, -1, s]
    unpatched = tiny_model.run(clean)
    assert (slow_diff - unpatched[rows, -1, io] + unpatched[rows, -1, s]).abs().max() > 1e-3
    close(fast[:, 0] - fast[:, 1], slow_diff)


def test_attention_on_selected_queries_equals_rows_of_full_attention(
    tiny_model: Model, w: ModelWeights
) -> None:
    tokens = tokens_for(tiny_model, pos=8)
    x = per_head(embed(w, tokens))
    full_result, full_pattern = attention(w, 0, x, x, x)
    pos = torch.tensor([2, 7])
    result, pattern = attention(w, 0, x[:, pos], x, x, q_positions=pos)
    close(result, full_result[:, pos])
    close(pattern, full_pattern[:, :, pos])
    # a different query position per row (e.g. END at a different index in each prompt)
    per_row = torch.tensor([[7], [3], [5]])
    rows = torch.arange(3)[:, None]
    result, pattern = attention(w, 0, x[rows, per_row], x, x, q_positions=per_row)
    close(result, full_result[rows, per_row])
    close(pattern[:, :, 0], full_pattern[torch.arange(3), :, per_row[:, 0]])
    assert torch.all(pattern[1, :, 0, 4:] == 0)  # query at 3 sees keys 0..3 only
    with pytest.raises(ValueError, match="pass q_positions"):
        attention(w, 0, x[:, pos], x, x)


def test_unembed_columns_gathers_only_requested_logits(tiny_model: Model, w: ModelWeights) -> None:
    resid = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(0))
    full = unembed(w, resid)
    assert full.shape == (3, 5, 40)
    cols = torch.tensor([[1, 2], [39, 0], [7, 7]])
    at_end = unembed(w, resid[:, -1], cols)
    assert at_end.shape == (3, 2)
    close(at_end, full[:, -1].gather(1, cols))
    all_pos = unembed(w, resid, cols)
    assert all_pos.shape == (3, 5, 2)
    close(all_pos, full.gather(2, cols[:, None].expand(-1, 5, -1)))


def test_from_checkpoint_names_unsupported_architectures() -> None:
    from scrub.models.weights import UnsupportedArchitecture, from_checkpoint

    with pytest.raises(UnsupportedArchitecture, match="no adapter for model_type 'gemma'"):
        from_checkpoint({"model_type": "gemma"}, {})
    with pytest.raises(UnsupportedArchitecture, match="has no weight"):
        from_checkpoint({"model_type": "gpt2", "n_embd": 8, "n_head": 2, "n_layer": 1}, {})


def test_self_attention_z_and_head_subsets_equal_full_attention(
    tiny_model: Model, w: ModelWeights
) -> None:
    from scrub.models.kernel import embed, self_attention_z

    tokens = tokens_for(tiny_model)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[0, -2:] = False
    x = embed(w, tokens)
    full, _ = attention(w, 1, per_head(x), per_head(x), per_head(x), mask)
    z = self_attention_z(w, 1, x, mask)
    lw = w.layers[1]
    by_head = torch.stack([z[:, :, h] @ lw.W_O[h] for h in range(4)], 2)
    close(by_head[1:], full[1:])
    close(by_head[0, :-2], full[0, :-2])
    one, _ = attention(w, 1, per_head(x, 1), per_head(x, 1), per_head(x, 1), mask, heads=[2])
    close(one[:, :, 0], full[:, :, 2])


def test_zero_mlps_are_skipped_bit_for_bit(tiny_attn_only_model: Model) -> None:
    """An attention-only model stored as a GPT-2 (MLPs exactly zero) skips its MLPs, and the
    skip gives exactly what the plain MLP arithmetic gives."""
    from dataclasses import replace

    from torch.nn.functional import layer_norm

    from scrub.models.kernel import add_mlp

    w = tiny_attn_only_model.weights
    assert all(lw.mlp_is_zero for lw in w.layers)
    tokens = tokens_for(tiny_attn_only_model)
    x = embed(w, tokens)
    lw = w.layers[0]
    h = layer_norm(x, x.shape[-1:], lw.norm2_w, lw.norm2_b, w.eps) @ lw.W_in + lw.b_in
    plain = torch.nn.functional.gelu(h, approximate="tanh") @ lw.W_out + lw.b_out
    assert torch.equal(mlp(w, 0, x), plain) and torch.equal(add_mlp(w, 0, x), x + plain)
    unskipped = replace(w, layers=tuple(replace(lw, mlp_is_zero=False) for lw in w.layers))
    assert torch.equal(forward(w, tokens), forward(unskipped, tokens))


@pytest.mark.parametrize("param", ["weight", "bias"])
def test_mlp_nonzero_only_in_its_output_is_not_skipped(tiny_model: Model, param: str) -> None:
    hf = copy.deepcopy(tiny_model.hf_model)
    c_proj = hf.transformer.h[1].mlp.c_proj
    with torch.no_grad():
        for p in (c_proj.weight, c_proj.bias):
            p.zero_()
        getattr(c_proj, param)[0] = 0.5
    w = ModelWeights.from_hf(hf)
    assert [lw.mlp_is_zero for lw in w.layers] == [False, False, False]
    tokens = tokens_for(tiny_model)
    with torch.no_grad():
        close(forward(w, tokens), hf(tokens).logits)
    with torch.no_grad():
        for p in (c_proj.weight, c_proj.bias):
            p.zero_()
    assert [lw.mlp_is_zero for lw in ModelWeights.from_hf(hf).layers] == [False, True, False]


@pytest.mark.parametrize("gemm", ["onednn", "addmm"])
def test_linear_equals_a_plain_matmul_on_either_gemm_path(monkeypatch, gemm: str) -> None:
    """Both GEMM paths of kernel.linear (oneDNN for dense float32 weights, MKL's addmm
    otherwise or when forced) give x @ W + b: 3-d input, a strided weight, float64."""
    monkeypatch.setenv("SCRUB_GEMM", gemm)
    kernel._use_onednn.cache_clear()
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(5, 7, 64, generator=g)
        fused = torch.randn(64, 96, generator=g)
        b = torch.randn(48, generator=g)
        for W in (fused[:, :48].contiguous(), fused[:, 48:]):  # dense, then a strided view
            want = (x.double() @ W.double() + b.double()).float()
            close(kernel.linear(x, W, b), want, atol=1e-5)
        got64 = kernel.linear(x.double(), fused.double(), torch.zeros(96, dtype=torch.float64))
        close(got64, x.double() @ fused.double(), atol=1e-12)
    finally:
        kernel._use_onednn.cache_clear()
