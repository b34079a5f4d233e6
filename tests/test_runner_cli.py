"""``scrub check``, ``runs``, ``compare`` and ``draw`` from the command line; bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from scrub.cli import main
from scrub.runner.check import pytest_args

HYP = """
from scrub import OUTPUT, Hypothesis, heads, keep, node
main_circuit = Hypothesis("main", [node("name movers", heads("1.2", at="END"), feeds=OUTPUT,
                                         rule=keep)])
"""


@pytest.fixture
def hyp(tmp_path: Path) -> Path:
    p = tmp_path / "h.py"
    p.write_text(HYP)
    return p


def test_check_args_pass_through(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pytest_args(["-k", "x"], installed=True)[-1] == "hypotheses"
    (tmp_path / "mine").mkdir()
    args = pytest_args(["mine", "-n", "auto"], installed=False)
    assert args[:3] == ["--import-mode=importlib", "-p", "scrub.runner.plugin"]
    assert args[3:] == ["-p", "scrub.runner.own_imports", "mine", "-n", "auto"]


def test_draw_writes_dot_and_reports_the_path(hyp, tmp_path, capsys):
    assert main(["draw", f"{hyp}::main_circuit", "-o", str(tmp_path / "g.dot")]) == 0
    assert "drawing:" in capsys.readouterr().out
    assert "name movers: 1.2 @END" in (tmp_path / "g.dot").read_text()


@pytest.mark.parametrize(
    "ref, message",
    [
        ("{hyp}::main_circuti", "did you mean main_circuit"),
        ("{tmp}/missing.py::x", "does not exist"),
        ("{tmp}/broken.py::x", "does not import"),
        ("{tmp}/nothing.py::x", "defines no hypothesis"),
    ],
)
def test_bad_hypothesis_refs_exit_2(hyp, tmp_path, capsys, ref, message):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "nothing.py").write_text("x = 1\n")
    ref = ref.format(hyp=hyp, tmp=tmp_path)
    assert main(["draw", ref, "-o", str(tmp_path / "g.dot")]) == 2
    assert message in capsys.readouterr().err


def test_draw_rejects_results_of_another_hypothesis(hyp, tmp_path, capsys):
    other = tmp_path / "r.json"
    other.write_text('{"hypothesis": "not main", "recovered": 0.5}')
    code = main(
        ["draw", f"{hyp}::main_circuit", "-o", str(tmp_path / "g.dot"), "--results", str(other)]
    )
    assert code == 2
    assert "not of hypothesis 'main'" in capsys.readouterr().err


def test_runs_and_compare(tmp_path, capsys):
    from test_runner_store import _result

    from scrub.runner.store import RunDir, RunStatus, record_of

    a = RunDir.create(tmp_path, {}, name="20240101-000000-aaaaaa")
    b = RunDir.create(tmp_path, {}, name="20240102-000000-bbbbbb")
    a.write_record(record_of(_result("h"), key="k", outcome="pass"))
    b.write_record(record_of(_result("h", shift=-0.5), key="k", outcome="fail"))
    a.finish(RunStatus.FINISHED)
    b.finish(RunStatus.FINISHED)
    assert main(["runs", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "20240101-000000-aaaaaa" in out and "pass=1" in out
    assert main(["compare", "20240101", "latest", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 results changed" in out and "delta  -0." in out and " +- 0.0" in out
    assert main(["compare", "nope", "latest", "--root", str(tmp_path)]) == 2
