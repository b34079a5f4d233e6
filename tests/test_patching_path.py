"""Fast path patching against a slow, obviously-correct reference written with bridge hooks.

The reference does what ARENA does: per sender, one full forward pass with the sender patched and
every other head frozen (z hooks), MLPs free or frozen (mlp_out hooks), capturing the receivers'
inputs; then a second full pass with the receivers' q/k/v inputs patched at the receiver positions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scrub.errors import ScrubError
from scrub.models import Model
from scrub.models.weights import ModelWeights
from scrub.patching import Component, PatchInputs, Receivers, path_patch, path_scan
from scrub.patching.hooked import (
    _per_example_ld,
    reference_caches,
    reference_path_patch,
)
from scrub.patching.path import sender_components

ATOL = 1e-5
ATOL_FLOAT64 = 1e-9
TOY_IOI = Path(__file__).resolve().parents[1] / "scrub" / "models" / "toy_ioi" / "config.json"


# ----------------------------------------------------------------------------- reference


# ----------------------------------------------------------------------------- inputs


def tiny_inputs(n: int = 6, t: int = 8, vocab: int = 40, seed: int = 0) -> PatchInputs:
    """Random right-padded prompts with per-row END, S2 and IO positions."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([t, t - 1, t, t - 3, t - 2, t][:n])
    mask = torch.arange(t)[None] < lengths[:, None]
    clean = torch.randint(2, vocab, (n, t), generator=g).masked_fill(~mask, 0)
    corrupted = torch.randint(2, vocab, (n, t), generator=g).masked_fill(~mask, 0)
    answers = torch.randint(2, vocab, (n, 2), generator=g)
    end = lengths - 1
    s2 = torch.tensor([3, 2, 4, 3, 2, 5][:n])
    return PatchInputs(clean, corrupted, mask, answers, {"END": end, "S2": s2, "IO": s2 - 2})


@pytest.fixture(scope="module")
def inputs() -> PatchInputs:
    return tiny_inputs()


@pytest.fixture(scope="module")
def ref_caches(tiny_model: Model, inputs: PatchInputs) -> tuple[dict, dict]:
    return reference_caches(tiny_model, inputs)


RECEIVERS = ["logits", "q:2.1,2.3", "k:2.0", "v:1.2,2.3", "q:1.1@S2", "k:2.2@END", "v:2.0@S2"]
SENDER_SETS = ["heads", "heads@END", "heads@S2", "mlps"]


def _senders(which: str, receivers: Receivers, n_layers: int = 3, n_heads: int = 4) -> list:
    kind, _, pos = which.partition("@")
    comps = sender_components(kind, n_layers, n_heads, pos or None)
    return [c for c in comps if c.layer < min((lay for lay, _ in receivers.heads), default=99)]


@pytest.mark.parametrize("mlps", ["free", "frozen"])
@pytest.mark.parametrize("recv", RECEIVERS)
@pytest.mark.parametrize("which", SENDER_SETS)
def test_fast_path_equals_reference(
    tiny_model: Model,
    w: ModelWeights,
    inputs: PatchInputs,
    ref_caches: tuple,
    recv: str,
    mlps: str,
    which: str,
) -> None:
    receivers = Receivers.parse(recv)
    senders = _senders(which, receivers)
    fast = path_patch(w, inputs, senders, receivers, mlps=mlps)
    slow = torch.stack(
        [reference_path_patch(tiny_model, inputs, s, receivers, mlps, ref_caches) for s in senders]
    )
    torch.testing.assert_close(fast, slow, atol=ATOL, rtol=0)
    clean = _per_example_ld(tiny_model.run(inputs.clean, attn_mask=inputs.mask), inputs)
    # The experiment must be able to fail: some sender moves the metric well beyond tolerance
    # whenever senders' and receivers' positions overlap (the change flows only per position
    # until the receivers, so otherwise the exact answer is "no effect", which is checked too).
    recv_where = inputs.position_mask("END" if receivers.slot == "logits" else receivers.position)
    overlap = bool((inputs.position_mask(senders[0].position) & recv_where).any())
    effect = (slow - clean).abs().max()
    assert effect > 1e-3 if overlap else effect == 0


def test_mlps_free_and_frozen_differ(w: ModelWeights, inputs: PatchInputs) -> None:
    receivers = Receivers.parse("logits")
    senders = [Component("head", 0, h) for h in range(4)]
    free = path_patch(w, inputs, senders, receivers, mlps="free")
    frozen = path_patch(w, inputs, senders, receivers, mlps="frozen")
    assert (free - frozen).abs().max() > 1e-2


def test_chunked_equals_unchunked(w: ModelWeights, inputs: PatchInputs) -> None:
    receivers = Receivers.parse("k:2.0")
    senders = sender_components("heads+mlps", 2, 4)
    whole = path_patch(w, inputs, senders, receivers)
    tiny_budget = path_patch(w, inputs, senders, receivers, budget=1)  # one sender per chunk
    torch.testing.assert_close(whole, tiny_budget, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- scans and errors


def test_scan_skips_senders_not_upstream(tiny_model: Model, inputs: PatchInputs) -> None:
    res = path_scan(tiny_model, inputs, "heads+mlps", Receivers.parse("q:1.0"), mlps="frozen")
    frame = res.to_frame()
    assert len(frame) == 3 * 5
    upstream = frame["layer"] < 1
    assert frame.loc[upstream, "logit_diff"].notna().all()
    assert frame.loc[~upstream, "logit_diff"].isna().all()
    assert set(frame["mlps"]) == {"frozen"} and set(frame["receivers"]) == {"q:1.0"}
    assert frame.loc[frame["component"] == "mlp", "head"].isna().all()
    doc = res.to_json()
    assert doc["scores"][0]["head"] == 0 and "head" not in doc["scores"][4]
    assert doc["scores"][-1]["logit_diff"] is None


def test_scan_normalisations(tiny_model: Model, inputs: PatchInputs) -> None:
    recv = Receivers.parse("logits")
    a = path_scan(tiny_model, inputs, "heads", recv, normalization="clean").to_frame()
    b = path_scan(tiny_model, inputs, "heads", recv, normalization="damage").to_frame()
    torch.testing.assert_close(
        torch.tensor(b["normalized"].to_numpy()), torch.tensor(a["normalized"].to_numpy() - 1)
    )
    assert b["normalization"].iloc[0] == "no-harm=0,corrupted=-1"


def test_errors(w: ModelWeights, tiny_model: Model, inputs: PatchInputs) -> None:
    head = [Component("head", 0, 0)]
    with pytest.raises(ScrubError, match="receiver head 3.0 does not exist"):
        path_patch(w, inputs, head, Receivers.parse("q:3.0"))
    with pytest.raises(ScrubError, match="not upstream"):
        path_patch(w, inputs, [Component("head", 2, 0)], Receivers.parse("q:1.0"))
    with pytest.raises(ScrubError, match="not upstream"):
        path_scan(tiny_model, inputs, [Component("mlp", 1)], Receivers.parse("v:1.0"))
    with pytest.raises(ScrubError, match="no position named 'S1'"):
        path_patch(w, inputs, [Component("head", 0, 0, "S1")], Receivers.parse("logits"))
    with pytest.raises(ScrubError, match="no position named 'IO\\+1'"):
        path_patch(w, inputs, head, Receivers.parse("q:1.0@IO+1"))
    with pytest.raises(ScrubError, match="cannot read receivers"):
        Receivers.parse("q:9")
    with pytest.raises(ScrubError, match="unknown MLP mode"):
        path_patch(w, inputs, head, Receivers.parse("logits"), mlps="thawed")
    with pytest.raises(ScrubError, match="corrupted prompts"):
        PatchInputs(
            inputs.clean, inputs.corrupted[:3], inputs.mask, inputs.answers, inputs.positions
        )
    with pytest.raises(ScrubError, match="corrupted prompts"):
        PatchInputs(
            inputs.clean, inputs.corrupted[:, :-1], inputs.mask, inputs.answers, inputs.positions
        )


# ----------------------------------------------------------------------------- toy-ioi


@pytest.fixture(scope="module")
def toy() -> tuple[Model, PatchInputs, tuple[dict, dict]]:
    if not TOY_IOI.is_file():
        pytest.skip("the toy-ioi checkpoint is not trained yet (scrub/models/toy_ioi/config.json)")
    from scrub.data import corrupt, make_ioi
    from scrub.models import load_model

    # In float64: the trained toy's logits reach ~20, where float32 rounding alone differs by
    # ~1.5e-5 between any two orderings of the same sums; float64 shows the arithmetic is equal.
    model = load_model("toy-ioi", dtype="float64")
    clean = make_ioi(8, seed=0, tokenizer=model.tokenizer)
    inputs = PatchInputs.from_promptsets(clean, corrupt(clean, ["abc"], seed=0))
    return model, inputs, reference_caches(model, inputs)


@pytest.mark.parametrize("mlps", ["free", "frozen"])
def test_toy_ioi_fast_path_equals_reference(toy, mlps: str) -> None:
    model, inputs, caches = toy
    w = model.weights
    L, H = model.info.n_layers, model.info.n_heads
    last = L - 1
    effects = []
    for recv in ["logits", f"q:{last}.0,{last}.1", f"k:{last}.0", f"v:{last - 1}.1@S2"]:
        receivers = Receivers.parse(recv)
        first = min((lay for lay, _ in receivers.heads), default=L)
        senders = [Component("head", first - 1, h) for h in range(H)]
        senders += [Component("head", 0, 0, "END"), Component("mlp", 0)]
        fast = path_patch(w, inputs, senders, receivers, mlps=mlps)
        slow = torch.stack(
            [reference_path_patch(model, inputs, s, receivers, mlps, caches) for s in senders]
        )
        assert fast.dtype == slow.dtype == torch.float64
        torch.testing.assert_close(fast, slow, atol=ATOL_FLOAT64, rtol=0)
        effects.append(float((slow - slow[0]).abs().max()))
    assert max(effects) > 1e-3  # senders differ: the comparison is able to fail
