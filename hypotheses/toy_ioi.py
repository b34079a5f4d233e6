"""The IOI circuit of the shipped toy model (``toy-ioi``), as scrub measures it.

The toy (4 layers x 4 heads, attention-only) was trained with interchange-intervention training so
that five heads implement a known IOI circuit (scrub/models/toy_ioi/circuit.json, MODEL_CARD.md):

* previous-token head 0.1 writes "my previous token was X" at S1+1 and IO+1;
* induction head 1.2 at S2 queries with the S2 token, finds S1+1 through 0.1's keys, and
  duplicate-token head 0.3 at S2 finds S1 directly: each writes where S1 is;
* S-inhibition head 2.0 at END reads both through its values at S2;
* name mover 3.1 at END takes that in its query, attends to the other name and copies it.

The hypotheses below state that story and its parts; test_toy_ioi_claims.py holds the predictions
the ground truth makes about them, test_toy_ioi_snapshots.py regression snapshots. Measured with
``scrub check hypotheses/`` (n = 200, seed 0, pool 2,000):

* ``planted`` (circuit.json's heads at their positions, everything else resampled) recovers 0.32;
  ``full_circuit`` 0.94; the name mover alone, everything else resampled, 1.00.
* ``full_circuit``'s ``names`` node holds the IO and S1 token embeddings *and* all twelve layer
  0-2 heads at IO and S1 (the name mover's keys and values read what those layers wrote at the
  names), and its previous-token node is head 0.1 at every position: both go beyond the planted
  circuit, and both are needed to explain the model.
* S-inhibition from another prompt with the same order and template recovers 0.98, with the
  same order in any template 0.65, with the order resampled 0.08: it carries the position of
  S1, not a layout-free "first or second".
* Induction and duplicate-token heads back each other up: resampling induction's order keeps
  0.26, duplicate token's 0.68, both -0.05. Breaking induction's match (its query from another S,
  or the previous-token head from other names) keeps 0.52-0.55.
* The name mover's keys and values read more than the name tokens (what layers 0-2 wrote at IO
  and S1); from other names, -0.02.
"""

import json
from pathlib import Path

import scrub
from scrub import OUTPUT, Embed, Head, Hypothesis, agree, heads, keep, node, random

NAME_MOVER = heads("3.1", at="END")
S_INHIBITION = heads("2.0", at="END")
INDUCTION = heads("1.2", at="S2")
#: At every position: the induction head's keys read 0.1 beyond S1+1 and IO+1 (keeping 0.1 only
#: there, the full circuit recovers 0.25 instead of 0.94).
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
#: Where S1 is: the same order within the same template.
SAME_POSITION = agree("order", "template")
SAME_S = agree("s")


def ioi_story(
    name: str,
    *,
    names=keep,
    s_inhibition=SAME_POSITION,
    induction=keep,
    duplicate=keep,
    s2_token=SAME_S,
    previous_token=keep,
    extra=(),
    description: str = "",
) -> Hypothesis:
    """The circuit, each part drawn by the given rule (defaults: the claimed story).

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
            node("duplicate token", DUPLICATE_TOKEN, feeds="s-inhibition.v", rule=duplicate),
            *extra,
        ],
        description=description,
    )


full_circuit = ioi_story(
    "toy-ioi full circuit",
    description="name mover <- s-inhibition <- induction (<- previous token) + duplicate token",
)

#: The name mover computed on the reference prompt, everything else from random prompts.
name_mover = Hypothesis(
    "name mover",
    [node("name mover", NAME_MOVER, feeds=OUTPUT, rule=keep)],
    description="only head 3.1 at END explains the output",
)


def s_inhibition_from(name: str, rule) -> Hypothesis:
    """The name mover on the reference prompt, its query's S-inhibition head drawn by ``rule``."""
    return Hypothesis(
        name,
        [
            node("name mover", NAME_MOVER, feeds=OUTPUT, rule=keep, other=keep),
            node("s-inhibition", S_INHIBITION, feeds="name mover.q", rule=rule),
        ],
    )


#: S-inhibition from a prompt with the same order and template (other names) ...
s_inhibition_same_position = s_inhibition_from("s-inhibition, same S1 position", SAME_POSITION)
#: ... from one with the same order but any template (S1 may sit elsewhere) ...
s_inhibition_same_order = s_inhibition_from("s-inhibition, same order", SAME_ORDER)
#: ... and from one of the same template whose order may differ.
s_inhibition_any_order = s_inhibition_from("s-inhibition, order resampled", LAYOUT)

#: Induction or duplicate-token head (or both) from a prompt of the same template whose order
#: may differ: each alone is backed up by the other.
induction_resampled = ioi_story("induction resampled", induction=LAYOUT)
duplicate_resampled = ioi_story("duplicate token resampled", duplicate=LAYOUT)
both_resampled = ioi_story(
    "induction and duplicate token resampled", induction=LAYOUT, duplicate=LAYOUT
)
#: The induction head's query (the S2 token) from a prompt whose S differs.
induction_query_other_s = ioi_story("induction query from another S", s2_token=LAYOUT)
#: The previous-token head from a prompt with other names (same template).
previous_token_other_names = ioi_story("previous token from other names", previous_token=LAYOUT)
#: The name mover's keys and values without the names: from another prompt of that template.
names_resampled = ioi_story("names resampled", names=LAYOUT)


# -- the planted circuit, generated from the ground truth ------------------------------------------

CIRCUIT_JSON = Path(scrub.__file__).parent / "models" / "toy_ioi" / "circuit.json"
#: How the high-level model's variables read each other (circuit.json's "high_level_model"; the
#: slots follow the attention each role was trained to: MODEL_CARD.md): IND matches the S2 token
#: against PT's keys; SINH reads DUP and IND through its values at S2; NM's query reads SINH.
PLANTED_FEEDS = {
    "PT": ["IND.k"],
    "DUP": ["SINH.v"],
    "IND": ["SINH.v"],
    "SINH": ["NM.q"],
    "NM": [OUTPUT],
}
#: The input tokens each variable reads in the high-level model: PT copies the first-clause name
#: before S1+1 / IO+1; DUP compares the S2 token with the first-clause names; IND queries with the
#: S2 token; NM copies a first-clause name.
PLANTED_INPUTS = (
    ("first-clause names", (Embed("IO"), Embed("S1")), ["PT.v", "DUP.k", "DUP.v", "NM.k", "NM.v"]),
    ("s2 token", (Embed("S2"),), ["DUP.q", "IND.q"]),
)


def planted_circuit(name: str, *, other=random) -> Hypothesis:
    """circuit.json's five heads at their planted positions, each kept on the reference prompt,
    with the input tokens the high-level model says they read; everything else (every other head
    at every position, the planted heads at other positions) drawn by ``other``."""
    truth = json.loads(CIRCUIT_JSON.read_text(encoding="utf-8"))
    nodes = [
        node(
            h["variable"],
            [Head(h["layer"], h["head"], p) for p in h["positions"]],
            feeds=PLANTED_FEEDS[h["variable"]],
            rule=keep,
            other=other,
        )
        for h in truth["heads"]
    ]
    nodes += [node(n, comps, feeds=feeds, rule=keep) for n, comps, feeds in PLANTED_INPUTS]
    return Hypothesis(name, nodes, output_other=other, description="circuit.json, as planted")


#: The planted circuit with everything else from random prompts (the plain causal-scrubbing claim).
planted = planted_circuit("toy-ioi planted circuit")
#: Everything else from a prompt of the same template: the resampling the toy was trained under
#: (circuit.json "interventions": sources share the base's layout).
planted_same_layout = planted_circuit("toy-ioi planted circuit, same layout", other=LAYOUT)
