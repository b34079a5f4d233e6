"""Node costs: computed once per run, equal to scrubbing each ablation on its own, then reused."""

from __future__ import annotations

import json

import pytest
import torch

from scrub import OUTPUT, Hypothesis, agree, heads, node
from scrub.runner import costs as costs_mod
from scrub.runner.draw import without
from scrub.runner.plugin import spec_of
from scrub.runner.store import RunDir, record_of
from scrub.scrubbing.run import run_hypothesis

H = Hypothesis(
    "small story",
    [
        node("name mover", heads("3.1", at="END"), feeds=OUTPUT, rule=agree("order")),
        node("s-inhibition", heads("2.0", at="END"), feeds="name mover.q", rule=agree("order")),
    ],
)
N, POOL = 40, 200


@pytest.fixture(scope="module")
def toy():
    from scrub.errors import ScrubError
    from scrub.models import load_model

    torch.set_num_threads(1)
    try:
        return load_model("toy-ioi")
    except ScrubError as e:
        pytest.skip(f"toy-ioi checkpoint unavailable: {e}")


@pytest.fixture(scope="module")
def run_with_result(toy, tmp_path_factory):
    run = RunDir.create(tmp_path_factory.mktemp("runs"), {}, name="r")
    result = run_hypothesis(H, toy, n=N, seed=1, pool=POOL)
    extra = {"hypothesis": H.name, "hypothesis_spec": spec_of(H)}
    run.write_record(record_of(result, key="t::small", outcome="pass", extra=extra))
    return run


def test_costs_equal_scrubbing_each_ablation_alone_and_are_stored_once(
    toy, run_with_result, monkeypatch
):
    run = run_with_result
    got = costs_mod.costs_for(H, run.records(), run=run, progress=False)
    assert got.source == "computed"
    full = run.records()[0]["recovered"]
    for n in H.nodes:  # reference: `scrub run` of the ablated hypothesis, from scratch
        ref = run_hypothesis(without(H, n.name), toy, n=N, seed=1, pool=POOL).recovered
        assert got.costs[n.name] == pytest.approx(full - ref, abs=1e-12)
    assert costs_mod.costs_path(run, H.name).is_file()

    def fail(*a, **k):
        raise AssertionError("recomputed costs that were stored")

    monkeypatch.setattr(costs_mod, "compute", fail)
    again = costs_mod.costs_for(H, run.records(), run=run)
    assert again.source == "stored" and dict(again.costs) == pytest.approx(dict(got.costs))


def test_stored_costs_of_other_settings_or_nodes_are_not_reused(run_with_result):
    run = run_with_result
    costs_mod.costs_for(H, run.records(), run=run, progress=False)
    full = run.records()[0]
    assert costs_mod.read_stored(run, H, full) is not None
    assert costs_mod.read_stored(run, H, {**full, "settings": {**full["settings"], "n": 7}}) is None
    changed = Hypothesis(H.name, [H.nodes[0]])
    assert costs_mod.read_stored(run, changed, full) is None
    doc = json.loads(costs_mod.costs_path(run, H.name).read_text())
    assert set(doc["costs"]) == {n.name for n in H.nodes}
