"""Write a found hypothesis as a hypothesis file that ``scrub run`` and ``scrub check`` read.

One ``node(...)`` per component, each with a comment giving what scrubbing it costs: the
recovered fraction when it (and everything that feeds only through it) is resampled.
"""

from __future__ import annotations

from pathlib import Path

from scrub.atomic import atomic_path
from scrub.scrubbing.hypothesis import OUTPUT, Embed, Head, Rule


def rule_source(rule: Rule) -> str:
    if rule.kind == "agree":
        args = ", ".join(repr(f) for f in rule.features)
        return f"agree({args}{', allow_self=True' if rule.allow_self else ''})"
    return rule.kind


def component_source(c) -> str:
    if isinstance(c, Head):
        return f'heads("{c.layer}.{c.head}", at={c.position!r})'
    if isinstance(c, Embed):
        return f"Embed({c.position!r})"
    raise TypeError(c)


def hypothesis_source(found, *, variable: str, title: str, header: str) -> str:
    """The module text: docstring ``header``, imports, one Hypothesis named ``variable``."""
    h = found.hypothesis
    lines = [
        f'"""{header.strip()}\n"""',
        "",
        "from scrub import OUTPUT, Embed, Hypothesis, agree, heads, keep, node, random",
        "",
    ]
    lines.append(f"{variable} = Hypothesis(")
    lines.append(f"    {title!r},")
    lines.append("    [")
    for n in h.nodes:
        cost = found.costs[n.name]
        lines.append(
            f"        # without it (and what feeds only through it): recovered "
            f"{found.recovered - cost:.3f} (costs {cost:+.3f})"
        )
        feeds = [str(f) for f in n.feeds]
        feeds_src = (
            "OUTPUT" if feeds == [OUTPUT] else (repr(feeds[0]) if len(feeds) == 1 else repr(feeds))
        )
        comp = component_source(n.components[0]) if len(n.components) == 1 else repr(n.components)
        other = "" if n.other.kind == "random" else f", other={rule_source(n.other)}"
        rule = rule_source(n.rule)
        lines.append(f"        node({n.name!r}, {comp}, feeds={feeds_src}, rule={rule}{other}),")
    lines.append("    ],")
    lines.append(f"    description={h.description or title!r},")
    lines.append(")")
    return "\n".join(lines) + "\n"


def write_hypothesis(found, path: Path, **kwargs) -> None:
    text = hypothesis_source(found, **kwargs)
    compile(text, str(path), "exec")  # never write a file that does not parse
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)
