"""The fast scrubbing engine against the slow hook-based reference, plus exact bounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scrub.data import TokenSet
from scrub.scrubbing.experiment import plan, scrub_hypothesis
from scrub.scrubbing.hooked import reference_logit_diffs
from scrub.scrubbing.hypothesis import (
    OUTPUT,
    Embed,
    Head,
    Hypothesis,
    Mlp,
    agree,
    heads,
    keep,
    mlps,
    node,
    random,
)


def tiny_dataset(n=24, t=9, vocab=40, seed=0, ragged=True) -> TokenSet:
    """Random token rows with two 'names' (answers) planted at per-row positions.

    Positions move between rows (A at 2 or 3, B at 4 or 5), rows may be right-padded, and the
    features say which positions and tokens each row has, so agree-rules have something to match.
    """
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, vocab, (n, t), generator=g)
    tokens[:, 0] = 0
    shift = torch.randint(0, 2, (n,), generator=g)
    a_pos, b_pos = 2 + shift, 4 + shift
    a_tok = torch.randint(2, 6, (n,), generator=g)
    b_tok = torch.randint(6, 10, (n,), generator=g)
    tokens[torch.arange(n), a_pos] = a_tok
    tokens[torch.arange(n), b_pos] = b_tok
    length = torch.full((n,), t)
    if ragged:
        length = t - torch.randint(0, 2, (n,), generator=g)
    mask = torch.arange(t)[None] < length[:, None]
    tokens = tokens.masked_fill(~mask, 0)
    return TokenSet.build(
        tokens,
        {"A": a_pos, "B": b_pos, "END": length - 1},
        torch.stack([a_tok, b_tok], 1),
        {"a": a_tok.tolist(), "b": b_tok.tolist(), "shift": shift.tolist()},
        mask=mask,
        lineage=("tiny",),
    )


HYPOTHESES = {
    "chain-q-k-v": Hypothesis(
        "chain",
        [
            node("top", heads("2.1", at="END"), feeds=OUTPUT, rule=agree("a")),
            node("mid-q", heads("1.0", at="END"), feeds="top.q", rule=agree("shift")),
            node("mid-k", heads("1.2", at="B"), feeds="top.k", rule=agree("b")),
            node("low-v", heads("0.3", at="A"), feeds="top.v", rule=keep),
            node("leaf", heads("0.1"), feeds="mid-q.v", rule=random),
        ],
    ),
    "mlp-and-embed": Hypothesis(
        "mlp",
        [
            node("mlp1", mlps("1", at="END"), feeds=OUTPUT, rule=agree("a", "b", allow_self=True)),
            node("heads1", heads("1.0 1.3", at="END"), feeds="mlp1.mlp", rule=agree("shift")),
            node("emb", Embed("A"), feeds="heads1.v", rule=agree("a")),
            node("mlp0", mlps("0"), feeds="heads1.q", rule=keep, other=keep),
        ],
    ),
    "dag-shared": Hypothesis(
        "dag",
        [
            node("top", heads("2.0 2.2", at="END"), feeds=OUTPUT, rule=agree("a")),
            node("side", [Head(1, 1, "END"), Mlp(1, "END")], feeds=OUTPUT, rule=agree("b")),
            node(
                "shared",
                heads("0.0 0.2", at="A"),
                feeds=["top.v", "top.k", "side.v"],
                rule=agree("a"),
                other=agree("shift"),
            ),
        ],
    ),
    "all-positions": Hypothesis(
        "allpos",
        [
            node("top", heads("2.3"), feeds=OUTPUT, rule=keep, other=random),
            node("low", heads("1.1 0.2"), feeds=["top.q", "top.k"], rule=agree("shift")),
        ],
        output_other=keep,
    ),
}


@pytest.mark.parametrize("name", sorted(HYPOTHESES))
@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_attn_only_model"])
def test_fast_engine_equals_reference(request, name, fixture):
    model = request.getfixturevalue(fixture)
    ds = tiny_dataset()
    h = HYPOTHESES[name]
    result = scrub_hypothesis(h, model, ds, n=16, seed=3)
    tree, a, ref, rnd = plan(h, model.info, ds, n=16, seed=3)
    clean, scrubbed, random_ = reference_logit_diffs(model, ds, tree, a, ref, rnd)
    np.testing.assert_allclose(result.clean, clean, atol=1e-5, rtol=0)
    np.testing.assert_allclose(result.random, random_, atol=1e-5, rtol=0)
    np.testing.assert_allclose(result.scrubbed, scrubbed, atol=1e-5, rtol=0)
    # The scrub must actually change something, or equality above proves little.
    assert np.abs(result.scrubbed - result.clean).max() > 1e-3


def test_empty_hypotheses_are_random_and_exactly_one(tiny_model):
    ds = tiny_dataset()
    nothing = scrub_hypothesis(Hypothesis("nothing", []), tiny_model, ds, n=20, seed=1)
    everything = scrub_hypothesis(
        Hypothesis("all", [], output_other=keep), tiny_model, ds, n=20, seed=1
    )
    # Nothing explained: scrubbed is the model on the output's other rows, a random draw of its
    # own; the baseline draws its rows from a separate stream.
    a = nothing.assignment
    assert not np.array_equal(a.other[""], a.baseline)
    assert abs(nothing.recovered) < 4 * nothing.recovered_se
    assert everything.recovered == 1.0 and np.array_equal(everything.scrubbed, everything.clean)


def test_the_baseline_is_stored_and_replayed(tiny_model, tmp_path):
    """The baseline's rows are part of the assignment: in the JSON, and replayed from it."""
    import json

    from scrub.scrubbing.run import write_result
    from scrub.scrubbing.tree import Assignment, draw_baseline

    ds, h = tiny_dataset(), HYPOTHESES["chain-q-k-v"]
    a = scrub_hypothesis(h, tiny_model, ds, n=16, seed=7)
    assert np.array_equal(a.assignment.baseline, draw_baseline(7, len(ds), 16))
    write_result(a, tmp_path / "a.json")
    stored = Assignment.from_json(json.loads((tmp_path / "a.json").read_text()))
    assert np.array_equal(stored.baseline, a.assignment.baseline)
    replay = scrub_hypothesis(h, tiny_model, ds, n=16, seed=99, assignment=stored)
    for series in ("clean", "scrubbed", "random"):
        assert np.array_equal(getattr(replay, series), getattr(a, series))
    other = scrub_hypothesis(h, tiny_model, ds, n=16, seed=99)
    assert not np.array_equal(other.random, a.random)  # the replay did not redraw


def test_keep_everywhere_recovers_one(tiny_model):
    h = Hypothesis(
        "keep-all",
        [
            node("top", heads("2.0 2.1 2.2 2.3", at="END"), feeds=OUTPUT, rule=keep, other=keep),
            node("low", heads("1.0 1.1"), feeds="top.q", rule=keep, other=keep),
        ],
        output_other=keep,
    )
    r = scrub_hypothesis(h, tiny_model, tiny_dataset(), n=20, seed=0)
    np.testing.assert_allclose(r.scrubbed, r.clean, atol=1e-5)


def test_same_seed_same_bits_and_replay(tiny_model):
    ds, h = tiny_dataset(), HYPOTHESES["chain-q-k-v"]
    a = scrub_hypothesis(h, tiny_model, ds, n=16, seed=7)
    b = scrub_hypothesis(h, tiny_model, ds, n=16, seed=7)
    c = scrub_hypothesis(h, tiny_model, ds, n=16, seed=8)
    assert np.array_equal(a.scrubbed, b.scrubbed) and a.recovered == b.recovered
    assert not np.array_equal(a.scrubbed, c.scrubbed)
    replay = scrub_hypothesis(h, tiny_model, ds, n=16, seed=8, assignment=a.assignment)
    assert np.array_equal(replay.scrubbed, a.scrubbed) and np.array_equal(replay.random, a.random)


def test_chunking_does_not_change_results(tiny_model):
    ds, h = tiny_dataset(), HYPOTHESES["dag-shared"]
    big = scrub_hypothesis(h, tiny_model, ds, n=16, seed=2)
    small = scrub_hypothesis(h, tiny_model, ds, n=16, seed=2, max_memory=1)
    # Equal up to float summation order: matmul kernels depend on the batch size.
    np.testing.assert_allclose(big.scrubbed, small.scrubbed, atol=1e-5)
    assert small.settings["distinct_rows"] == big.settings["distinct_rows"]


def test_agree_draws_match_features(tiny_model):
    ds, h = tiny_dataset(n=40), HYPOTHESES["chain-q-k-v"]
    tree, a, ref, _ = plan(h, tiny_model.info, ds, n=40, seed=5)
    feats = {k: np.array(v) for k, v in ds.features.items()}
    top, mid_k = a.rows["top"], a.rows["top/mid-k"]
    assert (feats["a"][top] == feats["a"][ref]).all()
    assert (feats["b"][mid_k] == feats["b"][top]).all()
    assert (a.rows["top/low-v"] == top).all()  # keep
    assert (top != ref).any()  # agree actually resamples


@pytest.mark.parametrize("metric", ["loss", "kl"])
def test_other_metrics_bounds(tiny_model, metric):
    ds = tiny_dataset()
    everything = scrub_hypothesis(
        Hypothesis("all", [], output_other=keep), tiny_model, ds, n=20, seed=1, metric=metric
    )
    assert everything.recovered == 1.0
    if metric == "kl":
        moved = everything.assignment.baseline != np.arange(20)  # a random row may be its own
        assert np.all(everything.clean == 0) and np.all(everything.random[moved] > 0)


def test_all_position_nodes_warn_when_rows_differ_in_length(tiny_model):
    h = HYPOTHESES["all-positions"]
    ragged = scrub_hypothesis(h, tiny_model, tiny_dataset(ragged=True), n=8, seed=0)
    aligned = scrub_hypothesis(h, tiny_model, tiny_dataset(ragged=False), n=8, seed=0)
    assert any("matched by index" in w for w in ragged.warnings)
    assert not any("matched by index" in w for w in aligned.warnings)
    # Rows of one length meet: "top" (all positions) keeps its parent's world row, and "low"
    # keeps top's other-inputs row. Ragged data, yet nothing is mixed, so no warning.
    same_rows = Hypothesis(
        "allpos kept",
        [
            node("top", heads("2.3"), feeds=OUTPUT, rule=keep, other=keep),
            node("low", heads("1.1 0.2"), feeds=["top.q", "top.k"], rule=keep),
        ],
        output_other=keep,
    )
    kept = scrub_hypothesis(same_rows, tiny_model, tiny_dataset(ragged=True), n=8, seed=0)
    assert not any("matched by index" in w for w in kept.warnings)


def test_embedding_in_a_node_with_children(tiny_model):
    """An embedding reads nothing: beside heads in an internal node it stays clean on the
    node's world (it used to crash the engine); fast equals the reference."""
    h = Hypothesis(
        "embed beside heads",
        [
            node("top", [Embed("A"), Head(2, 1, "END")], feeds=OUTPUT, rule=agree("a")),
            node("low", heads("1.0", at="END"), feeds="top.q", rule=agree("shift")),
        ],
    )
    ds = tiny_dataset()
    result = scrub_hypothesis(h, tiny_model, ds, n=16, seed=2)
    tree, a, ref, rnd = plan(h, tiny_model.info, ds, n=16, seed=2)
    _, scrubbed, _ = reference_logit_diffs(tiny_model, ds, tree, a, ref, rnd)
    np.testing.assert_allclose(result.scrubbed, scrubbed, atol=1e-5, rtol=0)


def test_clean_values_do_not_depend_on_what_else_is_read():
    """A row's clean metric is the same bits whether or not the pass also runs its last block at
    every position (a last-layer node at all positions needs it): paired comparisons between
    results rely on equal clean series (on toy-ioi the two paths differ in the last bits)."""
    from scrub.data import make_ioi
    from scrub.models import load_model

    model = load_model("toy-ioi", device="cpu")
    ds = make_ioi(300, seed=0, tokenizer=model.tokenizer)
    # Nothing of the last block is read, against a last-layer head read on the reference rows.
    earlier = Hypothesis("layer 2", [node("top", heads("2.0", at="END"), feeds=OUTPUT, rule=keep)])
    last = Hypothesis("layer 3", [node("top", heads("3.0", at="END"), feeds=OUTPUT, rule=keep)])
    a = scrub_hypothesis(earlier, model, ds, n=200, seed=0)
    b = scrub_hypothesis(last, model, ds, n=200, seed=0)
    assert np.array_equal(a.clean, b.clean) and np.array_equal(a.random, b.random)
