"""Drawing hypotheses: dot source, classes, slots, rules, costs, and bad results."""

from __future__ import annotations

import json
import shutil

import pytest

from scrub import OUTPUT, Hypothesis, agree, heads, keep, node
from scrub.errors import ScrubError
from scrub.runner import draw

H = Hypothesis(
    "ioi",
    [
        node("name movers", heads("9.9 9.6 10.0", at="END"), feeds=OUTPUT, rule=agree("io")),
        node("s-inhibition", heads("7.3 8.6", at="END"), feeds="name movers.q", rule=keep),
        node("induction", heads("5.5", at="S2"), feeds="s-inhibition.v"),
        node("helper", heads("1.1", at="S2"), feeds="induction.k"),
    ],
)


def test_dot_has_components_slots_rules_and_colours():
    src = draw.to_dot(H).source
    assert "name movers: 9.9 9.6 10.0 @END" in src
    assert "rule: agree(io)" in src and "rule: keep" in src
    assert "label=q" in src and "label=v" in src and "label=k" in src
    assert draw.head_class("name movers")[1] in src
    assert draw.head_class("backup name movers")[0] == "backup name mover"
    assert draw.head_class("mystery")[0] == "other"


def test_without_drops_the_subtree():
    h = draw.without(H, "s-inhibition")
    assert [n.name for n in h.nodes] == ["name movers"]
    assert h.name == "ioi without s-inhibition"


def test_dot_file_without_the_dot_program(tmp_path):
    out = draw.render(draw.to_dot(H), tmp_path / "g.svg", dot_program=None)
    if shutil.which("dot") is None:
        assert out.image is None and "install graphviz" in out.message
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` not installed")
def test_svg_with_dot(tmp_path):
    out = draw.render(draw.to_dot(H), tmp_path / "g.svg")
    assert out.image and "<svg" in (tmp_path / "g.svg").read_text()


def test_every_node_states_its_other_rule():
    src = draw.to_dot(H).source
    assert src.count("other: random") == len(H.nodes) + 1  # the output's too
    h = Hypothesis("x", [node("a", heads("1.1", at="S2"), feeds=OUTPUT, other=keep)])
    assert "other: keep" in draw.to_dot(h).source


def test_costs_read_from_results_and_wrong_results_rejected(tmp_path):
    from scrub.runner.costs import costs_for
    from scrub.runner.plugin import spec_of

    settings = {"model": "toy", "n": 50, "seed": 3, "metric": "logit-diff"}
    recs = [
        {
            "hypothesis": "ioi",
            "recovered": 0.9,
            "recovered_se": 0.02,
            "settings": settings,
            "hypothesis_spec": spec_of(H),
        }
    ]
    recs += [{"hypothesis": f"ioi without {n.name}", "recovered": 0.5} for n in H.nodes]
    costs = costs_for(H, recs)
    assert costs.source == "results" and costs.costs["helper"] == pytest.approx(0.4)
    src = draw.to_dot(H, costs).source
    assert "costs +0.400" in src
    assert "recovered 0.900 +- 0.020 (n=50, seed 3, logit-diff)" in src
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hypothesis": "something else", "recovered": 0.1}))
    with pytest.raises(ScrubError, match="not of hypothesis 'ioi'"):
        costs_for(H, draw.load_records(other))
    changed = [{**recs[0], "hypothesis_spec": {"nodes": {}}}]
    with pytest.raises(ScrubError, match="different version"):
        costs_for(H, changed)
