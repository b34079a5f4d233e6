"""Loading models, typed sites and scoped hooks (scrub.models.load / scrub.models.handle)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from transformers import GPT2LMHeadModel

from scrub.errors import ScrubError
from scrub.models import Model, Site, SiteKind, available_models, hook_name, load_model
from scrub.models import load as load_mod
from scrub.models.random_gpt2 import GPT2Shape, random_gpt2

PER_LAYER = [k for k in SiteKind if k.has_layer]


def tokens_for(model: Model, batch: int = 3, pos: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, model.info.d_vocab, (batch, pos), generator=g)


def hook_state(model: Model) -> list[tuple[str, int, int, int]]:
    """Every torch hook on every module and every transformer_lens hook handle, by module."""
    return [
        (
            name,
            len(m._forward_hooks) + len(m._forward_pre_hooks),
            len(m._backward_hooks),
            len(getattr(m, "fwd_hooks", ())) + len(getattr(m, "bwd_hooks", ())),
        )
        for name, m in model.bridge.named_modules()
    ]


def count(state: list[tuple[str, int, int, int]]) -> int:
    return sum(a + b + c for _, a, b, c in state)


# --- loading ---------------------------------------------------------------------------------


def test_tiny_model_info_and_parts(tiny_model: Model) -> None:
    info = tiny_model.info
    assert (info.n_layers, info.n_heads, info.d_model, info.d_head) == (3, 4, 32, 8)
    assert (info.d_vocab, info.n_ctx, info.has_mlps) == (40, 64, True)
    assert isinstance(tiny_model.hf_model, GPT2LMHeadModel)
    assert tiny_model.tokenizer("w2 w3 w39")["input_ids"] == [2, 3, 39]
    assert tiny_model.tokenizer.pad_token_id == 0 and tiny_model.tokenizer.bos_token_id == 0


def test_attn_only_model_has_no_mlps(tiny_attn_only_model: Model) -> None:
    assert tiny_attn_only_model.info.has_mlps is False
    cache = tiny_attn_only_model.run_with_cache(
        tokens_for(tiny_attn_only_model), [Site(SiteKind.MLP_OUT, 1)]
    )
    assert torch.count_nonzero(cache[Site(SiteKind.MLP_OUT, 1)]) == 0


def test_bridge_logits_equal_raw_hf_logits(tiny_model: Model) -> None:
    # no_processing compat mode: no LayerNorm folding, so logits are the raw model's, not shifted.
    # A fresh copy from disk: weight processing would rewrite tiny_model.hf_model in place too.
    fresh = GPT2LMHeadModel.from_pretrained(tiny_model.info.name).eval()
    tokens = tokens_for(tiny_model)
    with torch.no_grad():
        expected = fresh(tokens).logits
    torch.testing.assert_close(tiny_model.run(tokens), expected, atol=1e-5, rtol=0)


def test_weight_processing_changes_exactly_what_load_docstring_says(tiny_model: Model) -> None:
    """Default compat mode (fold_ln + centring) vs the raw model, as documented in load.py."""
    from transformer_lens.model_bridge import TransformerBridge

    fresh = GPT2LMHeadModel.from_pretrained(tiny_model.info.name).eval()
    raw_w = fresh.transformer.h[1].attn.c_proj.weight.detach().clone()
    processed = TransformerBridge.boot_transformers(
        tiny_model.info.name, hf_model=fresh, tokenizer=tiny_model.tokenizer, device="cpu"
    )
    processed.enable_compatibility_mode(disable_warnings=True)
    processed.set_use_attn_result(True)
    assert not torch.equal(fresh.transformer.h[1].attn.c_proj.weight, raw_w)  # rewritten in place

    tokens = tokens_for(tiny_model)
    names = ["blocks.1.hook_resid_mid", "blocks.1.attn.hook_result", "blocks.1.attn.hook_pattern"]
    with torch.no_grad():
        p_logits, p_cache = processed.run_with_cache(tokens, names_filter=lambda n: n in names)
    sites = [Site(SiteKind.RESID_MID, 1), Site(SiteKind.HEAD_RESULT, 1), Site(SiteKind.PATTERN, 1)]
    r_logits = tiny_model.run(tokens)
    r_cache = tiny_model.run_with_cache(tokens, sites)

    def centre(x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(-1, keepdim=True)

    shift = p_logits - r_logits
    assert shift.abs().max() > 1e-3  # raw logits differ ...
    torch.testing.assert_close(shift, shift[..., :1].expand_as(shift), atol=1e-5, rtol=0)
    resid_p, resid_r = p_cache[names[0]], r_cache[sites[0]]
    assert (resid_p - resid_r).abs().max() > 1e-3
    torch.testing.assert_close(resid_p, centre(resid_r), atol=1e-5, rtol=0)
    torch.testing.assert_close(p_cache[names[2]], r_cache[sites[2]], atol=1e-5, rtol=0)
    # processed_h = centre(raw_h - (ln1_b @ W_V[h] + b_V[h]) @ W_O[h])
    block = tiny_model.hf_model.transformer.h[1]
    d, H, e = 32, 4, 8
    W_V = block.attn.c_attn.weight[:, 2 * d :].reshape(d, H, e)
    b_V = block.attn.c_attn.bias[2 * d :].reshape(H, e) + torch.einsum(
        "d,dhe->he", block.ln_1.bias, W_V
    )
    bias_out = torch.einsum("he,hed->hd", b_V, block.attn.c_proj.weight.reshape(H, e, d)).detach()
    torch.testing.assert_close(
        p_cache[names[1]], centre(r_cache[sites[1]] - bias_out), atol=1e-5, rtol=0
    )


def test_unknown_name_lists_available_models() -> None:
    with pytest.raises(ScrubError, match="unknown model 'gpt3'.*toy-ioi, gpt2-small, gpt2-small-"):
        load_model("gpt3")
    assert available_models() == (
        "toy-ioi",
        "gpt2-small",
        "gpt2-small-random",
        "pythia-small-random",
        "llama-small-random",
    )


def test_directory_without_config_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScrubError, match="not a Hugging Face model directory: config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ScrubError, match="does not exist"):
        load_model(str(tmp_path / "nope"))


def test_directory_without_weights_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ScrubError, match="has no weights: none of model.safetensors"):
        load_model(str(tmp_path))


def test_missing_toy_checkpoint_says_how_to_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load_mod, "TOY_IOI_DIR", tmp_path / "toy_ioi")
    with pytest.raises(
        ScrubError, match=r"checkpoint is missing.*python -m scrub.models.train_toy"
    ):
        load_model("toy-ioi")


@pytest.mark.parametrize("offline_env", [True, False])
def test_gpt2_small_offline_fails_fast_with_instructions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_env: bool
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    if offline_env:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(load_mod, "_hub_reachable", lambda timeout=2.0: False)
    start = time.monotonic()
    with pytest.raises(ScrubError) as err:
        load_model("gpt2-small")
    assert time.monotonic() - start < 3
    message = str(err.value)
    assert "not in the Hugging Face cache" in message
    assert "huggingface-cli download gpt2" in message and "local model directory" in message


def test_hub_probe_reports_unreachable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "https://no-such-host.invalid")
    start = time.monotonic()
    assert load_mod._hub_reachable(timeout=1.0) is False
    assert time.monotonic() - start < 3


def test_gpt2_small_random_has_gpt2_small_shape() -> None:
    model = load_model("gpt2-small-random", seed=3)
    info = model.info
    assert (info.n_layers, info.n_heads, info.d_model, info.d_head) == (12, 12, 768, 64)
    assert (info.d_vocab, info.n_ctx, info.has_mlps) == (50257, 1024, True)
    assert info.name == "gpt2-small-random"
    tokens = torch.tensor([[0, 5, 9, 50256]])
    assert model.run(tokens).shape == (1, 4, 50257)
    # HF's initialisation (std 0.02), seeded: random_gpt2's seeding is tested on a small shape
    assert model.hf_model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.01)


def test_random_gpt2_is_seeded_and_leaves_global_rng_alone() -> None:
    shape = GPT2Shape(n_layers=1, n_heads=2, d_model=8, d_vocab=10, n_ctx=8)
    state = torch.random.get_rng_state()
    a, b, c = (random_gpt2(shape, seed=s).transformer.h[0].attn.c_attn.weight for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_loading_restores_transformers_verbosity(tiny_model: Model) -> None:
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    with load_mod._quiet_transformers():
        assert hf_logging.get_verbosity() == hf_logging.ERROR
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.get_verbosity() == before


# --- sites -----------------------------------------------------------------------------------


def test_site_layer_rules(tiny_model: Model) -> None:
    with pytest.raises(ScrubError, match="site z needs a layer"):
        Site(SiteKind.Z)
    with pytest.raises(ScrubError, match="site embed has no layer"):
        Site(SiteKind.EMBED, 0)
    with pytest.raises(ScrubError, match="layer 3 does not exist: this model has layers 0-2"):
        hook_name(Site(SiteKind.HEAD_RESULT, 3), tiny_model.info)
    with pytest.raises(ScrubError, match="layer -1 does not exist"):
        hook_name(Site(SiteKind.RESID_PRE, -1), tiny_model.info)
    assert Site(SiteKind.Z, 1) == Site(SiteKind.Z, 1)
    assert len({Site(SiteKind.Z, 1), Site(SiteKind.Z, 1)}) == 1  # hashable, usable as cache keys


def test_every_site_resolves_and_has_its_documented_shape(tiny_model: Model) -> None:
    b, t, H, d, e = 2, 5, 4, 32, 8
    shapes = {
        SiteKind.Q_INPUT: (b, t, H, d),
        SiteKind.K_INPUT: (b, t, H, d),
        SiteKind.V_INPUT: (b, t, H, d),
        SiteKind.Z: (b, t, H, e),
        SiteKind.PATTERN: (b, H, t, t),
        SiteKind.HEAD_RESULT: (b, t, H, d),
    }
    sites = [Site(SiteKind.EMBED), Site(SiteKind.RESID_FINAL)] + [Site(k, 2) for k in PER_LAYER]
    cache = tiny_model.run_with_cache(tokens_for(tiny_model, b, t), sites)
    assert set(cache) == set(sites)
    for site in sites:
        assert tuple(cache[site].shape) == shapes.get(site.kind, (b, t, d)), site


def test_site_values_are_related_as_documented(tiny_model: Model) -> None:
    tokens = tokens_for(tiny_model)
    L = 1
    S = {k: Site(k, L) for k in PER_LAYER}
    embed, final = Site(SiteKind.EMBED), Site(SiteKind.RESID_FINAL)
    c = tiny_model.run_with_cache(tokens, [embed, final, Site(SiteKind.RESID_POST, 2), *S.values()])
    tr = tiny_model.hf_model.transformer
    close = torch.testing.assert_close
    close(c[embed], (tr.wte.weight[tokens] + tr.wpe.weight[: tokens.shape[1]]).detach())
    for kind in (SiteKind.Q_INPUT, SiteKind.K_INPUT, SiteKind.V_INPUT):
        close(c[S[kind]], c[S[SiteKind.RESID_PRE]][:, :, None].expand(-1, -1, 4, -1))
    b_O = tr.h[L].attn.c_proj.bias.detach()
    close(c[S[SiteKind.ATTN_OUT]], c[S[SiteKind.HEAD_RESULT]].sum(2) + b_O, atol=1e-5, rtol=0)
    close(c[S[SiteKind.RESID_MID]], c[S[SiteKind.RESID_PRE]] + c[S[SiteKind.ATTN_OUT]])
    assert torch.equal(c[S[SiteKind.MLP_IN]], c[S[SiteKind.RESID_MID]])
    close(c[S[SiteKind.RESID_POST]], c[S[SiteKind.RESID_MID]] + c[S[SiteKind.MLP_OUT]])
    assert torch.equal(c[final], c[Site(SiteKind.RESID_POST, 2)])
    pattern = c[S[SiteKind.PATTERN]]
    close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
    assert torch.all(pattern.triu(1) == 0)  # causal


# --- hooks -----------------------------------------------------------------------------------


def test_hook_replacing_a_head_result_changes_logits_by_that_head(
    tiny_attn_only_model: Model,
) -> None:
    model = tiny_attn_only_model  # no MLPs: a last-layer head result feeds only ln_final
    tokens = tokens_for(model)
    site = Site(SiteKind.HEAD_RESULT, 2)

    def drop_head_1(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, :, 1] = 0
        return x

    clean = model.run_with_cache(tokens, [site, Site(SiteKind.RESID_FINAL)])
    patched = model.run(tokens, [(site, drop_head_1)])
    resid = clean[Site(SiteKind.RESID_FINAL)] - clean[site][:, :, 1]
    ln_f = model.hf_model.transformer.ln_f
    with torch.no_grad():
        expected = model.hf_model.lm_head(ln_f(resid))
    assert (patched - model.run(tokens)).abs().max() > 0.1
    torch.testing.assert_close(patched, expected, atol=1e-5, rtol=0)


def test_hook_returning_none_keeps_the_activation(tiny_model: Model) -> None:
    tokens = tokens_for(tiny_model)
    seen: list[tuple[int, ...]] = []
    logits = tiny_model.run(tokens, [(Site(SiteKind.Z, 0), lambda x: seen.append(tuple(x.shape)))])
    assert seen == [(3, 7, 4, 8)]
    assert torch.equal(logits, tiny_model.run(tokens))


def test_cache_shows_patched_values(tiny_model: Model) -> None:
    site = Site(SiteKind.MLP_OUT, 0)
    cache = tiny_model.run_with_cache(
        tokens_for(tiny_model), [site], hooks=[(site, torch.zeros_like)]
    )
    assert torch.count_nonzero(cache[site]) == 0


def test_hooks_are_removed_after_normal_exit_error_and_interrupt(tiny_model: Model) -> None:
    tokens = tokens_for(tiny_model)
    # The bridge installs hooks of its own on its first forward pass (e.g. on ln_1 for split q/k/v
    # inputs); they are its state, not ours, so compare against the state after one plain pass.
    tiny_model.bridge(tokens)
    before = hook_state(tiny_model)
    sites = [Site(SiteKind.Q_INPUT, 0), Site(SiteKind.HEAD_RESULT, 1), Site(SiteKind.EMBED)]
    hooks = [(s, lambda x: None) for s in sites]

    with tiny_model.hooks(hooks):
        assert count(hook_state(tiny_model)) >= count(before) + len(sites)  # really registered
        tiny_model.bridge(tokens)
    assert hook_state(tiny_model) == before

    with pytest.raises(RuntimeError, match="boom"), tiny_model.hooks(hooks):
        raise RuntimeError("boom")
    assert hook_state(tiny_model) == before

    def interrupt(x: torch.Tensor) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiny_model.run(tokens, [*hooks, (Site(SiteKind.MLP_OUT, 1), interrupt)])
    assert hook_state(tiny_model) == before

    # a bad site in the list registers nothing
    with pytest.raises(ScrubError), tiny_model.hooks([*hooks, (Site(SiteKind.Z, 9), print)]):
        pass
    assert hook_state(tiny_model) == before
    assert torch.equal(tiny_model.run(tokens), tiny_model.run(tokens))


def test_right_padding_mask_keeps_real_positions(tiny_model: Model) -> None:
    tokens = tokens_for(tiny_model, batch=2, pos=8)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    padded = tokens.clone()
    padded[1, 5:] = 0
    logits = tiny_model.run(padded, attn_mask=mask)
    torch.testing.assert_close(logits[1, :5], tiny_model.run(tokens[1:, :5])[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[0], tiny_model.run(tokens[:1])[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "site",
    [Site(SiteKind.EMBED), Site(SiteKind.RESID_FINAL)] + [Site(k, 1) for k in PER_LAYER],
    ids=lambda s: s.kind.value,
)
def test_every_site_feeds_the_computation(tiny_model: Model, site: Site) -> None:
    """Replacing an activation changes the logits: each hook sits on the live path."""
    tokens = tokens_for(tiny_model)
    # Not a rescaling or a constant shift: LayerNorm would undo those at most sites.
    g = torch.Generator().manual_seed(0)
    patched = tiny_model.run(tokens, [(site, lambda x: x + torch.randn(x.shape, generator=g))])
    assert (patched - tiny_model.run(tokens)).abs().max() > 1e-2


def test_importing_scrub_models_loads_no_model_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys, scrub.models, scrub.models.kernel;"
        "print(any(m.split('.')[0] in ('transformer_lens', 'transformers') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gpt2_small_not_on_disk_never_touches_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No network unless asked: without SCRUB_ALLOW_DOWNLOAD the hub is not even probed."""
    import huggingface_hub

    def tripwire(*args, **kwargs):
        raise AssertionError("the network was used without SCRUB_ALLOW_DOWNLOAD")

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.delenv("SCRUB_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(load_mod, "_hub_reachable", tripwire)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", tripwire)
    with pytest.raises(ScrubError, match="downloads are off.*SCRUB_ALLOW_DOWNLOAD=1"):
        load_model("gpt2-small")


def test_gpt2_small_download_failure_is_one_scrub_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the opt-in, a hub that answers badly is a ScrubError (claims skip), not a crash."""
    import huggingface_hub

    def bad_hub(*args, **kwargs):
        raise RuntimeError("502 Bad Gateway\n<html>...</html>")

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("SCRUB_ALLOW_DOWNLOAD", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(load_mod, "_hub_reachable", lambda timeout=2.0: True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", bad_hub)
    with pytest.raises(ScrubError, match="downloading gpt2-small failed: RuntimeError: 502 Bad"):
        load_model("gpt2-small")
