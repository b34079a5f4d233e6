"""The pytest plugin, tested with pytester on the shipped toy model (small n: fast)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from scrub.runner.check import PLUGIN, plugin_installed

pytest_plugins = ["pytester"]

HYP = """
from scrub import OUTPUT, Hypothesis, heads, keep, node

mover = Hypothesis("mover", [node("name movers", heads("1.2", at="END"), feeds=OUTPUT, rule=keep)])
empty = Hypothesis("nothing", [node("late", heads("3.0", at="END"), feeds=OUTPUT, rule=keep)])
"""

CLAIMS = """
import pytest
from scrub.runner.claims import assert_recovers, assert_recovers_at_most

pytestmark = pytest.mark.scrub_claim(model="toy-ioi", n=30, pool=300)

def test_true(scrub):
    assert_recovers_at_most(scrub.run("hyp.py::empty"), at_most=0.5)

def test_false(scrub):
    assert_recovers(scrub.run("hyp.py::mover"), at_least=0.99)

def test_broken(scrub):
    scrub.run("hyp.py::no_such_name")

@pytest.mark.scrub_claim(model="gpt2-small")
def test_about_gpt2(scrub):
    scrub.run("hyp.py::mover")
"""


@pytest.fixture(autouse=True, scope="module")
def _imported_once():
    """Import the engine and load the toy model before pytester snapshots ``sys.modules``.

    In-process pytester runs drop modules first imported inside them; transformers' lazy
    modules do not survive being imported twice in one process.
    """
    from scrub.models import load_model
    from scrub.scrubbing import experiment  # noqa: F401

    load_model("toy-ioi")
    pd.DataFrame({"a": [1]}).to_parquet(io.BytesIO())  # registers pandas' arrow extension types


def _write(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(hyp=HYP, test_claims=CLAIMS)


def _base_args() -> list[str]:
    # Once the pytest11 entry point is installed, `-p` would register the plugin twice.
    plugin = [] if plugin_installed() else ["-p", PLUGIN]
    return [*plugin, "--import-mode=importlib", "-p", "no:cacheprovider"]


def _run(pytester: pytest.Pytester, *args: str):
    return pytester.runpytest_inprocess(*_base_args(), *args)


def _only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1
    return runs[0]


def test_pass_fail_error_skip_and_table(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # gpt2-small must skip, never download
    _write(pytester)
    res = _run(pytester, "--scrub-out", "out", "-rs")
    res.assert_outcomes(passed=1, failed=1, errors=1, skipped=1)
    text = res.stdout.str()
    assert "scrub results" in text and "mover" in text and "nothing" in text
    assert "FAIL" in text and "PASS" in text
    assert "recovered" in text and "n=30" in text  # the failure message names value, SE and n
    assert "gpt2-small weights unavailable" in text and "SCRUB_ALLOW_DOWNLOAD=1" in text
    assert "ERROR at call of test_broken" in text
    run = _only_run(pytester.path / "out")
    meta = json.loads((run / "run.json").read_text())
    assert "versions" in meta and "torch" in meta["versions"]
    assert meta["status"] == "finished" and meta["ended"] >= meta["started"]
    assert f"results: {run} (finished)" in text
    records = [json.loads(p.read_text()) for p in (run / "results").glob("*.json")]
    assert sorted(r["outcome"] for r in records) == ["fail", "pass"]
    rec = records[0]
    assert rec["n"] == 30 and len(rec["per_example"]["clean"]) == 30
    assert rec["settings"]["seed"] == 0 and "assignment_summary" in rec
    assert (run / "results.csv").is_file() and (run / "results.parquet").is_file()


def test_options_override_n_and_seed_and_select_model(pytester: pytest.Pytester):
    _write(pytester)
    res = _run(
        pytester, "--scrub-out", "out", "--scrub-n", "20", "--scrub-seed", "3",
        "--scrub-model", "toy-ioi", "-k", "true or gpt2",
    )  # fmt: skip
    res.assert_outcomes(passed=1, skipped=1)
    rec = json.loads(
        next((_only_run(pytester.path / "out") / "results").glob("*.json")).read_text()
    )
    assert rec["n"] == 20 and rec["seed"] == 3


def test_no_scrub_results_no_table_no_files(pytester: pytest.Pytester):
    pytester.makepyfile(test_plain="def test_x():\n    assert True\n")
    res = _run(pytester)
    res.assert_outcomes(passed=1)
    assert "scrub results" not in res.stdout.str()
    assert not (pytester.path / "runs").exists()


def test_runs_go_where_the_user_stands_not_the_rootdir(pytester: pytest.Pytester, monkeypatch):
    _write(pytester)
    pytester.makeini("[pytest]\n")  # the rootdir is pytester.path
    here = pytester.mkdir("sub")
    monkeypatch.chdir(here)
    res = pytester.runpytest_inprocess(*_base_args(), "../test_claims.py", "-k", "true")
    res.assert_outcomes(passed=1)
    assert _only_run(here / "runs") and not (pytester.path / "runs").exists()


def test_a_session_that_breaks_off_records_failed(pytester: pytest.Pytester):
    pytester.makepyfile(hyp=HYP)
    pytester.makepyfile(
        test_exit="""
import pytest
pytestmark = pytest.mark.scrub_claim(model="toy-ioi", n=30, pool=300)

def test_first(scrub):
    scrub.run("hyp.py::empty")

def test_stops():
    pytest.exit("a test stopped the session")
"""
    )
    _run(pytester, "--scrub-out", "out")
    meta = json.loads((_only_run(pytester.path / "out") / "run.json").read_text())
    assert meta["status"] == "failed" and meta["ended"]


@pytest.mark.slow  # starts a worker process that imports torch (~15 s on a busy core)
def test_xdist_workers_report_to_the_controller(pytester: pytest.Pytester):
    pytest.importorskip("xdist")
    _write(pytester)
    res = pytester.runpytest_subprocess(
        *_base_args(), "-n", "1", "--scrub-out", "out", "-k", "true",
    )  # fmt: skip
    res.assert_outcomes(passed=1)
    text = res.stdout.str()
    assert "scrub results" in text and "nothing" in text  # the controller read the worker's file
    run = _only_run(pytester.path / "out")
    assert len(list((run / "results").glob("*.json"))) == 1
    assert "nothing" in (run / "results.csv").read_text()


def test_table_has_one_row_per_result_with_the_worst_outcome():
    from scrub.runner.plugin import format_table

    base = {"hypothesis": "nm", "model": "toy-ioi", "n": 10, "recovered": 0.5, "recovered_se": 0.1}
    records = [
        {**base, "key": "t1::nm", "outcome": "pass"},
        {**base, "key": "t1::other", "hypothesis": "other", "outcome": "pass"},
        {**base, "key": "t2::nm", "outcome": "fail"},
    ]
    lines = format_table(records)
    assert len(lines) == 4  # header, rule, one row per distinct result
    nm = next(line for line in lines[2:] if line.startswith("nm "))
    assert nm.split()[-2:] == ["2", "FAIL"]
