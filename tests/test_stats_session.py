"""`scrub test` on the toy model, and a claims session's raw and Holm-adjusted p-values."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from scrub.cli import main
from scrub.runner.check import PLUGIN, plugin_installed

pytest_plugins = ["pytester"]


def test_scrub_test_prints_the_table(capsys):
    code = main(
        ["test", "hypotheses/toy_ioi.py::name_mover", "--tests", "equivalence,localisation",
         "--n", "40", "--pool", "400"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("test "))
    assert "p (Holm)" in lines[header]
    rows = lines[header + 2 : header + 4]
    assert rows[0].startswith("equivalence") and rows[1].startswith("localisation")
    # The name mover alone on the reference prompt is the model's answer: equivalent.
    assert rows[0].endswith("PASS")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tests", "equivalence,bogus"], "unknown test(s) bogus"),
        (["--k", "1"], "--k and --k-sufficiency need at least 2"),
    ],
)
def test_scrub_test_rejects_bad_input(capsys, args, message):
    assert main(["test", "hypotheses/toy_ioi.py::name_mover", *args]) == 2
    assert message in capsys.readouterr().err


CLAIMS = """
import pytest
from scrub import OUTPUT, Hypothesis, heads, keep, node
from scrub.runner.claims import assert_improves, assert_recovers

pytestmark = pytest.mark.scrub_claim(model="toy-ioi", n=30, pool=300)
MOVER = Hypothesis("mover", [node("nm", heads("3.1", at="END"), feeds=OUTPUT, rule=keep)])
LATE = Hypothesis("late", [node("late", heads("3.0", at="END"), feeds=OUTPUT, rule=keep)])

def test_mover_beats_late(scrub):
    assert_improves(scrub.run(MOVER), scrub.run(LATE), by=0.5)
    assert_recovers(scrub.run(MOVER), at_least=0.9)

def test_late_is_enough(scrub):
    assert_recovers(scrub.run(LATE), at_least=0.5)
"""


def test_a_session_reports_raw_and_holm_p_values(pytester: pytest.Pytester):
    from scrub.models import load_model
    from scrub.scrubbing import experiment  # noqa: F401  (imported before pytester's snapshot)

    load_model("toy-ioi")
    pd.DataFrame({"a": [1]}).to_parquet(io.BytesIO())
    pytester.makepyfile(test_claims=CLAIMS)
    plugin = [] if plugin_installed() else ["-p", PLUGIN]
    res = pytester.runpytest_inprocess(
        *plugin, "--import-mode=importlib", "-p", "no:cacheprovider", "--scrub-out", "out"
    )
    res.assert_outcomes(passed=1, failed=1)
    text = res.stdout.str()
    assert "claims (p: raw one-sided; Holm" in text and "p (Holm)" in text
    (run,) = [p for p in (pytester.path / "out").iterdir() if p.is_dir()]
    table = pd.read_csv(run / "claims.csv").set_index("subject")
    assert dict(table["kind"]) == {"mover > late": "improves", "mover": "recovers",
                                   "late": "recovers"}  # fmt: skip
    assert dict(table["outcome"]) == {"mover > late": "pass", "mover": "pass", "late": "fail"}
    # Holm over three claims: sorted p times 3, 2, 1, made non-decreasing, capped at 1.
    p = table["p_value"].sort_values()
    want = [min(1.0, max((3 - i) * p.iloc[i] for i in range(j + 1))) for j in range(3)]
    assert list(table.loc[p.index, "p_holm"]) == pytest.approx(want)
    assert (run / "claims").is_dir() and len(list((run / "claims").glob("*.json"))) == 2
