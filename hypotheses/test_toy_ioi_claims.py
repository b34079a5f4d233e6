"""toy-ioi claims derived from its ground truth (scrub/models/toy_ioi/circuit.json).

Each claim is a prediction, made before measuring, from the planted circuit and its high-level
model (MODEL_CARD.md, ``toy_eval.hl_run``): the planted heads are necessary, the other heads are
not, and each resampling of a part of the story leaves the output the high-level model says.
Predictions the measurement contradicts are kept as written and marked ``xfail(strict=True)``
with what was measured: they are findings about the toy (or about the hypothesis language), and
if one starts to hold, strict xfail makes the session fail so the mark gets removed.

The high-level model's output per prompt is the name in the slot with fewer S-inhibition votes
(a vote from each of DUP and IND): the right answer (logit difference = clean, recovered 1), a tie
(0) or the wrong name (-clean). A resampling's predicted recovered fraction is the mean of those,
over the probability that the resampled prompt changes the votes (1/2 for a prompt whose order
may differ). Tolerance (``WITHIN``): the toy matches the high-level model on >= 95% of the
ground-truth pairs (a mismatch moves an example by at most 2 in recovered units: 0.1) and keeps
>= 90% of the logit difference when every non-aligned head is resampled (0.1), the two bars of
its card: 0.2 in all.

Regression snapshots (thresholds copied from measurements) are in test_toy_ioi_snapshots.py.
"""

import pytest

from scrub import Head, keep, node
from scrub.runner.claims import (
    assert_minimal,
    assert_not_minimal,
    assert_recovers_near,
    scrub_setup,
)
from scrub.stats.formal import null_costs, with_node

pytestmark = pytest.mark.scrub_claim(model="toy-ioi", n=200, seed=0)
HYP = "toy_ioi.py"
WITHIN = 0.2
#: Random nodes in minimality's null sample.
K = 20


def _xfail(why: str):
    return pytest.mark.xfail(strict=True, reason=f"measured (n=200, seed 0): {why}")


# -- the high-level model's predictions for each resampling ----------------------------------------

PREDICTIONS = [
    # The planted circuit is the whole story: it should recover what the model does.
    pytest.param(
        "planted",
        1.0,
        marks=_xfail(
            "0.32 +- 0.06: the planted heads at the planted positions, "
            "with the inputs they read, are not enough (see README)"
        ),
    ),  # fmt: skip
    ("full_circuit", 1.0),
    # The name mover on the reference prompt writes the answer; everything else is irrelevant.
    ("name_mover", 1.0),
    # S-inhibition from a prompt with the same votes (same order, same template): same output.
    ("s_inhibition_same_position", 1.0),
    # The votes are per slot (first or second name), so the same order in any template keeps them.
    pytest.param(
        "s_inhibition_same_order",
        1.0,
        marks=_xfail("0.65 +- 0.05: the S-inhibition signal is where S1 sits, not the slot"),
    ),  # fmt: skip
    # The other order half the time: the votes point at IO's slot and the output flips: 0.
    pytest.param(
        "s_inhibition_any_order",
        0.0,
        marks=_xfail("0.08 +- 0.08: near 0, but not within 0.2 by 2 SE at n=200"),
    ),  # fmt: skip
    # One of the two voters from a prompt whose order may differ: a tie half the time: 0.5.
    pytest.param(
        "induction_resampled",
        0.5,
        marks=_xfail("0.26 +- 0.06: the induction head's vote weighs less than DUP's"),
    ),  # fmt: skip
    pytest.param(
        "duplicate_resampled",
        0.5,
        marks=_xfail("0.68 +- 0.03: the duplicate-token head's vote weighs more than IND's"),
    ),  # fmt: skip
    # Both voters from such a prompt: the output flips half the time: 0.
    ("both_resampled", 0.0),
    # The induction head cannot match (its query is another S, or PT wrote other names): it votes
    # for no slot, DUP's vote alone decides, and the output is unchanged: 1.
    pytest.param(
        "induction_query_other_s",
        1.0,
        marks=_xfail("0.52 +- 0.03: a failed match is not 'no vote' in the network"),
    ),  # fmt: skip
    pytest.param(
        "previous_token_other_names",
        1.0,
        marks=_xfail("0.55 +- 0.03: a failed match is not 'no vote' in the network"),
    ),  # fmt: skip
    # The name mover copies names of another prompt: neither answer: 0.
    ("names_resampled", 0.0),
]


@pytest.mark.parametrize(("name", "predicted"), PREDICTIONS)
def test_high_level_prediction_holds(scrub, name, predicted):
    assert_recovers_near(scrub.run(f"{HYP}::{name}"), predicted, within=WITHIN)


# -- minimality: the planted heads are necessary, the others are not -------------------------------

_NULL: dict = {}


def _planted(scrub):
    """The planted circuit, its setup, and minimality's null sample (computed once a session)."""
    setup = scrub_setup(scrub)
    h = scrub.hypothesis(f"{HYP}::planted")
    if h not in _NULL:
        _NULL[h] = null_costs(setup, h, k=K)
    scrub.run(h)  # recorded: the table shows the planted circuit's own result
    return setup, h, _NULL[h]


@pytest.mark.parametrize(
    "variable",
    [
        pytest.param("PT", marks=_xfail("cost -0.28 [-0.39, -0.16]: scrubbing PT away helps")),
        "DUP",
        pytest.param("IND", marks=_xfail("cost 0.06 [-0.08, 0.20], p = 0.22")),
        "SINH",
        "NM",
    ],
)
def test_each_planted_head_is_necessary(scrub, variable):
    setup, h, null = _planted(scrub)
    assert_minimal(setup, h, nodes=[variable], null=null)


#: Where a head of each layer would sit in the planted story: beside DUP/IND at S2 (layers 0, 1),
#: beside S-inhibition in the name mover's query (2), beside the name mover (3).
ROLE_SLOT = {0: ("S2", "SINH.v"), 1: ("S2", "SINH.v"), 2: ("END", "NM.q"), 3: ("END", "output")}
PLANTED_HEADS = {(0, 1), (0, 3), (1, 2), (2, 0), (3, 1)}
NECESSARY_AFTER_ALL = {
    (1, 0): "cost 0.061 [0.045, 0.077]",
    (1, 3): "cost 0.040 [0.030, 0.050]",
    (2, 1): "cost 0.126 [0.065, 0.187]",
    (3, 0): "cost 0.006 [0.003, 0.009]",
}
OTHER_HEADS = [
    pytest.param(
        layer, head,
        marks=[_xfail(NECESSARY_AFTER_ALL[layer, head])] if (layer, head) in NECESSARY_AFTER_ALL
        else [],
        id=f"{layer}.{head}",
    )
    for layer in range(4)
    for head in range(4)
    if (layer, head) not in PLANTED_HEADS
]  # fmt: skip


@pytest.mark.parametrize(("layer", "head"), OTHER_HEADS)
def test_other_heads_are_not_necessary(scrub, layer, head):
    setup, h, null = _planted(scrub)
    position, feeds = ROLE_SLOT[layer]
    extra = node(f"head {layer}.{head}", Head(layer, head, position), feeds=feeds, rule=keep)
    assert_not_minimal(setup, with_node(h, extra), extra.name, null=null)
