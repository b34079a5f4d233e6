"""IOI with any tokenizer: punctuation spaced for whitespace-split tokenizers; your own lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scrub.cli import main
from scrub.data import IOIVocabulary, corrupt, ioi_word_tokenizer, make_ioi
from scrub.data.promptset import PromptSpec, build_promptset
from scrub.data.tokenizer import BOS, UNK, splits_only_on_spaces, words_of
from scrub.errors import ScrubError


@pytest.fixture(scope="module")
def ws_tok():
    """Word-level over every IOI word and punctuation mark, split on whitespace only: it knows
    "garden" and "." but not "garden." (built offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    v = IOIVocabulary.load()
    words = sorted(set(words_of([*v.templates, *v.names, *v.places, *v.objects, *v.prefixes])))
    vocab = {BOS: 0, UNK: 1, **{w: i + 2 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=BOS, pad_token=BOS, unk_token=UNK
    )


def test_detection(ws_tok):
    assert splits_only_on_spaces(ws_tok)
    assert not splits_only_on_spaces(ioi_word_tokenizer())  # splits punctuation off words


def test_unspaced_prompts_fail_for_it(ws_tok):
    tpl = IOIVocabulary.load().templates[0]
    spec = PromptSpec(0, tpl, "BABA", "Mary", "John", "John", "garden", "ring")
    with pytest.raises(ScrubError, match="does not know the word"):
        build_promptset([spec], ws_tok, names_pool=["Mary", "John"])


def test_generator_spaces_punctuation_for_it(ws_tok):
    ps = corrupt(make_ioi(40, seed=0, tokenizer=ws_tok), ["prefix", "abc"], seed=0)
    assert all(" , " in t or " . " in t for t in ps.texts)
    assert not any(ws_tok.unk_token_id in row for row in ps.tokens.tolist())
    for i, spec in enumerate(ps.specs):
        row = ps.str_tokens[i]
        assert [row[int(ps.positions[k][i])] for k in ("IO", "S1", "S2")] == [
            spec.io, spec.s1, spec.s2,
        ]  # fmt: skip
    # A tokenizer that splits punctuation itself gets the published, unspaced text.
    plain = make_ioi(5, seed=0, tokenizer=ioi_word_tokenizer())
    assert any("," in t and " ," not in t for t in plain.texts)


def test_cli_with_a_whitespace_tokenizer_dir(ws_tok, tmp_path, capsys):
    ws_tok.save_pretrained(tmp_path / "tok")
    out = tmp_path / "d.jsonl"
    assert (
        main(
            ["dataset", "ioi", "--n", "6", "--tokenizer", str(tmp_path / "tok"), "--out", str(out)]
        )
        == 0
    )
    assert "punctuation spaced out" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 6


def _lists(d: Path, **files: str) -> Path:
    d.mkdir()
    for name, text in files.items():
        (d / f"{name}.txt").write_text(text)
    return d


def test_templates_dir_supplies_templates_and_names(tmp_path, capsys):
    d = _lists(
        tmp_path / "mine",
        templates_baba="When [B] and [A] met at the [PLACE], [B] said to [A]\n"
        "Afterwards [B] and [A] had lunch. [B] gave the [OBJECT] to [A]\n",
        names="Mary\nJohn\nAmy\nDavid\nEmily\n",
    )
    out = tmp_path / "d.jsonl"
    argv = [
        "dataset",
        "ioi",
        "--n",
        "20",
        "--templates-dir",
        str(d),
        "--corrupt",
        "prefix",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"templates from {d / 'templates_baba.txt'}" in printed and "places from" in printed
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    mine = set((d / "templates_baba.txt").read_text().splitlines())
    assert {r["template_text"] for r in rows} == mine  # 20 draws from 2 templates: both used
    assert {n for r in rows for n in r["names"].values()} <= {
        "Mary",
        "John",
        "Amy",
        "David",
        "Emily",
    }
    assert all(r["prefix"] for r in rows)  # the shipped filler sentences


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: _lists(d / "empty", readme="x"), "holds none of scrub's list files"),
        (lambda d: _lists(d / "bad", templates_baba="[B] met [A]\n"), "template 0 ('[B] met [A]')"),
        (lambda d: _lists(d / "dupes", names="Mary\nMary\n"), "has duplicates: Mary"),
    ],
)
def test_bad_templates_dir_exits_2(tmp_path, capsys, make, message):
    out = tmp_path / "d.jsonl"
    assert (
        main(
            [
                "dataset",
                "ioi",
                "--n",
                "4",
                "--templates-dir",
                str(make(tmp_path)),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert message in capsys.readouterr().err and not out.exists()
