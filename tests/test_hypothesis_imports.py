"""Hypothesis files import helpers from their own folder; `scrub check --help` is scrub's first."""

from __future__ import annotations

import sys
from pathlib import Path

from scrub.cli import main
from scrub.scrubbing.loader import load_file, load_hypothesis

HYP = """
from common import HEAD
from scrub import OUTPUT, Hypothesis, heads, keep, node

h = Hypothesis("h", [node("n", heads(HEAD, at="END"), feeds=OUTPUT, rule=keep)])
"""


def _folder(root: Path, name: str, head: str) -> Path:
    d = root / name
    d.mkdir()
    (d / "common.py").write_text(f"HEAD = {head!r}\n")
    (d / "hyp.py").write_text(HYP)
    return d


def test_each_folder_imports_its_own_helpers(tmp_path):
    a, b = _folder(tmp_path, "a", "1.2"), _folder(tmp_path, "b", "3.0")
    path_before = list(sys.path)
    first = load_hypothesis(f"{a / 'hyp.py'}::h")
    second = load_hypothesis(f"{b / 'hyp.py'}::h")  # its own common.py, not a's (same name)
    assert [str(c) for c in first.nodes[0].components] == ["1.2@END"]
    assert [str(c) for c in second.nodes[0].components] == ["3.0@END"]
    assert sys.path == path_before and "common" not in sys.modules


def test_a_missing_helper_is_a_clear_error(tmp_path):
    (tmp_path / "hyp.py").write_text(HYP)
    try:
        load_file(tmp_path / "hyp.py")
    except ValueError as e:
        assert "does not import: ModuleNotFoundError: No module named 'common'" in str(e)
    else:
        raise AssertionError("a hypothesis importing a missing helper loaded")


def test_check_help_starts_with_scrubs_options(capsys):
    assert main(["check", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Usage: scrub check")
    options = [ln.split()[0] for ln in lines[:14] if ln.strip().startswith("--scrub-")]
    assert options == [
        "--scrub-model",
        "--scrub-n",
        "--scrub-seed",
        "--scrub-out",
        "--scrub-device",
        "--scrub-dtype",
        "--scrub-threads",
    ]
    assert len(lines) < 40 and "scrub check --pytest-help" in lines[-1]
