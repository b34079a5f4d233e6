"""The IOI circuit of the shipped toy model (``toy-ioi``), as scrub measures it.

The toy (4 layers x 4 heads, attention-only) was trained with interchange-intervention training so
that four heads implement a known chain (scrub/models/toy_ioi/circuit.json and MODEL_CARD.md):

* previous-token head 0.1 writes "my previous token was X" at S1+1 and IO+1;
* induction head 1.2 at S2 queries with the S2 token, finds S1+1 through 0.1's keys and writes
  which first-clause slot held S (the order, ABBA or BABA);
* S-inhibition head 2.0 at END reads that through its values at S2;
* name mover 3.1 at END takes it in its query, attends to the other first-clause name and copies it.

The hypotheses below state that story and its parts; test_toy_ioi_claims.py checks each claim.
Measured with ``scrub check hypotheses/`` (n = 200, seed 0, pool 2,000): ``full_circuit``
recovers 0.92 and the name mover alone, everything else resampled, 0.98. Taking S-inhibition from
a prompt with the other order, the induction query from another S, the previous-token head from
other names, or the name mover's keys and values from other names, each recovers at most 0.04.
Where this differs from the IOI paper: no duplicate-token head takes part (head 0.3 at S2 was
trained to attend S2 -> S1, but resampling it changes nothing), and the name mover's keys read
more than the name tokens (what layers 0-2 wrote at IO and S1; with only the tokens kept, 0.57).
"""

from scrub import OUTPUT, Embed, Hypothesis, agree, heads, keep, node, random

NAME_MOVER = heads("3.1", at="END")
S_INHIBITION = heads("2.0", at="END")
INDUCTION = heads("1.2", at="S2")
#: At every position: its keys anywhere before S2 (not only at S1+1 and IO+1) feed the induction
#: head; keeping 0.1 only at S1+1 and IO+1 breaks the chain (measured: -0.09).
PREVIOUS_TOKEN = heads("0.1")
DUPLICATE_TOKEN = heads("0.3", at="S2")
BELOW_NAME_MOVER = "0.0 0.1 0.2 0.3 1.0 1.1 1.2 1.3 2.0 2.1 2.2 2.3"
#: The two first-clause names: their tokens and everything layers 0-2 wrote at them.
NAMES = (
    Embed("IO"),
    Embed("S1"),
    *heads(BELOW_NAME_MOVER, at="IO"),
    *heads(BELOW_NAME_MOVER, at="S1"),
)
#: Rows of one template have the same length and positions (all-position parts need it).
LAYOUT = agree("template")
SAME_ORDER = agree("order")
SAME_S = agree("s")


def ioi_story(
    name: str,
    *,
    names=keep,
    s_inhibition=SAME_ORDER,
    induction=keep,
    s2_token=SAME_S,
    previous_token=keep,
    extra=(),
    description: str = "",
) -> Hypothesis:
    """The chain, each part drawn by the given rule (defaults: the claimed story).

    The name mover's other inputs (everything but the names and S-inhibition) and the induction
    head's come from another prompt with the same template (so positions line up).
    """
    return Hypothesis(
        name,
        [
            node("name mover", NAME_MOVER, feeds=OUTPUT, rule=keep, other=LAYOUT),
            node("names", NAMES, feeds=["name mover.k", "name mover.v"], rule=names),
            node("s-inhibition", S_INHIBITION, feeds="name mover.q", rule=s_inhibition),
            node("induction", INDUCTION, feeds="s-inhibition.v", rule=induction, other=LAYOUT),
            node("s2 token", Embed("S2"), feeds="induction.q", rule=s2_token),
            node("previous token", PREVIOUS_TOKEN, feeds="induction.k", rule=previous_token),
            *extra,
        ],
        description=description,
    )


full_circuit = ioi_story(
    "toy-ioi full circuit",
    description="name mover <- s-inhibition <- induction <- previous token; values read the names",
)

#: The name mover computed on the reference prompt, everything else from random prompts.
name_mover = Hypothesis(
    "name mover",
    [node("name mover", NAME_MOVER, feeds=OUTPUT, rule=keep)],
    description="only head 3.1 at END explains the output",
)

#: S-inhibition from a prompt with the same order (other names, any template) ...
s_inhibition_same_order = Hypothesis(
    "s-inhibition carries the order",
    [
        node("name mover", NAME_MOVER, feeds=OUTPUT, rule=keep, other=keep),
        node("s-inhibition", S_INHIBITION, feeds="name mover.q", rule=SAME_ORDER),
    ],
)
#: ... and from a prompt of the same template whose order may differ.
s_inhibition_any_order = Hypothesis(
    "s-inhibition, order resampled",
    [
        node("name mover", NAME_MOVER, feeds=OUTPUT, rule=keep, other=keep),
        node("s-inhibition", S_INHIBITION, feeds="name mover.q", rule=LAYOUT),
    ],
)
#: The whole chain, but S-inhibition's order is not preserved.
full_circuit_order_resampled = ioi_story(
    "full circuit, s-inhibition order resampled", s_inhibition=LAYOUT
)
#: The induction head itself from any prompt with the same order: its output is the order only.
induction_same_order = ioi_story("induction from the same order", induction=SAME_ORDER)
#: The induction head's query (the S2 token) from a prompt whose S differs.
induction_query_other_s = ioi_story("induction query from another S", s2_token=LAYOUT)
#: The previous-token head from a prompt with other names (same template).
previous_token_other_names = ioi_story("previous token from other names", previous_token=LAYOUT)
#: The name mover's keys and values without the names: from another prompt of that template.
names_resampled = ioi_story("names resampled", names=LAYOUT)
#: Adding the duplicate-token head 0.3 at S2 (same order) to S-inhibition's values: no change.
with_duplicate_token = ioi_story(
    "full circuit + duplicate token",
    extra=[node("duplicate token", DUPLICATE_TOKEN, feeds="s-inhibition.v", rule=SAME_ORDER)],
)
#: The duplicate-token head instead of the induction head: it does not carry the order.
duplicate_token_instead = Hypothesis(
    "duplicate token instead of induction",
    [
        node("name mover", NAME_MOVER, feeds=OUTPUT, rule=keep, other=LAYOUT),
        node("names", NAMES, feeds=["name mover.k", "name mover.v"], rule=keep),
        node("s-inhibition", S_INHIBITION, feeds="name mover.q", rule=SAME_ORDER),
        node("duplicate token", DUPLICATE_TOKEN, feeds="s-inhibition.v", rule=keep, other=random),
    ],
)
