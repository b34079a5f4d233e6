"""The published 26-head IOI circuit of GPT-2 small (Wang et al. 2022), with its positions and
connections (see /work/shared/docs/ioi-reference.md).

Name movers, backup and negative name movers at END write to the logits and read the IO token
through their values; S-inhibition heads at END feed their queries; induction and duplicate-token
heads at S2 feed the S-inhibition heads' keys and values; previous-token heads at S1+1 feed the
induction heads' keys. Inputs a node does not explain are resampled at random (the default).
"""

from scrub import OUTPUT, Embed, Hypothesis, heads, keep, node

NAME_MOVERS = heads("9.9 9.6 10.0", at="END")
BACKUP = heads("10.10 10.6 10.2 10.1 11.2 9.7 9.0 11.9", at="END")
NEGATIVE = heads("10.7 11.10", at="END")
S_INHIBITION = heads("7.3 7.9 8.6 8.10", at="END")
INDUCTION = heads("5.5 5.8 5.9 6.9", at="S2")
DUPLICATE = heads("0.1 0.10 3.0", at="S2")
PREVIOUS = heads("2.2 4.11", at="S1+1")
MOVERS = ("name movers", "backup name movers", "negative name movers")


def _circuit(name: str, movers: tuple[str, ...]) -> Hypothesis:
    comps = {"name movers": NAME_MOVERS, "backup name movers": BACKUP}
    comps["negative name movers"] = NEGATIVE
    nodes = [node(m, comps[m], feeds=OUTPUT, rule=keep) for m in movers]
    nodes += [
        node("io token", Embed("IO"), feeds=[f"{m}.v" for m in movers], rule=keep),
        node("s-inhibition", S_INHIBITION, feeds=[f"{m}.q" for m in movers], rule=keep),
        node("induction", INDUCTION, feeds=["s-inhibition.k", "s-inhibition.v"], rule=keep),
        node("duplicate token", DUPLICATE, feeds=["s-inhibition.k", "s-inhibition.v"], rule=keep),
        node("previous token", PREVIOUS, feeds="induction.k", rule=keep),
    ]
    return Hypothesis(name, nodes, description="Wang et al. 2022, Fig. 2")


ioi_circuit = _circuit("gpt2-small IOI circuit (26 heads)", MOVERS)
name_movers_only = _circuit("gpt2-small IOI, name movers only", ("name movers",))
without_backup = _circuit(
    "gpt2-small IOI, no backup name movers", ("name movers", "negative name movers")
)
