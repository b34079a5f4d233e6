"""Found by scrub's search: 5 heads at named positions, 6 embeddings (236 scrubs in 26 batched
passes).

    scrub discover --model toy-ioi --dataset ioi --corrupt abc --corrupt swap-order --target 0.9 \
        --seed 0 --n 200 --pool 2000 --n-patch 100 --other template --beam 3 --shortlist 8 \
        --out hypotheses/found_toy_ioi.py

toy-ioi, n=200, seed 0: recovered 0.979 +- 0.007. Every node keeps the reference input; each
internal node's other inputs come from a prompt of the same template. Check it with `scrub run
hypotheses/found_toy_ioi.py::found --model toy-ioi --seed 0`.
"""

from scrub import OUTPUT, Embed, Hypothesis, agree, heads, keep, node

#: What internal nodes' unexplained inputs are drawn by.
OTHER = agree("template")

found = Hypothesis(
    "found on toy-ioi",
    [
        # scrubbing it alone costs +1.016 (recovered -0.037 without it)
        node("3.1@END", heads("3.1", at="END"), feeds=OUTPUT, rule=keep, other=OTHER),
        # scrubbing it alone costs +1.661 (recovered -0.683 without it)
        node("embed@IO for 3.1@END", Embed("IO"), feeds=["3.1@END.k", "3.1@END.v"], rule=keep),
        # scrubbing it alone costs +0.919 (recovered 0.060 without it)
        node("2.0@END", heads("2.0", at="END"), feeds="3.1@END.q", rule=keep, other=OTHER),
        # scrubbing it alone costs -0.205 (recovered 1.184 without it)
        node("embed@S1 for 3.1@END", Embed("S1"), feeds=["3.1@END.k", "3.1@END.v"], rule=keep),
        # scrubbing it alone costs +0.757 (recovered 0.222 without it)
        node("1.2@S2", heads("1.2", at="S2"), feeds="2.0@END.v", rule=keep, other=OTHER),
        # scrubbing it alone costs +0.366 (recovered 0.613 without it)
        node("0.3@S2", heads("0.3", at="S2"), feeds="2.0@END.v", rule=keep, other=OTHER),
        # scrubbing it alone costs +0.406 (recovered 0.573 without it)
        node("0.1@S1+1", heads("0.1", at="S1+1"), feeds="1.2@S2.v", rule=keep, other=OTHER),
        # scrubbing it alone costs +0.085 (recovered 0.894 without it)
        node("embed@S1+1 for 1.2@S2", Embed("S1+1"), feeds=["1.2@S2.k", "1.2@S2.v"], rule=keep),
        # scrubbing it alone costs +0.623 (recovered 0.355 without it)
        node("embed@S1 for 0.3@S2", Embed("S1"), feeds=["0.3@S2.k", "0.3@S2.v"], rule=keep),
        # scrubbing it alone costs +0.607 (recovered 0.372 without it)
        node(
            "embed@S2 for 0.3@S2",
            Embed("S2"),
            feeds=["0.3@S2.q", "0.3@S2.k", "0.3@S2.v"],
            rule=keep,
        ),
        # scrubbing it alone costs -0.008 (recovered 0.987 without it)
        node("embed@S1 for 0.1@S1+1", Embed("S1"), feeds=["0.1@S1+1.k", "0.1@S1+1.v"], rule=keep),
    ],
    description="found on toy-ioi",
)
