"""``scrub patch`` through a local typer app (exit code 2 and no output on bad input)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import typer

from scrub.errors import ScrubError
from scrub.patching.command import patch_command

TOY_IOI = Path(__file__).resolve().parents[1] / "scrub" / "models" / "toy_ioi" / "config.json"
needs_toy = pytest.mark.skipif(not TOY_IOI.is_file(), reason="the toy-ioi checkpoint is missing")


def run_cli(*argv: str) -> int:
    """Run ``patch`` as ``scrub.cli.main`` does: ScrubError -> exit code 2."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command("patch")(patch_command)
    app.command("noop")(lambda: None)  # two commands, so "patch" is a subcommand as in scrub
    try:
        app(args=["patch", *argv], standalone_mode=False)
    except ScrubError:
        return 2
    return 0


@needs_toy
def test_json_png_html(tmp_path: Path) -> None:
    out = tmp_path / "pp.json"
    code = run_cli(
        "--model", "toy-ioi", "--n", "8", "--seed", "0", "--corrupt", "abc",
        "--senders", "heads", "--receivers", "q:3.0,3.1", "--positions", "END",
        "--json", str(out), "--png", str(tmp_path / "pp.png"), "--html", str(tmp_path / "pp.html"),
        "--no-progress",
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["mlps"] == "free" and doc["settings"]["receivers"] == "q:3.0,3.1"
    assert doc["settings"]["sender_position"] == "END" and doc["settings"]["corruption"] == "abc"
    assert doc["clean"] != doc["corrupted"]
    scores = doc["scores"]
    assert len(scores) == 4 * 4 and all(s["position"] == "END" for s in scores)
    live = [s for s in scores if s["layer"] < 3]
    assert all(s["logit_diff"] is not None for s in live)
    assert all(s["logit_diff"] is None for s in scores if s["layer"] == 3)  # not upstream: skipped
    for s in live:
        want = (s["logit_diff"] - doc["corrupted"]) / (doc["clean"] - doc["corrupted"])
        assert math.isclose(s["normalized"], want, rel_tol=1e-6, abs_tol=1e-9)
    assert (tmp_path / "pp.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "pp.html").read_text()
    assert "<svg" in page and "corruption abc, n=8, seed 0" in page and "<title>layer 0" in page


@needs_toy
def test_mlp_senders_have_no_head_and_dataset_files_match(tmp_path: Path) -> None:
    from scrub.data import corrupt, load_tokenizer, make_ioi
    from scrub.data.export import write_promptset

    tok = load_tokenizer("toy-ioi")
    clean = make_ioi(6, seed=3, tokenizer=tok)
    write_promptset(clean, tmp_path / "clean.jsonl")
    write_promptset(corrupt(clean, ["abc"], seed=3), tmp_path / "bad.jsonl")
    common = ["--senders", "heads+mlps", "--receivers", "logits", "--mlps", "frozen"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert run_cli("--n", "6", "--seed", "3", *common, "--json", str(a), "--no-progress") == 0
    files = ["--dataset", str(tmp_path / "clean.jsonl"), "--corrupted", str(tmp_path / "bad.jsonl")]
    assert run_cli(*files, *common, "--json", str(b), "--no-progress") == 0
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    mlp_rows = [s for s in da["scores"] if s["component"] == "mlp"]
    assert len(mlp_rows) == 4 and all("head" not in s for s in mlp_rows)
    assert [s["logit_diff"] for s in da["scores"]] == pytest.approx(
        [s["logit_diff"] for s in db["scores"]], abs=1e-6
    )
    assert da["settings"]["mlps"] == "frozen"


@pytest.mark.parametrize(
    "argv",
    [
        ["--mlps", "thawed"],
        ["--receivers", "q:9"],
        ["--normalize", "sideways"],
        ["--senders", "head7"],
        ["--dataset", "x.jsonl"],
        ["--json", "out.txt"],
    ],
)
def test_bad_options_exit_2_before_loading(tmp_path: Path, argv: list[str]) -> None:
    assert run_cli("--model", "no-such-model", *argv, "--png", str(tmp_path / "p.png")) == 2
    assert not any(tmp_path.iterdir())


@needs_toy
@pytest.mark.parametrize(
    "argv",
    [
        ["--receivers", "q:4.0"],  # toy-ioi has layers 0-3
        ["--senders", "3.0", "--receivers", "q:2.0"],  # a sender after its receiver
        ["--senders", "mlp2", "--receivers", "v:2.1"],  # MLP 2 does not feed layer 2's heads
        ["--positions", "S3"],  # the dataset has no such position
        ["--receivers", "k:3.1@IO+2"],
        ["--corrupt", "prefix"],  # changes prompt lengths
    ],
)
def test_bad_input_exit_2_and_no_output(tmp_path: Path, argv: list[str]) -> None:
    files = ["--json", str(tmp_path / "a.json"), "--png", str(tmp_path / "a.png")]
    assert run_cli("--n", "4", *argv, *files, "--no-progress") == 2
    assert not any(tmp_path.iterdir())


@needs_toy
def test_datasets_of_different_sizes(tmp_path: Path) -> None:
    from scrub.data import corrupt, load_tokenizer, make_ioi
    from scrub.data.export import write_promptset

    tok = load_tokenizer("toy-ioi")
    write_promptset(make_ioi(6, seed=0, tokenizer=tok), tmp_path / "clean.jsonl")
    write_promptset(corrupt(make_ioi(5, seed=0, tokenizer=tok), ["abc"]), tmp_path / "bad.jsonl")
    out = tmp_path / "out"
    argv = ["--dataset", str(tmp_path / "clean.jsonl"), "--corrupted", str(tmp_path / "bad.jsonl")]
    assert run_cli(*argv, "--json", str(out / "x.json"), "--no-progress") == 2
    assert not (out / "x.json").exists()
