"""Attention patterns and DLA through the model API, against the functional kernel and against
the decomposition of the final residual (the attributions of all its pieces sum to the logit
difference the model outputs)."""

from __future__ import annotations

import pytest
import torch

from scrub.errors import ScrubError
from scrub.models import Site, SiteKind
from scrub.models.kernel import attention
from scrub.models.weights import Norm
from scrub.patching import inspect as insp
from scrub.patching import run_cache


def kernel_patterns(w, inputs, heads, row=0):
    """Reference: the clean run's patterns from the kernel's per-head attention."""
    length = int(inputs.mask[row].sum())
    tokens = inputs.clean[row : row + 1, :length]
    cache = run_cache(w, tokens, inputs.mask[row : row + 1, :length], inputs.end[row : row + 1])
    out = []
    for layer, head in heads:
        x = cache.resid_pre[layer][:, :, None].expand(-1, -1, w.n_heads, -1)
        _, pattern = attention(w, layer, x, x, x)
        out.append(pattern[0, head])
    return torch.stack(out)


def kernel_dla(w, inputs):
    """Reference: DLA from the kernel's cached run (z at END through W_O, final norm frozen)."""
    cache = run_cache(w, inputs.clean, inputs.mask, inputs.end)
    rows, end, final = torch.arange(inputs.n), inputs.end, cache.final_end
    centre = w.norm is Norm.LAYER
    spread = final.var(-1, unbiased=False, keepdim=True) if centre else final.pow(2).mean(-1, True)
    scale = (spread + w.eps).sqrt()
    direction = (w.W_U.T[inputs.answers[:, 0]] - w.W_U.T[inputs.answers[:, 1]]) * w.norm_f_w
    out = torch.zeros(len(w.layers), w.n_heads)
    for layer, lw in enumerate(w.layers):
        result = torch.einsum("nhe,hed->nhd", cache.z[layer][rows, end], lw.W_O)
        if centre:
            result = result - result.mean(-1, keepdim=True)
        out[layer] = (result / scale[:, None] * direction[:, None]).sum(-1).mean(0)
    return out


@pytest.fixture(scope="module")
def toy():
    from scrub.data import corrupt, make_ioi
    from scrub.models import load_model
    from scrub.patching import PatchInputs

    torch.set_num_threads(1)
    try:
        model = load_model("toy-ioi")
    except ScrubError as e:
        pytest.skip(f"toy-ioi checkpoint unavailable: {e}")
    ps = make_ioi(12, seed=5, tokenizer=model.tokenizer)
    return model, ps, PatchInputs.from_promptsets(ps, corrupt(ps, ["abc"], seed=5))


def test_patterns_match_the_kernel_and_are_causal_distributions(toy):
    model, ps, inputs = toy
    heads = [(0, 1), (1, 2), (3, 1)]
    length = int(ps.mask[0].sum())
    got = insp.attention_patterns(model, ps.tokens[:1, :length], heads)[:, 0]
    want = kernel_patterns(model.weights, inputs, heads, row=0)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.sum(-1), torch.ones(3, length))
    assert float(got.triu(1).abs().max()) == 0.0
    with pytest.raises(ScrubError, match="head 4.0 does not exist"):
        insp.attention_patterns(model, ps.tokens[:1], [(4, 0)])


def test_dla_matches_the_kernel_and_completes_to_the_logit_difference(toy):
    model, ps, inputs = toy
    end, answers = ps.positions["END"], ps.answers
    dla = insp.direct_logit_attribution(model, ps.tokens, ps.mask, end, answers)
    w = model.weights
    torch.testing.assert_close(dla.mean(0), kernel_dla(w, inputs), atol=1e-4, rtol=1e-4)

    # Completeness: heads + everything else in the final residual + ln_f's bias = logit diff.
    n, rows = len(ps), torch.arange(len(ps))
    sites = [Site(SiteKind.HEAD_RESULT, layer) for layer in range(model.info.n_layers)]
    cache = model.run_with_cache(ps.tokens, [*sites, Site(SiteKind.RESID_FINAL)], attn_mask=ps.mask)
    final = cache[Site(SiteKind.RESID_FINAL)][rows, end]
    heads_sum = sum(cache[s][rows, end].sum(1) for s in sites)
    rest = final - heads_sum  # embeddings, b_O and MLP outputs
    scale = insp.final_scale(model, final)
    direction = insp.logit_direction(model, answers)
    rest_dla = ((rest - rest.mean(-1, keepdim=True)) / scale * direction).sum(-1)
    unembed_dir = w.W_U.T[answers[:, 0]] - w.W_U.T[answers[:, 1]]
    bias = (w.norm_f_b * unembed_dir).sum(-1)
    logits = model.run(ps.tokens, attn_mask=ps.mask)[rows, end]
    logit_diff = logits[rows, answers[:, 0]] - logits[rows, answers[:, 1]]
    total = dla.reshape(n, -1).sum(-1) + rest_dla + bias
    torch.testing.assert_close(total, logit_diff, atol=1e-3, rtol=1e-4)


def test_inspect_commands_write_pages_and_reject_bad_heads(toy, tmp_path, capsys):
    from scrub.cli import main

    attn = tmp_path / "attn.html"
    assert main(["inspect", "attention", "--heads", "1.2,3.1", "--n", "3", "-o", str(attn)]) == 0
    page = attn.read_text()
    assert page.count("<svg") == 2 and "head 1.2: query" in page
    dla = tmp_path / "dla.svg"
    assert main(["inspect", "dla", "--n", "12", "--seed", "5", "-o", str(dla)]) == 0
    model, ps, _ = toy
    mean = insp.direct_logit_attribution(
        model, ps.tokens, ps.mask, ps.positions["END"], ps.answers
    ).mean(0)
    assert f"head 3.1: {float(mean[3, 1]):+.4f}" in dla.read_text()  # same prompts, same number
    assert "head 3.1" in capsys.readouterr().out
    assert main(["inspect", "attention", "--heads", "7.0", "-o", str(tmp_path / "a.png")]) == 2
    assert main(["inspect", "dla", "-o", str(tmp_path / "d.txt")]) == 2
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "d.txt").exists()
