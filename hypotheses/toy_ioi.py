"""The IOI circuit of the shipped toy model (``toy-ioi``), as measured with scrub.

The toy (4 layers x 4 heads, attention-only, plainly trained; see scrub/models/toy_ioi/MODEL_CARD.md
and circuit.json, ``"kind": "plain"``) is not GPT-2: its IOI computation ends in layer 1.

* Head 1.2 at END is the name mover: resampling it alone keeps 18% of the logit difference, any
  other single head keeps >= 92%. Its keys and queries carry the prompt's layout, not the names;
  its values carry the names.
* Heads 1.0 and 1.3 at END back it up (adding them raises recovered from 0.55 to 0.67).
* The layer-0 heads at END write directly to the logits (+21%), and layers 2-3 at END add the rest.
* There is no S-inhibition: the name mover's query ignores the layer-0 heads at END and the END
  token (resampling them, even across prefixes that move every position, changes nothing).
  No induction, duplicate-token or previous-token head feeds the name mover measurably.

Measured on seed-0 datasets with n=200 (``scrub check hypotheses/``). If the toy checkpoint is
retrained (circuit.json changes), re-measure: the claims in test_toy_ioi_claims.py will say so.
"""

from scrub import OUTPUT, Embed, Hypothesis, agree, heads, keep, node, random

NAME_MOVER = heads("1.2", at="END")
BACKUP = heads("1.0 1.3", at="END")
EARLY = heads("0.0 0.1 0.2 0.3", at="END")
LATE = heads("2.0 2.1 2.2 2.3 3.0 3.1 3.2 3.3", at="END")
#: Everything a layer-1 head reads (MLPs are exactly zero in the toy): embeddings and layer 0.
LAYER1_INPUTS = (Embed(), *heads("0.0 0.1 0.2 0.3"))
#: The q input of a head at END: only END matters.
QUERY_INPUTS = (Embed("END"), *EARLY)
#: Row lengths must match for all-position nodes (absolute positions line up within a template).
SAME_LAYOUT = agree("template")


def name_mover_story(
    name: str, *, keys=SAME_LAYOUT, values=keep, query=SAME_LAYOUT, other=SAME_LAYOUT, extra=()
):
    """Head 1.2 at END with its query, keys and values explained by the given rules."""
    return Hypothesis(
        name,
        [
            node("name movers", NAME_MOVER, feeds=OUTPUT, rule=keep, other=other),
            node("s-inhibition (query)", QUERY_INPUTS, feeds="name movers.q", rule=query),
            node("name mover keys", LAYER1_INPUTS, feeds="name movers.k", rule=keys),
            node("name mover values", LAYER1_INPUTS, feeds="name movers.v", rule=values),
            *extra,
        ],
        description="head 1.2 moves the IO name; its q and k read layout, its v reads names",
    )


name_movers = Hypothesis(
    "name movers",
    [node("name movers", NAME_MOVER, feeds=OUTPUT, rule=keep)],
    description="only the name mover 1.2 at END explains the output",
)

name_movers_and_backup = Hypothesis(
    "name movers + backup",
    [
        node("name movers", NAME_MOVER, feeds=OUTPUT, rule=keep),
        node("backup name movers", BACKUP, feeds=OUTPUT, rule=keep),
    ],
)

full_circuit = name_mover_story(
    "toy-ioi full circuit",
    extra=[
        node("backup name movers", BACKUP, feeds=OUTPUT, rule=keep),
        node("direct early heads", EARLY, feeds=OUTPUT, rule=keep),
        node("late heads", LATE, feeds=OUTPUT, rule=keep),
    ],
)

#: The name mover's story alone, its keys and values kept: the baseline of the claims below.
name_mover_kept = name_mover_story("name mover, inputs kept", keys=keep, query=keep)
#: Keys from another prompt with the same template (other names, maybe swapped order).
name_mover_keys_resampled = name_mover_story("name mover, keys from other names")
#: Values from another prompt with the same template: the names the head moves are wrong.
name_mover_values_resampled = name_mover_story(
    "name mover, values from other names", values=SAME_LAYOUT
)
#: Values from a prompt with the same IO name and layout (S, place and object differ).
name_mover_values_same_io = name_mover_story(
    "name mover, values agree on IO",
    values=agree("io", "template", "order", allow_self=True),
)

#: For pools mixing prefixed and plain prompts: everything but the query is the reference row.
name_mover_query_kept = name_mover_story(
    "name mover, query kept", keys=keep, query=keep, other=keep
)
#: The query (layer-0 heads at END and the END token) from any prompt, prefixed or not.
name_mover_query_random = name_mover_story(
    "name mover, query from any prompt", keys=keep, query=random, other=keep
)
