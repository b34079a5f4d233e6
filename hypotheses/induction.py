"""Induction on repeated random tokens (dataset ``induction``).

Rows are ``[BOS] x1 .. xk x1 .. x(k-1)``; at END an induction head attends to NEXT (the first
xk, right after PREV, the first occurrence of END's token) and copies it. A previous-token head at
NEXT writes "my previous token was x(k-1)", which the induction head's key matches.

``gpt2_induction`` uses GPT-2 small's induction heads (Olsson et al. 2022; Wang et al. 2022) and
its previous-token head 4.11. ``toy_layer1`` exists to show that toy-ioi, trained only on IOI
text, has no induction to explain.
"""

from scrub import OUTPUT, Embed, Hypothesis, heads, keep, node

gpt2_induction = Hypothesis(
    "gpt2-small induction",
    [
        node("induction", heads("5.1 5.5 6.9 7.2 7.10", at="END"), feeds=OUTPUT, rule=keep),
        node("previous token", heads("4.11", at="NEXT"), feeds="induction.k", rule=keep),
        node("copied token", Embed("NEXT"), feeds="induction.v", rule=keep),
    ],
    dataset="induction",
)

toy_layer1 = Hypothesis(
    "toy-ioi layer 1 on repeated tokens",
    [node("layer 1", heads("1.0 1.1 1.2 1.3", at="END"), feeds=OUTPUT, rule=keep)],
    dataset="induction",
)
