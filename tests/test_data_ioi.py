"""IOI datasets: named positions, determinism, corruptions and their invariants."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scrub.data import (
    CORRUPTIONS,
    IOIVocabulary,
    PromptSpec,
    corrupt,
    ioi_word_tokenizer,
    make_ioi,
)
from scrub.data.ioi import count_distinct
from scrub.errors import ScrubError


@pytest.fixture(scope="module")
def vocab():
    return IOIVocabulary.load()


@pytest.fixture(scope="module")
def tok(vocab):
    return ioi_word_tokenizer(vocab)


def assert_positions_decode(ps) -> None:
    """Every named position holds the token of the name the spec says is there."""
    for i, spec in enumerate(ps.specs):
        row = ps.str_tokens[i]
        assert row[ps.positions["IO"][i]].strip() == spec.io
        assert row[ps.positions["S1"][i]].strip() == spec.s1
        assert row[ps.positions["S2"][i]].strip() == spec.s2
        end = int(ps.positions["END"][i])
        assert end == int(ps.mask[i].sum()) - 1
        assert ps.tokens[i, ps.positions["S1+1"][i]] == ps.tokens[i, ps.positions["S1"][i] + 1]
        if spec.order == "ABBA":
            assert ps.positions["IO"][i] < ps.positions["S1"][i] < ps.positions["S2"][i]
        else:
            assert ps.positions["S1"][i] < ps.positions["IO"][i] < ps.positions["S2"][i]
        assert ps.answers[i, 0] == ps.tokens[i, ps.positions["IO"][i]]
        assert ps.answers[i, 1] == ps.tokens[i, ps.positions["S1"][i]]


def test_render_places_names_by_order():
    tpl = "When [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]"
    baba = PromptSpec(0, tpl, "BABA", "Mary", "John", "John", "store", "ring")
    abba = PromptSpec(0, tpl, "ABBA", "Mary", "John", "John", "store", "ring")
    assert baba.render()[0] == "When John and Mary went to the store, John gave a ring to"
    assert abba.render()[0] == "When Mary and John went to the store, John gave a ring to"
    text, spans = abba.render()
    assert {k: text[a:b] for k, (a, b) in spans.items()} == {
        "IO": "Mary",
        "S1": "John",
        "S2": "John",
    }


def test_make_ioi_positions_and_features(tok):
    ps = make_ioi(64, seed=3, tokenizer=tok)
    assert_positions_decode(ps)
    frame = ps.to_frame()
    assert len(frame) == 64 and set(frame["order"]) == {"ABBA", "BABA"}
    assert (frame["io"] != frame["s"]).all()
    assert len({tuple(s.__dict__.values()) for s in ps.specs}) == 64  # distinct prompts
    assert ps.tokens[0, 0] == tok.bos_token_id
    assert not ps.mask[:, 0].logical_not().any()


def test_same_seed_same_bytes_different_seed_differs(tok):
    a, b, c = (make_ioi(50, seed=s, tokenizer=tok) for s in (7, 7, 8))
    assert torch.equal(a.tokens, b.tokens) and a.specs == b.specs
    assert not (a.tokens.shape == c.tokens.shape and torch.equal(a.tokens, c.tokens))


def test_order_and_template_selection(tok):
    ps = make_ioi(30, seed=0, tokenizer=tok, order="ABBA", templates=[2, 5])
    assert {s.order for s in ps.specs} == {"ABBA"}
    assert {s.template_id for s in ps.specs} <= {2, 5}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"order": "AABB"}, "unknown order 'AABB'.*ABBA, BABA, mixed"),
        ({"templates": [99]}, r"unknown template id\(s\) \[99\].*0-14"),
        ({"n": 10**9}, "more than the .* distinct prompts"),
    ],
)
def test_bad_choices_are_named(tok, kwargs, match):
    with pytest.raises(ScrubError, match=match):
        make_ioi(kwargs.pop("n", 5), tokenizer=tok, **kwargs)


def test_count_distinct_is_exact_on_small_lists(tok, vocab):
    small = IOIVocabulary(
        vocab.templates[4:5], vocab.names[:3], vocab.places, vocab.objects, vocab.prefixes
    )
    # template 4 has no place or object: 2 orders x 3 x 2 ordered name pairs = 12 prompts
    assert count_distinct(small, [0], ("ABBA", "BABA"), small.names) == 12
    ps = make_ioi(12, seed=0, tokenizer=tok, vocab=small)
    assert len(set(ps.specs)) == 12
    with pytest.raises(ScrubError, match="more than the 12 distinct"):
        make_ioi(13, seed=0, tokenizer=tok, vocab=small)


def test_tokenizer_that_splits_every_name_is_rejected(vocab):
    from scrub.data import build_word_tokenizer
    from scrub.data.tokenizer import words_of

    no_names = build_word_tokenizer(w for w in words_of(vocab.templates) if w not in vocab.names)
    with pytest.raises(ScrubError, match="keeps only 0 of 100 names"):
        make_ioi(5, tokenizer=no_names, vocab=vocab)


# --- corruptions ------------------------------------------------------------------------------

chains = st.lists(st.sampled_from(sorted(CORRUPTIONS)), min_size=1, max_size=3)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**16), steps=chains)
def test_corruption_chains_keep_alignment_and_positions(tok, seed, steps):
    src = make_ioi(12, seed=seed, tokenizer=tok)
    out = corrupt(src, steps, seed=seed)
    assert len(out) == len(src)
    assert out.lineage[: len(src.lineage)] == src.lineage and len(out.lineage) == len(
        src.lineage
    ) + len(steps)
    assert_positions_decode(out)
    for a, b in zip(src.specs, out.specs):
        assert a.template_id == b.template_id  # row i is a corruption of row i
        assert len({b.io, b.s1}) == 2 and len({b.io, b.s2}) == 2
    again = corrupt(src, steps, seed=seed)
    assert torch.equal(again.tokens, out.tokens)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**16))
def test_single_corruption_fixed_points(tok, seed):
    src = make_ioi(16, seed=seed, tokenizer=tok)
    pairs = {name: corrupt(src, [name], seed=seed).specs for name in CORRUPTIONS}
    for i, s in enumerate(src.specs):
        io = pairs["flip-io"][i]
        assert io.io not in (s.io, s.s1) and (io.s1, io.s2, io.order) == (s.s1, s.s2, s.order)
        fs = pairs["flip-s"][i]
        assert fs.s1 == fs.s2 and fs.s1 not in (s.s1, s.io) and fs.io == s.io
        f1, f2 = pairs["flip-s1"][i], pairs["flip-s2"][i]
        assert f1.s1 != s.s1 and f1.s2 == s.s2 and f2.s2 != s.s2 and f2.s1 == s.s1
        both = pairs["flip-io-s"][i]
        assert both.io not in (s.io, s.s1) and both.s1 == both.s2 not in (s.io, s.s1, both.io)
        a = pairs["abc"][i]
        assert len({a.io, a.s1, a.s2}) == 3 and not {a.io, a.s1, a.s2} & {s.io, s.s1}
        sw = pairs["swap-order"][i]
        assert sw.order != s.order and (sw.io, sw.s1) == (s.io, s.s1)
        pre = pairs["prefix"][i]
        assert 1 <= len(pre.prefix) <= 3 and pre.render()[0].endswith(s.render()[0])


def test_prefix_shifts_every_position_by_prefix_len(tok):
    src = make_ioi(20, seed=1, tokenizer=tok)
    out = corrupt(src, ["prefix", "flip-io"], seed=1)
    assert (out.prefix_len > 0).all()
    for name in ("IO", "S1", "S2", "END"):
        assert torch.equal(out.positions[name], src.positions[name] + out.prefix_len)


def test_unknown_corruption_lists_choices(tok):
    src = make_ioi(4, seed=0, tokenizer=tok)
    with pytest.raises(ScrubError, match="unknown corruption 'flip'.*flip-io.*swap-order"):
        corrupt(src, ["flip"], seed=0)
