"""Data files: validation of templates and lists, BPE tokenizers, export round trips."""

from __future__ import annotations

import json

import pytest
import torch

from scrub.data import IOIVocabulary, corrupt, ioi_word_tokenizer, make_ioi
from scrub.data.export import read_promptset, write_promptset
from scrub.data.files import check_template, read_list
from scrub.errors import ScrubError


def test_published_lists_load(tmp_path):
    v = IOIVocabulary.load()
    assert len(v.templates) == 15 and len(v.places) == 8 and len(v.objects) == 8
    assert len(v.names) >= 99


def test_duplicate_names_are_named(tmp_path):
    f = tmp_path / "names.txt"
    f.write_text("Mary\nJohn\nMary\n")
    with pytest.raises(ScrubError, match="duplicates: Mary"):
        read_list(f, what="names")


@pytest.mark.parametrize(
    ("template", "match"),
    [
        ("When [B] went to the [PLACE], [B] gave it to [A]", "exactly twice"),
        (
            "When [B] and [A] went to the [SHOP], [B] gave it to [A]",
            r"unknown placeholders \[SHOP\]",
        ),
        ("When [B] and [A] went, [B] gave it to [A] today", "must end with the answer"),
    ],
)
def test_bad_templates_are_named(template, match):
    with pytest.raises(ScrubError, match=match):
        check_template(template, 3)


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A GPT-2-style byte-level BPE trained offline on IOI text; small, so some names split."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    v = IOIVocabulary.load()
    ps = make_ioi(400, seed=0, tokenizer=ioi_word_tokenizer(v))
    corpus = [*ps.texts, *v.prefixes] * 3
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=650,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        eos_token="<|endoftext|>",
    )


def test_bpe_positions_align_and_split_names_are_excluded(bpe_tokenizer):
    ps = make_ioi(80, seed=2, tokenizer=bpe_tokenizer)
    assert 0 < len(ps.excluded_names) < 100  # some names split into several tokens
    kept = set(ps.names_pool)
    assert not kept & set(ps.excluded_names)
    for i, spec in enumerate(ps.specs):
        assert {spec.io, spec.s1} <= kept
        for role, name in (("IO", spec.io), ("S1", spec.s1), ("S2", spec.s2)):
            tok_id = int(ps.tokens[i, ps.positions[role][i]])
            assert bpe_tokenizer.decode([tok_id]) == " " + name  # GPT-2 style: a leading space
    out = corrupt(ps, ["prefix", "abc"], seed=2)
    assert all(n in kept for s in out.specs for n in (s.io, s.s1, s.s2))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_export_round_trip(tmp_path, suffix):
    tok = ioi_word_tokenizer()
    ps = corrupt(make_ioi(15, seed=4, tokenizer=tok), ["prefix", "flip-s2"], seed=4)
    path = tmp_path / f"d{suffix}"
    write_promptset(ps, path)
    back = read_promptset(path, tok)
    assert back.specs == ps.specs and torch.equal(back.tokens, ps.tokens)
    assert all(torch.equal(back.positions[k], ps.positions[k]) for k in ps.positions)
    assert not list(tmp_path.glob(".*tmp"))


def test_jsonl_fields(tmp_path):
    ps = make_ioi(5, seed=0, tokenizer=ioi_word_tokenizer())
    write_promptset(ps, tmp_path / "d.jsonl")
    row = json.loads((tmp_path / "d.jsonl").read_text().splitlines()[0])
    for key in (
        "text",
        "tokens",
        "str_tokens",
        "positions",
        "names",
        "template",
        "order",
        "prefix_len",
    ):
        assert key in row
    assert row["str_tokens"][row["positions"]["S2"]] == row["names"]["S2"]
    assert set(row["positions"]) >= {"IO", "S1", "S1+1", "S2", "END"}


def test_words_the_tokenizer_lacks_are_named():
    from scrub.data import build_word_tokenizer
    from scrub.data.tokenizer import words_of

    v = IOIVocabulary.load()
    only_garden = IOIVocabulary(v.templates[:1], v.names, ("garden",), v.objects, v.prefixes)
    words = [w for w in words_of([*v.templates, *v.names, *v.objects]) if w != "garden"]
    with pytest.raises(ScrubError, match="does not know the word.*'garden'"):
        make_ioi(5, tokenizer=build_word_tokenizer(words), vocab=only_garden)
