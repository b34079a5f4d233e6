"""scrub: causal-scrubbing hypothesis testing for transformer circuits.

>>> from scrub import OUTPUT, Hypothesis, agree, heads, node
>>> h = Hypothesis("nm", [node("name movers", heads("3.0", at="END"), feeds=OUTPUT,
...                            rule=agree("io"))])
"""

from scrub.errors import ScrubError

# scrub.scrubbing resolves its engine lazily, so this import stays light (no torch).
from scrub.scrubbing import (
    OUTPUT,
    Embed,
    Head,
    Hypothesis,
    Mlp,
    Node,
    Rule,
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
    "ScrubError",
    "agree",
    "heads",
    "keep",
    "mlps",
    "node",
    "random",
]
__version__ = "0.1.0"
