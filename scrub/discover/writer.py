"""Write a found hypothesis as a hypothesis file that ``scrub run`` and ``scrub check`` read.

One ``node(...)`` per component, each with a comment giving what scrubbing it alone costs, as
``scrub draw --results`` computes it: the recovered fraction without that node and the nodes that
then feed nothing (their outputs fall to the parent's other inputs).
"""

from __future__ import annotations

from pathlib import Path

from scrub.atomic import atomic_path
from scrub.scrubbing.hypothesis import OUTPUT, Embed, Head, Rule


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rule_source(rule: Rule) -> str:
    if rule.kind == "agree":
        args = ", ".join(_q(f) for f in rule.features)
        return f"agree({args}{', allow_self=True' if rule.allow_self else ''})"
    return rule.kind


def component_source(c) -> str:
    at = "None" if c.position is None else _q(c.position)
    if isinstance(c, Head):
        return f'heads("{c.layer}.{c.head}", at={at})'
    if isinstance(c, Embed):
        return f"Embed({at})"
    raise TypeError(c)


def _import_order(name: str) -> tuple[int, str]:
    """CONSTANTS, then Classes, then functions (isort's order, as ruff applies it)."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def _call(indent: str, name: str, args: list[str], width: int = 100) -> list[str]:
    """``name(args),`` on one line if it fits, else one argument a line (as ruff formats it)."""
    one = f"{indent}{name}({', '.join(args)}),"
    if len(one) <= width:
        return [one]
    return [f"{indent}{name}(", *(f"{indent}    {a}," for a in args), f"{indent}),"]


def hypothesis_source(found, *, variable: str, title: str, header: str) -> str:
    """The module text: docstring ``header``, imports, one Hypothesis named ``variable``.

    The rule for internal nodes' other inputs is named once (``OTHER``) when it is not random.
    """
    h = found.hypothesis
    others = {rule_source(n.other) for n in h.nodes if n.other.kind != "random"}
    names = {"Hypothesis", "node"}
    body = []
    for n in h.nodes:
        cost = found.costs[n.name]
        body.append(
            f"        # scrubbing it alone costs {cost:+.3f} (recovered "
            f"{found.recovered - cost:.3f} without it)"
        )
        feeds = [str(f) for f in n.feeds]
        if feeds == [OUTPUT]:
            feeds_src = "OUTPUT"
            names.add("OUTPUT")
        else:
            feeds_src = _q(feeds[0]) if len(feeds) == 1 else f"[{', '.join(map(_q, feeds))}]"
        comps = [component_source(c) for c in n.components]
        names |= {c.split("(")[0] for c in comps}
        comp = comps[0] if len(comps) == 1 else f"[{', '.join(comps)}]"
        args = [_q(n.name), comp, f"feeds={feeds_src}", f"rule={rule_source(n.rule)}"]
        names.add(rule_source(n.rule).split("(")[0])
        if n.other.kind != "random":
            args.append("other=OTHER" if len(others) == 1 else f"other={rule_source(n.other)}")
        body += _call("        ", "node", args)
    lines = [f'"""{header.strip()}\n"""', ""]
    if len(others) == 1:
        names.add(next(iter(others)).split("(")[0])
    lines.append(f"from scrub import {', '.join(sorted(names, key=_import_order))}")
    lines.append("")
    if len(others) == 1:
        lines += [
            "#: What internal nodes' unexplained inputs are drawn by.",
            f"OTHER = {next(iter(others))}",
            "",
        ]
    lines += [f"{variable} = Hypothesis(", f"    {_q(title)},", "    ["]
    lines += body
    lines += ["    ],", f"    description={_q(h.description or title)},", ")"]
    return "\n".join(lines) + "\n"


def write_hypothesis(found, path: Path, **kwargs) -> None:
    text = hypothesis_source(found, **kwargs)
    compile(text, str(path), "exec")  # never write a file that does not parse
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)
