"""Claims about toy-ioi's IOI circuit, mirroring the REMIX/IOI exploratory claims.

Every number was measured (see toy_ioi.py); each claim must hold by 2 standard errors.
"""

import pytest

from scrub.data import corrupt, make_ioi
from scrub.runner.claims import (
    assert_improves,
    assert_recovers,
    assert_recovers_at_most,
    assert_similar,
)

pytestmark = pytest.mark.scrub_claim(model="toy-ioi", n=200, seed=0)
HYP = "toy_ioi.py"


def test_full_circuit_recovers_most_of_the_logit_difference(scrub):
    assert_recovers(scrub.run(f"{HYP}::full_circuit"), at_least=0.9)


def test_name_movers_keys_do_not_depend_on_the_names(scrub):
    # Keys from a prompt with the same template but other names (and possibly the other order).
    kept = scrub.run(f"{HYP}::name_mover_kept")
    resampled = scrub.run(f"{HYP}::name_mover_keys_resampled")
    assert_similar(resampled, kept, within=0.05)


def test_name_movers_values_carry_the_io_name(scrub):
    kept = scrub.run(f"{HYP}::name_mover_kept")
    other_names = scrub.run(f"{HYP}::name_mover_values_resampled")
    same_io = scrub.run(f"{HYP}::name_mover_values_same_io")
    assert_recovers_at_most(other_names, at_most=0.15)
    assert_improves(same_io, other_names, by=0.2)
    assert_improves(kept, same_io)  # S's identity matters a little too


def test_s_inhibition_passes_no_s_identity_under_order_swap(scrub):
    # The toy has no S-inhibition: the name mover's query (layer-0 heads at END and the END
    # token) may come from a prompt with other names, in either order.
    kept = scrub.run(f"{HYP}::name_mover_kept")
    swapped = scrub.run(f"{HYP}::name_mover_keys_resampled")  # its query agrees on template only
    assert_similar(swapped, kept, within=0.05)


def test_s_inhibition_passes_nothing_under_prefixes(scrub):
    # Half the prompts get 1-3 filler sentences in front, moving every position; the query may
    # come from any prompt of that pool and the name mover still works as well.
    m = scrub.model()
    base = make_ioi(1000, seed=5, tokenizer=m.tokenizer)
    pre = corrupt(base, ["prefix"], seed=5)
    pool = base.rebuild([*base.specs[:500], *pre.specs[500:]], "half prefixed")
    kept = scrub.run(f"{HYP}::name_mover_query_kept", dataset=pool)
    anywhere = scrub.run(f"{HYP}::name_mover_query_random", dataset=pool)
    assert_similar(anywhere, kept, within=0.05)


def test_name_movers_alone_are_not_enough(scrub):
    alone = scrub.run(f"{HYP}::name_movers")
    with_backup = scrub.run(f"{HYP}::name_movers_and_backup")
    assert_recovers_at_most(alone, at_most=0.7)
    assert_improves(with_backup, alone)
