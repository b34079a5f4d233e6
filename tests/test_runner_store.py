"""Run directories: atomic records, the results table, listing and comparing runs."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from scrub.errors import ScrubError
from scrub.runner import claims
from scrub.runner.store import (
    RunDir,
    RunStatus,
    compare_runs,
    list_runs,
    record_of,
    resolve_run,
)
from scrub.scrubbing.result import Recovered, ScrubResult


def _result(name: str, shift: float = 0.0, n: int = 50) -> ScrubResult:
    rng = np.random.default_rng(0)
    clean = 3 + rng.normal(size=n)
    rand = rng.normal(size=n)
    scrubbed = rand + (0.8 + shift) * (clean - rand) + 0.1 * rng.normal(size=n)
    a = SimpleNamespace(rows={"": np.arange(n), "x": rng.integers(0, n, n)}, other={})
    return ScrubResult(
        name, "logit-diff", clean, scrubbed, rand, Recovered.from_series(clean, scrubbed, rand), a,
        settings={"model": "toy", "n": n, "seed": 0},
    )  # fmt: skip


def test_records_table_and_atomicity(tmp_path):
    run = RunDir.create(tmp_path, {"seed": 0}, name="r1")
    run.write_record(record_of(_result("a"), key="t::a", outcome="pass"))
    run.write_record(record_of(_result("b"), key="t::b", outcome="fail"))
    table = run.table()
    assert list(table["hypothesis"]) == ["a", "b"]
    assert list(table["outcome"]) == ["pass", "fail"]
    rec = json.loads((run.results_dir / "t_a.json").read_text())
    assert rec["assignment_summary"]["output"]["distinct"] == 50
    assert len(rec["per_example"]["scrubbed"]) == 50
    assert (run.path / "results.csv").read_text().count("\n") == 3
    # no temporary files are left behind; a half-written file would be a dot-file
    assert not [p for p in run.path.rglob(".*") if p.is_file()]


def test_interrupted_write_leaves_finished_results(tmp_path):
    run = RunDir.create(tmp_path, {}, name="r1")
    run.write_record(record_of(_result("a"), key="a", outcome="pass"))

    class Boom(dict):
        def __getitem__(self, k):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.write_record(Boom(key="b"))
    assert [r["key"] for r in run.records()] == ["a"]


def test_list_resolve_compare(tmp_path):
    a = RunDir.create(tmp_path, {}, name="20240101-000000-aaaaaa")
    b = RunDir.create(tmp_path, {}, name="20240102-000000-bbbbbb")
    a.write_record(record_of(_result("h"), key="k", outcome="pass"))
    b.write_record(record_of(_result("h", shift=-0.5), key="k", outcome="fail"))
    b.write_record(record_of(_result("new"), key="k2", outcome="pass"))
    a.finish(RunStatus.FINISHED)
    b.finish(RunStatus.FINISHED)
    assert [r.path.name for r in list_runs(tmp_path)] == [a.path.name, b.path.name]
    assert resolve_run("latest", tmp_path) == b and resolve_run("20240101", tmp_path) == a
    with pytest.raises(ScrubError, match="not a stored run"):
        resolve_run("nope", tmp_path)
    diff = compare_runs(a, b).set_index("hypothesis")
    assert diff.loc["h", "status"] == "changed" and diff.loc["h", "delta"] < -0.3
    assert diff.loc["new", "status"] == "only in B"


def _settings(r: ScrubResult, **changes) -> ScrubResult:
    return replace(r, settings={**r.settings, **changes})


def test_compare_pairs_by_hypothesis_and_settings_not_claim_name(tmp_path):
    a = RunDir.create(tmp_path, {}, name="a")
    b = RunDir.create(tmp_path, {}, name="b")
    same, wider = _result("h"), _result("g")
    # The same result under other claim names (and twice in A: one result, two claims).
    a.write_record(record_of(same, key="test_one::h", outcome="pass"))
    a.write_record(record_of(same, key="test_two::h", outcome="pass"))
    b.write_record(record_of(same, key="renamed::h", outcome="pass"))
    # g: n and seed changed between the runs (other numbers, the same hypothesis).
    a.write_record(record_of(wider, key="k::g", outcome="pass"))
    b.write_record(
        record_of(_settings(_result("g", shift=0.05), seed=4), key="k::g", outcome="pass")
    )
    diff = compare_runs(a, b).set_index("hypothesis")
    assert len(diff) == 2
    assert diff.loc["h", "status"] == "same" and diff.loc["h", "delta"] == 0
    assert diff.loc["g", "differs"] == "seed 0 -> 4" and diff.loc["g", "status"] == "changed"
    se_a, se_b = wider.recovered_se, _result("g", shift=0.05).recovered_se
    assert diff.loc["g", "delta_se"] == pytest.approx((se_a**2 + se_b**2) ** 0.5)
    assert "model=toy" in diff.loc["g", "settings"] and "seed" not in diff.loc["g", "settings"]


def test_claims_respect_the_standard_error():
    r = _result("h")  # recovered ~0.8 with a small SE
    claims.assert_recovers(r, at_least=0.7)
    with pytest.raises(AssertionError, match=r"recovered 0\.\d+ \+- 0\.\d+ \(SE, n=50\)"):
        claims.assert_recovers(r, at_least=r.recovered)  # true value, but not by 2 SE
    claims.assert_recovers_at_most(r, at_most=0.9)
    worse = _result("w", shift=-0.4)
    claims.assert_improves(r, worse, by=0.2)
    with pytest.raises(AssertionError, match="does not improve"):
        claims.assert_improves(worse, r)
    claims.assert_similar(r, _result("same"), within=0.05)
    with pytest.raises(AssertionError, match="not within"):
        claims.assert_similar(r, worse, within=0.05)
