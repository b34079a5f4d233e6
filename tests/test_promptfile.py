"""Prompt files: the format's positions, answers, ids and features, round trips, bad-file messages.

Expected token indices are worked out by hand from the toy tokenizer, which is word-level and
splits punctuation off words: "When John and Mary went to the store, John gave a ring to" is
When(0) John(1) and(2) Mary(3) went(4) to(5) the(6) store(7) ,(8) John(9) gave(10) a(11)
ring(12) to(13); scrub puts BOS first, so the model sees token k at k + 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from scrub.cli import main
from scrub.data import load_tokenizer
from scrub.data.promptfile import load_pair, load_prompts, prompt_records, write_prompts
from scrub.errors import ScrubError

TEXT = "When John and Mary went to the store, John gave a ring to"
TEXT_B = "When Amy and Adam went to the school, Amy gave a ring to"
#: BOS-counted indices of S1, IO, S2 and END in TEXT (see the module docstring).
S1, IO, S2, END = 2, 4, 10, 14


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("toy-ioi")


def _row(**kw) -> dict:
    row = {
        "text": TEXT,
        "correct": "Mary",
        "incorrect": "John",
        "positions": {"IO": "Mary", "S1": "John", "S2": ["John", 2]},
        "order": "BABA",
    }
    return {**row, **kw}


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_word_positions_with_occurrence_index_and_token_indices_agree(tmp_path, tok):
    rows = [
        _row(id="word"),
        _row(id="hash", positions={"IO": "Mary", "S1": "John#1", "S2": "John#2"}),
        _row(id="index", positions={"IO": 3, "S1": 1, "S2": 9, "END": 13}),
        _row(id="negative", positions={"IO": -11, "S1": "-13", "S2": -5, "END": -1}),
    ]
    ps = load_prompts(_jsonl(tmp_path / "p.jsonl", rows), tok)
    for name, want in (("S1", S1), ("IO", IO), ("S2", S2), ("END", END)):
        assert ps.positions[name].tolist() == [want] * 4, name
    assert [ps.str_tokens[0][p] for p in (S1, IO, S2, END)] == ["John", "Mary", "John", "to"]
    mary, john = tok.convert_tokens_to_ids(["Mary", "John"])
    assert ps.answers.tolist() == [[mary, john]] * 4
    assert ps.features["id"] == ("word", "hash", "index", "negative")
    assert ps.features["order"] == ("BABA",) * 4
    assert ps.features["pos_S2"] == (S2,) * 4


def test_token_rows_resolve_like_text_rows(tmp_path, tok):
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    mary, john = tok.convert_tokens_to_ids(["Mary", "John"])
    as_tokens = {
        "tokens": ids,
        "correct": mary,
        "incorrect": str(john),
        "positions": {"IO": "Mary", "S1": "John", "S2": "John#2"},
        "order": "BABA",
    }
    ps = load_prompts(_jsonl(tmp_path / "p.jsonl", [_row(), as_tokens]), tok)
    assert torch.equal(ps.tokens[0], ps.tokens[1]) and torch.equal(ps.answers[0], ps.answers[1])
    assert all(p[0] == p[1] for p in ps.positions.values())
    assert ps.text_rows == (TEXT, None) and ps.texts[1] == ps.texts[0].replace(",", " ,")


def test_multi_token_word_marks_its_last_token(tmp_path, tok):
    ps = load_prompts(_jsonl(tmp_path / "p.jsonl", [_row(positions={"P": "store,"})]), tok)
    assert ps.positions["P"].tolist() == [9]  # "store" is 8, "," is 9 (BOS-counted)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_round_trip_through_every_format(tmp_path, tok, suffix):
    mary, john = tok.convert_tokens_to_ids(["Mary", "John"])
    ids = tok(TEXT_B, add_special_tokens=False)["input_ids"]
    rows = [
        _row(id="a", template=0),
        _row(id="b", text=TEXT_B, correct="Adam", incorrect="Amy", template=3,
             positions={"IO": "Adam", "S1": "Amy", "S2": "Amy#2"}),
        {"id": 7, "tokens": ids, "correct": mary, "incorrect": john, "order": "ABBA",
         "template": 0, "positions": {"IO": 3, "S1": "Amy", "S2": -5}},
    ]  # fmt: skip
    ps = load_prompts(_jsonl(tmp_path / "src.jsonl", rows), tok)
    write_prompts(ps, tmp_path / f"out{suffix}")
    back = load_prompts(tmp_path / f"out{suffix}", tok)
    assert torch.equal(back.tokens, ps.tokens) and torch.equal(back.mask, ps.mask)
    assert torch.equal(back.answers, ps.answers)
    assert set(back.positions) == set(ps.positions) == {"IO", "S1", "S2", "END"}
    assert all(torch.equal(back.positions[k], ps.positions[k]) for k in ps.positions)
    assert back.text_rows == (TEXT, TEXT_B, None)
    assert dict(back.features) == dict(ps.features)
    assert back.features["template"] == (0, 3, 0) and back.features["id"] == ("a", "b", "7")
    assert not list(tmp_path.glob(".*tmp"))


def test_files_written_by_scrub_dataset_ioi_keep_loading(tmp_path, tok):
    from scrub.data import make_ioi
    from scrub.data.export import write_promptset

    ioi = make_ioi(6, seed=1, tokenizer=tok)
    write_promptset(ioi, tmp_path / "ioi.csv")
    ps = load_prompts(tmp_path / "ioi.csv", tok)
    assert ps.specs == ioi.specs and torch.equal(ps.tokens, ioi.tokens)
    # ... and written as a prompt file, they read back to the same prompts and features.
    write_prompts(ps, tmp_path / "ioi.jsonl")
    back = load_prompts(tmp_path / "ioi.jsonl", tok)
    assert torch.equal(back.tokens, ioi.tokens) and torch.equal(back.answers, ioi.answers)
    assert all(torch.equal(back.positions[k], ioi.positions[k]) for k in ioi.positions)
    assert {k: back.features[k] for k in ("io", "s", "order", "template")} == {
        k: ioi.features[k] for k in ("io", "s", "order", "template")
    }


def test_gpt2_style_bpe_answers_take_the_leading_space(tmp_path):
    """A byte-level BPE (trained offline here) has " Mary", not "Mary", after "to"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator([TEXT + " Mary", TEXT_B + " Adam"] * 20, trainer)
    bpe = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|endoftext|>")
    ps = load_prompts(_jsonl(tmp_path / "p.jsonl", [_row()]), bpe)
    correct, incorrect = (bpe.decode([int(t)]) for t in ps.answers[0])
    assert (correct, incorrect) == (" Mary", " John")
    assert [ps.str_tokens[0][int(ps.positions[k][0])] for k in ("S1", "IO", "S2")] == [
        " John", " Mary", " John",
    ]  # fmt: skip
    write_prompts(ps, tmp_path / "out.parquet")
    assert torch.equal(load_prompts(tmp_path / "out.parquet", bpe).answers, ps.answers)


# -- corrupted files tied by id -------------------------------------------------------------------


def _corrupted(text: str, **kw) -> dict:
    return {"text": text, **kw}


def test_corrupted_rows_tied_by_id_in_any_order(tmp_path, tok):
    clean = _jsonl(
        tmp_path / "clean.jsonl",
        [
            _row(id="a"),
            _row(id="b", text=TEXT_B, correct="Adam", incorrect="Amy",
                 positions={"IO": "Adam", "S1": "Amy", "S2": "Amy#2"}),
        ],
    )  # fmt: skip
    bad_a = TEXT.replace("John", "David").replace("Mary", "Emily")
    bad_b = TEXT_B.replace("Amy", "Eric").replace("Adam", "Daniel")
    bad = _jsonl(tmp_path / "bad.jsonl", [_corrupted(bad_b, id="b"), _corrupted(bad_a, id="a")])
    c, b = load_pair(clean, bad, tok)
    assert b.text_rows == (bad_a, bad_b)  # in the clean file's order
    assert torch.equal(b.answers, c.answers)  # the corrupted file gives none: the clean ones
    assert b.features["id"] == c.features["id"] == ("a", "b")
    assert b.tokens[0, S1] == tok.convert_tokens_to_ids("David")


def test_without_ids_rows_pair_by_order(tmp_path, tok):
    clean = _jsonl(tmp_path / "clean.jsonl", [_row(), _row()])
    bad = _jsonl(tmp_path / "bad.csv", [])
    pd.DataFrame({"text": [TEXT.replace("Mary", "Amy"), TEXT]}).to_csv(bad, index=False)
    c, b = load_pair(clean, bad, tok)
    assert b.tokens[0, IO] == tok.convert_tokens_to_ids("Amy") and torch.equal(
        b.tokens[1], c.tokens[1]
    )


# -- bad files: one line naming the row, the column and the fix -----------------------------------

LONG = TEXT.replace("the store", "the the store")
BAD_FILES = [
    # (rows, the message's expected text: file, row, column, problem; and a piece of the fix)
    ([{"correct": "Mary"}], "row 1, column text: missing (columns: correct)", "give the prompt"),
    ([_row(), _row(text="When Anna and Tom went")], "row 2, column text: the tokenizer does not "
     "know 'Anna', 'Tom'", "reword"),
    ([_row(positions={"S2": "Jon"})], "row 1, column positions.S2: the word 'Jon' does not occur "
     "in the text", "WORD#K"),
    ([_row(positions={"S2": ["John", 3]})], "row 1, column positions.S2: the word 'John' occurs "
     "2 time(s) in the text, so it has no occurrence 3", "token index"),
    ([_row(positions={"S2": 1.5})], "row 1, column positions.S2: cannot read 1.5 as a position",
     "John#2"),
    ([_row(positions={"S2": ["John", 0]})], "column positions.S2: cannot read ['John', 0]",
     "token index"),
    ([_row(positions={}, pos_END=99)], "row 1, column pos_END: token index 99 but the prompt has "
     "14 tokens", "use 0..13 (or -14..-1"),
    ([_row(positions={"S2": "John#2"}, pos_S2=9)], "row 1, column pos_S2: position S2 is also "
     "given in positions.S2", "give it once"),
    ([_row(positions=[1, 2])], "row 1, column positions: not an object", '"S1": "John"'),
    ([_row(), _row(positions={"IO": "Mary", "S1": "John"})], "row 2, column positions.S2: "
     "missing; other rows give the position S2", "give S2 in every row"),
    ([_row(), {k: v for k, v in _row().items() if k != "order"}], "row 2, column order: missing",
     "or drop the column"),
    ([_row(meta={"a": 1})], "row 1, column meta: a dict is not a feature value", "a string or"),
    ([_row(incorrect=None)], "row 1, column incorrect: missing", "`incorrect`"),
    ([_row(correct=5)], "row 1, column correct: 5 is not a word", 'write "5"'),
    ([_row(correct="Mary John")], "row 1, column correct: 'Mary John' is not one token (after "
     "the text it reads as ['Mary', 'John'])", "one token"),
    ([_row(correct="Zorro")], "row 1, column correct: the tokenizer does not know 'Zorro'",
     "vocabulary"),
    ([{"tokens": "When John", "correct": 3, "incorrect": 4}], "row 1, column tokens: 'When John' "
     "is not a list of token ids", "[464, 3290, 373]"),
    ([{"tokens": [5, 99999], "correct": 3, "incorrect": 4}], "row 1, column tokens: token id "
     "99999 is not in the tokenizer's vocabulary", "model's own tokenizer"),
    ([{"tokens": [5, 6], "correct": "Mary", "incorrect": 4}], "row 1, column correct: 'Mary' is "
     "not a token id", "give the text"),
    ([_row(tokens=[5, 6])], "row 1, column tokens: [5, 6]... are not the tokens of the text",
     "drop the tokens column"),
    ([_row(id="a"), _row(id="a")], "row 2, column id: 'a' already names row 1", "unique"),
    ([_row(id="a"), _row()], "row 2, column id: missing", "give every row an id, or none"),
    ([_row(), '{"text": "When John",'], "row 2: not valid JSON", "one JSON object per line"),
    ([_row(), "[1, 2]"], "row 2: a JSON list, not an object", "one object per line"),
    ([], "has no rows", "one prompt per row"),
]  # fmt: skip


@pytest.mark.parametrize(("rows", "message", "fix"), BAD_FILES)
def test_bad_file_gets_one_line_with_row_column_and_fix(tmp_path, capsys, rows, message, fix):
    path = _jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "out.jsonl"
    assert main(["dataset", "import", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: p.jsonl") or "has no rows" in err, err
    assert message in err and fix in err.partition(";")[2], err
    assert err.count("\n") == 1  # one line
    assert not out.exists()


def test_bad_csv_and_parquet_cells_name_their_column(tmp_path, tok):
    frame = pd.DataFrame(
        {"text": [TEXT, TEXT], "correct": ["Mary", ""], "incorrect": ["John", "John"],
         "pos_S2": ["John#2", "John#2"]}
    )  # fmt: skip
    frame.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(ScrubError, match=r"p.csv row 2, column correct: missing"):
        load_prompts(tmp_path / "p.csv", tok)
    frame.assign(correct=["Mary", "Mary"], pos_S2=["John#2", "Jon"]).to_parquet(
        tmp_path / "p.parquet"
    )
    with pytest.raises(ScrubError, match=r"p.parquet row 2, column pos_S2: the word 'Jon'"):
        load_prompts(tmp_path / "p.parquet", tok)


def test_unknown_suffix_and_too_long_for_the_model(tmp_path, tok):
    with pytest.raises(ScrubError, match=r"cannot read p.txt; use a file ending in .jsonl"):
        load_prompts(tmp_path / "p.txt", tok)
    path = _jsonl(tmp_path / "p.jsonl", [_row()])
    with pytest.raises(ScrubError, match=r"row 1, column text: 15 tokens \(with BOS\) exceed"):
        load_prompts(path, tok, n_ctx=10)
    # A model with a smaller vocabulary than its tokenizer: no embedding for the answer.
    path = _jsonl(tmp_path / "t.jsonl", [{"tokens": [5, 6], "correct": 150, "incorrect": 4}])
    with pytest.raises(
        ScrubError, match="row 1, column correct: token id 150 but the model has 100"
    ):
        load_prompts(path, tok, n_vocab=100)


def test_word_that_is_not_whole_tokens_is_named(tmp_path):
    """A whitespace-split tokenizer that knows "store," as one token cannot mark "store"."""
    from tokenizers import pre_tokenizers

    from scrub.data import build_word_tokenizer

    vocab = ["When", "John", "and", "Mary", "went", "to", "the", "store,", "gave", "a", "ring"]
    wt = build_word_tokenizer(vocab)
    wt.backend_tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = _jsonl(tmp_path / "p.jsonl", [_row(positions={"P": "store"})])
    message = (
        r"column positions.P: the word 'store' does not start and end at token boundaries "
        r"\(tokens \['store,'\]\); mark whole tokens"
    )
    with pytest.raises(ScrubError, match=message):
        load_prompts(path, wt)


# -- pairs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clean", "bad", "message"),
    [
        ([_row(id="a")], [{"text": TEXT, "id": "zz"}],
         "bad.jsonl row 1, column id: 'zz' is not an id of clean.jsonl; give each corrupted row"),
        ([_row(id="a"), _row(id="b")], [{"text": TEXT, "id": "a"}],
         "clean.jsonl row 2, column id: no row of bad.jsonl has the id 'b'; give every clean row"),
        ([_row(id="a")], [{"text": TEXT}],
         "only clean.jsonl has an id column; give both files an id column, or neither"),
        ([_row(), _row()], [{"text": TEXT}],
         "clean.jsonl has 2 rows but bad.jsonl has 1; without ids, row i"),
        ([_row(id="a")], [{"text": LONG, "id": "a"}],
         "bad.jsonl row 1, column text: 15 tokens (id 'a') but its clean row has 14; patching"),
    ],
)  # fmt: skip
def test_bad_pairs_are_named(tmp_path, tok, clean, bad, message):
    c, b = _jsonl(tmp_path / "clean.jsonl", clean), _jsonl(tmp_path / "bad.jsonl", bad)
    with pytest.raises(ScrubError) as e:
        load_pair(c, b, tok)
    assert message in str(e.value)


def test_records_are_plain_json(tok, tmp_path):
    ps = load_prompts(_jsonl(tmp_path / "p.jsonl", [_row(id=3, template=1)]), tok)
    (rec,) = prompt_records(ps)
    assert rec["positions"] == {"IO": IO - 1, "S1": S1 - 1, "S2": S2 - 1, "END": END - 1}
    assert (rec["correct"], rec["incorrect"], rec["template"]) == ("Mary", "John", 1)
    json.dumps(rec)
