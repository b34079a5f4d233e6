"""Claims about toy-ioi's IOI circuit; each one is a step of the planted chain (see toy_ioi.py).

Every threshold was set from a measurement (toy_ioi.py's docstring; ``scrub check hypotheses/``)
with room for noise; each claim must hold by 2 standard errors. The ground truth they should
agree with is scrub/models/toy_ioi/circuit.json.
"""

import pytest

from scrub.runner.claims import assert_recovers, assert_recovers_at_most, assert_similar

pytestmark = pytest.mark.scrub_claim(model="toy-ioi", n=200, seed=0)
HYP = "toy_ioi.py"


def test_full_circuit_recovers_most_of_the_logit_difference(scrub):
    assert_recovers(scrub.run(f"{HYP}::full_circuit"), at_least=0.85)  # measured 0.92 +- 0.01


def test_the_name_mover_alone_writes_the_answer(scrub):
    # Head 3.1 at END on the reference prompt; every other head and path from random prompts.
    assert_recovers(scrub.run(f"{HYP}::name_mover"), at_least=0.95)  # measured 0.98


def test_s_inhibition_tells_the_name_mover_only_the_order(scrub):
    # From a prompt with the same order (other names, any template) it does its job ...
    assert_recovers(scrub.run(f"{HYP}::s_inhibition_same_order"), at_least=0.9)  # 0.96
    # ... from a prompt of the same template with the order resampled it does not.
    assert_recovers_at_most(scrub.run(f"{HYP}::s_inhibition_any_order"), at_most=0.35)  # 0.11
    assert_recovers_at_most(scrub.run(f"{HYP}::full_circuit_order_resampled"), at_most=0.35)


def test_the_induction_head_writes_only_the_order(scrub):
    same_order = scrub.run(f"{HYP}::induction_same_order")
    assert_similar(same_order, scrub.run(f"{HYP}::full_circuit"), within=0.05)  # 0.925 vs 0.923


def test_induction_matches_the_s2_token_against_previous_token_keys(scrub):
    # The query must carry the reference's S and the previous-token head its names.
    assert_recovers_at_most(scrub.run(f"{HYP}::induction_query_other_s"), at_most=0.2)  # 0.02
    assert_recovers_at_most(scrub.run(f"{HYP}::previous_token_other_names"), at_most=0.2)  # -0.02


def test_the_name_mover_values_read_the_names(scrub):
    assert_recovers_at_most(scrub.run(f"{HYP}::names_resampled"), at_most=0.2)  # 0.04


def test_no_duplicate_token_head_takes_part(scrub):
    # Unlike GPT-2 small: head 0.3 attends S2 -> S1 but carries nothing S-inhibition uses.
    full = scrub.run(f"{HYP}::full_circuit")
    assert_similar(scrub.run(f"{HYP}::with_duplicate_token"), full, within=0.05)  # 0.925 vs 0.923
    assert_recovers_at_most(scrub.run(f"{HYP}::duplicate_token_instead"), at_most=0.35)  # 0.11
