"""Found by scrub's search: 5 heads at named positions, 4 embeddings (142 scrubs, 232 s).

    scrub discover --model toy-ioi --dataset ioi --corrupt abc --target 0.9 \
        --seed 0 --n 200 --pool 2000 --n-patch 100 --other template \
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
        # scrubbing it alone costs +1.017 (recovered -0.037 without it)
        node("3.1@END", heads("3.1", at="END"), feeds=OUTPUT, rule=keep, other=OTHER),
        # scrubbing it alone costs +1.664 (recovered -0.685 without it)
        node("embed@IO for 3.1@END", Embed("IO"), feeds=["3.1@END.k", "3.1@END.v"], rule=keep),
        # scrubbing it alone costs +0.919 (recovered 0.060 without it)
        node("2.0@END", heads("2.0", at="END"), feeds="3.1@END.q", rule=keep, other=OTHER),
        # scrubbing it alone costs -0.205 (recovered 1.184 without it)
        node("embed@S1 for 3.1@END", Embed("S1"), feeds=["3.1@END.k", "3.1@END.v"], rule=keep),
        # scrubbing it alone costs +0.759 (recovered 0.220 without it)
        node("1.2@S2", heads("1.2", at="S2"), feeds="2.0@END.v", rule=keep, other=OTHER),
        # scrubbing it alone costs +0.368 (recovered 0.611 without it)
        node("0.3@S2", heads("0.3", at="S2"), feeds="2.0@END.v", rule=keep),
        # scrubbing it alone costs +0.086 (recovered 0.893 without it)
        node("embed@S1+1 for 1.2@S2", Embed("S1+1"), feeds=["1.2@S2.k", "1.2@S2.v"], rule=keep),
        # scrubbing it alone costs +0.406 (recovered 0.573 without it)
        node("0.1@S1+1", heads("0.1", at="S1+1"), feeds="1.2@S2.v", rule=keep, other=OTHER),
        # scrubbing it alone costs -0.007 (recovered 0.986 without it)
        node("embed@S1 for 0.1@S1+1", Embed("S1"), feeds=["0.1@S1+1.k", "0.1@S1+1.v"], rule=keep),
    ],
    description="found on toy-ioi",
)
