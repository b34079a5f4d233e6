"""REGRESSION SNAPSHOTS of toy-ioi's scrub results: not predictions, not evidence.

Every threshold here was copied from a measurement (the trailing comments; ``scrub check
hypotheses/``, n = 200, seed 0; re-measured when the random baseline got its own stream),
just under the measured value. They detect that a change of the
model or the engine moved a number; they do not test the ground truth, and passing them says
nothing about the circuit. The claims derived from the ground truth (circuit.json and the
high-level model) are in test_toy_ioi_claims.py.
"""

import pytest

from scrub.runner.claims import assert_improves, assert_recovers, assert_recovers_at_most

pytestmark = pytest.mark.scrub_claim(model="toy-ioi", n=200, seed=0)
HYP = "toy_ioi.py"


def test_snapshot_full_circuit_recovers_most_of_the_logit_difference(scrub):
    assert_recovers(scrub.run(f"{HYP}::full_circuit"), at_least=0.9)  # 0.944 +- 0.006


def test_snapshot_the_name_mover_alone_writes_the_answer(scrub):
    # Head 3.1 at END on the reference prompt; every other head and path from random prompts.
    assert_recovers(scrub.run(f"{HYP}::name_mover"), at_least=0.95)  # 1.002 +- 0.002


def test_snapshot_s_inhibition_tells_the_name_mover_where_s1_is(scrub):
    same_position = scrub.run(f"{HYP}::s_inhibition_same_position")
    assert_recovers(same_position, at_least=0.9)  # 0.98
    # The signal is positional: the same order in another template (S1 elsewhere) does worse ...
    same_order = scrub.run(f"{HYP}::s_inhibition_same_order")
    assert_improves(same_position, same_order, by=0.15)  # 0.98 vs 0.65
    # ... and the other order in the same template does not work at all.
    assert_recovers_at_most(scrub.run(f"{HYP}::s_inhibition_any_order"), at_most=0.35)  # 0.08


def test_snapshot_induction_and_duplicate_token_heads_back_each_other_up(scrub):
    induction = scrub.run(f"{HYP}::induction_resampled")
    duplicate = scrub.run(f"{HYP}::duplicate_resampled")
    # Either one from a prompt whose order may differ: the other keeps part of the effect ...
    assert_recovers(induction, at_least=0.1)  # 0.26 +- 0.06
    assert_recovers(duplicate, at_least=0.5)  # 0.68 +- 0.03
    full = scrub.run(f"{HYP}::full_circuit")
    assert_improves(full, induction, by=0.3)
    assert_improves(full, duplicate, by=0.1)
    # ... both resampled, nothing is left.
    assert_recovers_at_most(scrub.run(f"{HYP}::both_resampled"), at_most=0.2)  # -0.05


def test_snapshot_induction_matches_the_s2_token_against_previous_token_keys(scrub):
    # Break the match (S2 token from another S, or previous-token head from other names): the
    # induction head stops helping and the duplicate-token head alone carries about half.
    for name in ("induction_query_other_s", "previous_token_other_names"):  # 0.52, 0.55
        broken = scrub.run(f"{HYP}::{name}")
        assert_recovers(broken, at_least=0.35)
        assert_recovers_at_most(broken, at_most=0.75)


def test_snapshot_the_name_mover_keys_and_values_read_the_names(scrub):
    assert_recovers_at_most(scrub.run(f"{HYP}::names_resampled"), at_most=0.2)  # -0.02
