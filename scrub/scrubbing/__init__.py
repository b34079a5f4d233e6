"""Causal scrubbing: hypotheses, treeification, sampling, fast evaluation, results."""

from scrub.scrubbing.hypothesis import (
    OUTPUT,
    Embed,
    Head,
    Hypothesis,
    Mlp,
    Node,
    Rule,
    Slot,
    agree,
    heads,
    keep,
    mlps,
    node,
    random,
)

__all__ = [
    "OUTPUT",
    "Embed",
    "Head",
    "Hypothesis",
    "Mlp",
    "Node",
    "Rule",
    "ScrubResult",
    "Slot",
    "agree",
    "heads",
    "keep",
    "mlps",
    "node",
    "random",
    "scrub_hypothesis",
    "scrub_many",
]


def __getattr__(name: str):
    # The engine pulls in torch; keep `import scrub` (hypothesis files) light.
    if name in ("scrub_hypothesis", "scrub_many"):
        from scrub.scrubbing import experiment

        return getattr(experiment, name)
    if name == "ScrubResult":
        from scrub.scrubbing.result import ScrubResult

        return ScrubResult
    raise AttributeError(name)
