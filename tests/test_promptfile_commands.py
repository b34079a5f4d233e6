"""Prompt files end to end on toy-ioi: `scrub run --dataset`, `scrub patch --dataset --corrupted`,
`scrub dataset import` and the claims marker. A file holding the same prompts as a generated IOI
dataset must give the same numbers as the generated route, bit for bit."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from scrub.cli import main

pytest_plugins = ["pytester"]

TOY_IOI = Path(__file__).resolve().parents[1] / "scrub" / "models" / "toy_ioi" / "config.json"
pytestmark = pytest.mark.skipif(not TOY_IOI.is_file(), reason="the toy-ioi checkpoint is missing")

#: Uses named positions (END, S2) and a feature (order) that the file must provide.
HYP = """
from scrub import OUTPUT, Hypothesis, agree, heads, keep, node

story = Hypothesis("story", [
    node("name mover", heads("3.1", at="END"), feeds=OUTPUT, rule=keep),
    node("s-inhibition", heads("2.0", at="END"), feeds="name mover.q", rule=agree("order")),
    node("induction", heads("1.2", at="S2"), feeds="s-inhibition.v", rule=agree("order")),
])
"""


def _user_rows(ps, *, answers: bool = True) -> list[dict]:
    """The prompts of an IOI PromptSet as a user would write them: text, words, features."""
    rows = []
    for i, spec in enumerate(ps.specs):
        row = {"id": f"p{i}", "text": spec.render()[0]}
        if answers:
            row |= {"correct": spec.io, "incorrect": spec.s1, "order": spec.order}
            row["positions"] = {"IO": spec.io, "S1": spec.s1, "S2": [spec.s2, 2]}
        rows.append(row)
    return rows


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def toy():
    """Loaded (with the engine imported) before any in-process pytester run: those drop modules
    first imported inside them, and transformers' lazy modules do not survive a second import."""
    import io

    import pandas as pd

    from scrub.models import load_model
    from scrub.scrubbing import experiment  # noqa: F401

    pd.DataFrame({"a": [1]}).to_parquet(io.BytesIO())  # registers pandas' arrow extension types
    return load_model("toy-ioi")


def test_run_dataset_equals_the_generated_route(tmp_path, toy, capsys):
    from scrub.data import make_ioi
    from scrub.scrubbing.experiment import scrub_hypothesis
    from scrub.scrubbing.loader import load_hypothesis

    (tmp_path / "h.py").write_text(HYP)
    ioi = make_ioi(60, seed=0, tokenizer=toy.tokenizer)
    prompts = _write(tmp_path / "mine.jsonl", _user_rows(ioi))
    out = tmp_path / "r.json"
    ref = f"{tmp_path / 'h.py'}::story"
    assert main(["run", ref, "--dataset", str(prompts), "--json", str(out)]) == 0
    assert "n=60" in capsys.readouterr().out  # n defaults to every row of the file
    got = json.loads(out.read_text())
    want = scrub_hypothesis(load_hypothesis(ref), toy, ioi, n=60, seed=0).summary()
    for key in ("clean", "scrubbed", "random", "recovered"):
        assert got[key] == want[key], key
    assert got["settings"]["dataset"][0].startswith("file(mine.jsonl, sha256=")


def test_run_dataset_bad_file_and_pool(tmp_path, capsys):
    (tmp_path / "h.py").write_text(HYP)
    ref = f"{tmp_path / 'h.py'}::story"
    bad = _write(tmp_path / "bad.jsonl", [{"text": "When John and Mary went", "correct": "Mary"}])
    assert main(["run", ref, "--dataset", str(bad)]) == 2
    assert "bad.jsonl row 1, column incorrect: missing" in capsys.readouterr().err
    assert main(["run", ref, "--dataset", str(bad), "--pool", "100"]) == 2
    assert "--pool sizes a generated dataset" in capsys.readouterr().err
    assert main(["run", ref, "--dataset", str(tmp_path / "none.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_patch_files_tied_by_id_equal_the_generated_route(tmp_path, toy):
    from scrub.data import corrupt, make_ioi

    clean = make_ioi(12, seed=0, tokenizer=toy.tokenizer)
    bad_rows = _user_rows(corrupt(clean, ["abc"], seed=0), answers=False)
    random.Random(0).shuffle(bad_rows)  # tied by id, not by order
    files = [
        "--dataset", str(_write(tmp_path / "clean.jsonl", _user_rows(clean))),
        "--corrupted", str(_write(tmp_path / "bad.jsonl", bad_rows)),
    ]  # fmt: skip
    common = ["--senders", "heads", "--receivers", "logits", "--no-progress"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    generated = ["--n", "12", "--seed", "0", "--corrupt", "abc"]
    assert main(["patch", *generated, *common, "--json", str(a)]) == 0
    assert main(["patch", *files, *common, "--json", str(b)]) == 0
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert (da["clean"], da["corrupted"]) == (db["clean"], db["corrupted"])
    assert [s["logit_diff"] for s in da["scores"]] == [s["logit_diff"] for s in db["scores"]]


def test_patch_bad_pair_exits_2_without_output(tmp_path, toy, capsys):
    from scrub.data import make_ioi

    clean = make_ioi(3, seed=0, tokenizer=toy.tokenizer)
    rows = _user_rows(clean, answers=False)
    rows[1]["text"] = "Then " + rows[1]["text"]
    files = [
        "--dataset", str(_write(tmp_path / "clean.jsonl", _user_rows(clean))),
        "--corrupted", str(_write(tmp_path / "bad.jsonl", rows)),
    ]  # fmt: skip
    out = tmp_path / "out" / "x.json"
    assert main(["patch", *files, "--json", str(out), "--no-progress"]) == 2
    assert "bad.jsonl row 2, column text: " in capsys.readouterr().err
    assert not out.exists()  # nothing written (its checked folder may exist)


def test_dataset_import_previews_and_writes(tmp_path, toy, capsys):
    from scrub.data import make_ioi
    from scrub.data.promptfile import load_prompts

    prompts = _write(
        tmp_path / "mine.jsonl", _user_rows(make_ioi(4, seed=0, tokenizer=toy.tokenizer))
    )
    out = tmp_path / "checked.parquet"
    assert main(["dataset", "import", str(prompts), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert (
        "4 prompts" in text
        and "positions: IO, S1, S2, END" in text
        and "features: order, id" in text
    )
    assert "S2=" in text and f"wrote 4 prompts to {out}" in text
    a, b = load_prompts(prompts, toy.tokenizer), load_prompts(out, toy.tokenizer)
    assert a.tokens.equal(b.tokens) and a.answers.equal(b.answers)


CLAIMS = """
import pytest
from helpers import FLOOR
from scrub.runner.claims import assert_recovers

pytestmark = pytest.mark.scrub_claim(model="toy-ioi", dataset="data/prompts.jsonl")

def test_story_on_my_prompts(scrub):
    result = scrub.run("hyp.py::story")
    assert result.n == 40 and result.settings["dataset"][0].startswith("file(prompts.jsonl")
    assert_recovers(result, at_least=FLOOR)
"""


def test_claims_marker_reads_a_file_beside_the_claims(pytester, toy):
    """Also: the hypothesis file and the claims file import helpers from their own folder."""
    from scrub.data import make_ioi
    from scrub.runner.check import OWN_IMPORTS, PLUGIN, plugin_installed

    pytester.makepyfile(
        hyp="from helpers import STORY\n" + HYP.replace('"story", [', "STORY, ["),
        helpers="STORY = 'story'\nFLOOR = -1.0\n",
        test_claims=CLAIMS,
    )
    (pytester.path / "data").mkdir()
    _write(
        pytester.path / "data" / "prompts.jsonl",
        _user_rows(make_ioi(40, seed=0, tokenizer=toy.tokenizer)),
    )
    plugin = [] if plugin_installed() else ["-p", PLUGIN]
    result = pytester.runpytest_inprocess(
        *plugin, "-p", OWN_IMPORTS, "--import-mode=importlib", "-p", "no:cacheprovider",
        "--scrub-out", str(pytester.path / "runs"),
    )  # fmt: skip
    result.assert_outcomes(passed=1)


def test_inspect_reads_a_user_prompt_file_like_the_generated_prompts(tmp_path, toy, capsys):
    """`scrub inspect dla --dataset FILE` takes any prompt file (it read only IOI exports): the
    same prompts written by a user give the same table as generating them."""
    from scrub.data import make_ioi

    prompts = _write(
        tmp_path / "mine.jsonl", _user_rows(make_ioi(6, seed=3, tokenizer=toy.tokenizer))
    )
    assert main(["inspect", "dla", "--n", "6", "--seed", "3", "-o", str(tmp_path / "a.svg")]) == 0
    generated = capsys.readouterr().out
    args = ["inspect", "dla", "--dataset", str(prompts), "-o", str(tmp_path / "b.svg")]
    assert main(args) == 0
    from_file = capsys.readouterr().out
    table = [ln for ln in generated.splitlines() if ln.startswith("head ")]
    assert len(table) == 5 and table == [
        ln for ln in from_file.splitlines() if ln.startswith("head ")
    ]
