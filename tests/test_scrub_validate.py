"""Eager validation: every bad hypothesis is a ScrubError naming the node and the fix.

Checks run in :func:`scrub.scrubbing.experiment.plan`, before any forward pass, so a stub model
description (layers, heads) and a small dataset suffice.
"""

from __future__ import annotations

import textwrap
from types import SimpleNamespace

import pytest

from scrub.data import TokenSet
from scrub.errors import ScrubError
from scrub.scrubbing.experiment import plan
from scrub.scrubbing.hypothesis import OUTPUT, Hypothesis, agree, heads, mlps, node
from scrub.scrubbing.loader import load_hypothesis

# What plan() reads of a model: a 4-layer, 4-head GPT-2 (no key/value groups, sequential blocks).
INFO = SimpleNamespace(n_layers=4, n_heads=4, n_kv_heads=4, parallel=False)


def dataset() -> TokenSet:
    """Eight rows: 'order' has two values four times each; 'io' value 'Zoe' is on one row only."""
    n = 8
    return TokenSet.build(
        [[0, 1, 2, 3, 4]] * n,
        {"END": [4] * n, "S2": [3] * n, "IO": [1] * n},
        [[1, 2]] * n,
        {
            "order": ["ABBA", "BABA"] * 4,
            "io": ["Amy", "Amy", "Bob", "Bob", "Cat", "Cat", "Cat", "Zoe"],
        },
    )


def check(*nodes, name="h") -> None:
    plan(Hypothesis(name, nodes), INFO, dataset(), n=4, seed=0)


def rejects(*fragments: str):
    """Context: a ScrubError whose message holds every fragment (case-insensitive)."""

    class _Raises:
        def __enter__(self):
            self.ctx = pytest.raises(ScrubError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            swallowed = self.ctx.__exit__(*exc)
            msg = str(self.info.value).lower()
            missing = [f for f in fragments if f.lower() not in msg]
            assert not missing, f"{missing} not in {str(self.info.value)!r}"
            return swallowed

    return _Raises()


NM = node("nm", heads("3.0", at="END"), feeds=OUTPUT)


def test_valid_hypothesis_passes():
    check(NM, node("s-inh", heads("2.1", at="END"), feeds="nm.q", rule=agree("order")))


def test_head_outside_model():
    with rejects("'big'", "12.3", "4 layers", "use layers 0-3"):
        check(node("big", heads("12.3", at="END"), feeds=OUTPUT))


def test_head_index_outside_model():
    with rejects("'wide'", "2.7", "heads 0-3"):
        check(node("wide", heads("2.7", at="END"), feeds=OUTPUT))


def test_edge_from_later_layer_to_earlier():
    with rejects("'late'", "cannot feed", "'early'.q", "earlier layers to later"):
        check(
            node("early", heads("1.0", at="END"), feeds=OUTPUT),
            node("late", heads("2.0", at="END"), feeds="early.q"),
        )


def test_same_layer_head_cannot_feed_head():
    with rejects("'peer'", "cannot feed", "'nm'.v"):
        check(NM, node("peer", heads("3.1", at="END"), feeds="nm.v"))


def test_cycle():
    with rejects("cycle", "remove one edge") as err:
        check(
            NM,
            node("a", heads("1.0"), feeds=["nm.q", "b.q"]),
            node("b", heads("2.0"), feeds="a.q"),
        )
    assert "a -> b" in str(err.value) or "b -> a" in str(err.value)  # names the loop's nodes


def test_self_edge():
    with rejects("'loop'", "feeds itself", "remove"):
        check(NM, node("loop", heads("1.0"), feeds=["nm.q", "loop.q"]))


def test_duplicate_node_names():
    with rejects("'nm'", "used twice", "unique name"):
        check(NM, node("nm", heads("2.0", at="END"), feeds=OUTPUT))


def test_reserved_output_name():
    with rejects("'output'", "unique name"):
        check(node(OUTPUT, heads("2.0", at="END"), feeds=OUTPUT))


def test_unknown_parent():
    with rejects("'s-inh'", "'name mover'", "not a node", "feed one of", "nm"):
        check(NM, node("s-inh", heads("2.0", at="END"), feeds="name mover.q"))


def test_unknown_feature():
    with rejects("'s-inh'", "'ioo'", "not dataset columns", "agree on some of", "io"):
        check(NM, node("s-inh", heads("2.0", at="END"), feeds="nm.q", rule=agree("ioo")))


def test_unknown_feature_in_other_rule():
    with rejects("'s-inh'", "'place'", "not dataset columns"):
        check(NM, node("s-inh", heads("2.0", at="END"), feeds="nm.q", other=agree("place")))


def test_unknown_position():
    with rejects("'ind'", "'S3'", "not in the dataset", "use one of", "S2"):
        check(NM, node("ind", heads("1.0", at="S3"), feeds="nm.v"))


def test_agree_with_lonely_values():
    with rejects("'nm'", "agree(io)", "1 value", "Zoe", "allow_self=True"):
        check(node("nm", heads("3.0", at="END"), feeds=OUTPUT, rule=agree("io")))


def test_agree_with_lonely_values_allowed():
    check(node("nm", heads("3.0", at="END"), feeds=OUTPUT, rule=agree("io", allow_self=True)))


def test_lonely_values_of_combined_features():
    # io = Amy is shared by two rows, but (ABBA, Amy) is on one row only.
    with rejects("'nm'", "agree(order, io)", "allow_self=True"):
        check(node("nm", heads("3.0", at="END"), feeds=OUTPUT, rule=agree("order", "io")))


def test_component_claimed_by_two_children_on_one_slot():
    with rejects("1.2@S2", "'ind a'", "'ind b'", "'nm'.v", "one child per slot"):
        check(
            NM,
            node("ind a", heads("1.2 1.3", at="S2"), feeds="nm.v"),
            node("ind b", heads("1.2", at="S2"), feeds="nm.v"),
        )


def test_component_claimed_on_two_slots_is_fine():
    check(
        NM,
        node("ind a", heads("1.2", at="S2"), feeds="nm.v"),
        node("ind b", heads("1.2", at="S2"), feeds="nm.k"),
    )


def test_feeding_mlp_of_node_without_mlp():
    with rejects("'low'", "'nm'.mlp", "no mlp", "feed q, k or v"):
        check(NM, node("low", heads("1.0"), feeds="nm.mlp"))


def test_feeding_heads_slot_of_mlp_node():
    with rejects("'low'", "'m'.q", "no head"):
        check(
            node("m", mlps("3", at="END"), feeds=OUTPUT),
            node("low", heads("1.0"), feeds="m.q"),
        )


def test_bad_edge_text():
    with pytest.raises(ScrubError, match="cannot read the edge 'nm.z'"):
        node("low", heads("1.0"), feeds="nm.z")


def test_n_larger_than_pool():
    with rejects("n=20", "8 rows", "lower n"):
        plan(Hypothesis("h", [NM]), INFO, dataset(), n=20, seed=0)


# --- the hypothesis-file loader ---------------------------------------------------------------


def _write(tmp_path, text: str, name="hyps.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
    from scrub import OUTPUT, Hypothesis, agree, heads, node
    full_circuit = Hypothesis("full", [node("nm", heads("3.0", at="END"), feeds=OUTPUT)])
    name_movers_only = Hypothesis("nm-only", [node("nm", heads("3.1", at="END"), feeds=OUTPUT)])
"""


def test_loader_finds_by_variable_and_by_name(tmp_path):
    path = _write(tmp_path, GOOD)
    assert load_hypothesis(f"{path}::full_circuit").name == "full"
    assert load_hypothesis(f"{path}::nm-only").name == "nm-only"


def test_loader_file_that_does_not_import(tmp_path):
    path = _write(tmp_path, "from scrub import nothing_here\n")
    with rejects(str(path), "does not import", "ImportError", "nothing_here", "traceback"):
        load_hypothesis(str(path))


def test_loader_file_with_syntax_error(tmp_path):
    path = _write(tmp_path, "h = Hypothesis(\n")
    with rejects(str(path), "does not import", "SyntaxError"):
        load_hypothesis(f"{path}::h")


def test_loader_file_with_no_hypothesis(tmp_path):
    path = _write(tmp_path, "x = 1\n")
    with rejects(str(path), "defines no hypothesis", "module-level"):
        load_hypothesis(str(path))


def test_loader_missing_file(tmp_path):
    with rejects("does not exist", "check the path"):
        load_hypothesis(f"{tmp_path / 'nope.py'}::full")


def test_loader_typo_suggests_close_names(tmp_path):
    path = _write(tmp_path, GOOD)
    with rejects("no hypothesis 'ful_circuit'", "did you mean", "full_circuit"):
        load_hypothesis(f"{path}::ful_circuit")


def test_loader_unrelated_name_lists_choices(tmp_path):
    path = _write(tmp_path, GOOD)
    with rejects("no hypothesis 'zzz'", "choose from", "full_circuit", "name_movers_only"):
        load_hypothesis(f"{path}::zzz")


def test_loader_ambiguous_file_asks_for_a_name(tmp_path):
    path = _write(tmp_path, GOOD)
    with rejects("defines 2 hypotheses", f"{path}::full_circuit"):
        load_hypothesis(str(path))


# --- edges and claims that once slipped through validation ----------------------------------


def test_repeated_edge():
    with rejects("'ind'", "'nm'.v", "twice"):
        check(NM, node("ind", heads("1.0", at="S2"), feeds=["nm.v", "nm.v"]))


def test_component_claimed_at_all_positions_and_at_one():
    with rejects("1.0", "'all'", "'end'", "'nm'.v"):
        check(
            NM,
            node("all", heads("1.0"), feeds="nm.v"),
            node("end", heads("1.0", at="END"), feeds="nm.v"),
        )
