"""`scrub dataset ioi` end to end."""

from __future__ import annotations

import json

import pytest

from scrub.cli import main


def _rows(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_corrupt_output_row_i_corrupts_row_i(tmp_path, capsys):
    clean, bad = tmp_path / "clean.jsonl", tmp_path / "bad.jsonl"
    assert main(["dataset", "ioi", "--n", "40", "--seed", "1", "--out", str(clean)]) == 0
    args = ["dataset", "ioi", "--n", "40", "--seed", "1", "--corrupt", "prefix,flip-io"]
    assert main([*args, "--out", str(bad)]) == 0
    assert "wrote 40 prompts" in capsys.readouterr().out
    for c, b in zip(_rows(clean), _rows(bad)):
        assert b["text"].endswith(c["text"].replace(c["names"]["IO"], b["names"]["IO"]))
        assert b["names"]["IO"] not in (c["names"]["IO"], c["names"]["S1"])
        for role in ("IO", "S1", "S2"):
            assert b["str_tokens"][b["positions"][role]] == b["names"][role]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--corrupt", "flipio"], "unknown corruption 'flipio'"),
        (["--order", "ABAB"], "unknown order 'ABAB'"),
        (["--templates", "0,40"], "unknown template"),
        (["--n", "100000000000"], "GB of memory"),  # refused before any prompt is built
        (["--tokenizer", "/nonexistent/tok"], "neither 'toy-ioi' nor an existing path"),
    ],
)
def test_bad_input_exits_2_without_output(tmp_path, capsys, args, message):
    out = tmp_path / "x.jsonl"
    assert main(["dataset", "ioi", "--n", "10", *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unknown_suffix(tmp_path, capsys):
    assert main(["dataset", "ioi", "--n", "3", "--out", str(tmp_path / "x.txt")]) == 2
    assert ".jsonl, .csv, .parquet" in capsys.readouterr().err
