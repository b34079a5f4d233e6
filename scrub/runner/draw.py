"""Draw a hypothesis with graphviz: one box per interpretation node, edges labelled by slot.

Each box shows the node's name, its components grouped by position ("9.9 9.6 10.0 @END") and its
resampling rules; its colour is the head class read from the node's name (name mover,
S-inhibition, induction, ...). With results, each box also shows what scrubbing that node alone
costs: ``recovered(full) - recovered(full without the node and the nodes that only feed it)``.
The costs are read from the results when they hold results named ``"<hypothesis> without
<node>"`` (as :func:`ablations` names them), else from the run's ``costs/`` folder; otherwise they
are computed under the stored result's model, n, seed and metric and stored there
(:mod:`scrub.runner.costs`), so only the first drawing of a run's hypothesis scrubs anything.

The ``.dot`` source is always written; ``.svg``/``.png`` need graphviz's ``dot`` program.

>>> outcome = draw(hypothesis, Path("graph.svg"))        # doctest: +SKIP
>>> outcome.image, outcome.message                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx

from scrub.atomic import atomic_path
from scrub.errors import ScrubError
from scrub.scrubbing.hypothesis import OUTPUT, Hypothesis
from scrub.scrubbing.validate import graph

if TYPE_CHECKING:
    from scrub.runner.costs import NodeCosts
    from scrub.runner.store import RunDir

FORMATS = (".dot", ".svg", ".png")
INSTALL_HINT = "install graphviz for svg/png (apt-get install graphviz, or brew install graphviz)"

#: (keywords in a node's name, class, fill colour); the first match wins, so "backup name
#: movers" is a backup and "negative name movers" negative before "name mover" matches.
HEAD_CLASSES = (
    (("negative",), "negative name mover", "#f4a6a6"),
    (("backup",), "backup name mover", "#ffd8a8"),
    (("name mover",), "name mover", "#a5d8ff"),
    (("s-inhibition", "s inhibition", "inhibition"), "S-inhibition", "#b2f2bb"),
    (("induction",), "induction", "#d0bfff"),
    (("duplicate",), "duplicate token", "#fcc2d7"),
    (("previous", "prev"), "previous token", "#ffec99"),
    (("embed", "token"), "embedding", "#e9ecef"),
)
OTHER_COLOUR = "#dee2e6"


def head_class(name: str) -> tuple[str, str]:
    """(class, colour) of an interpretation node, from its name."""
    low = name.lower()
    for keys, cls, colour in HEAD_CLASSES:
        if any(k in low for k in keys):
            return cls, colour
    return "other", OTHER_COLOUR


def components_label(components: Sequence) -> str:
    """``"9.9 9.6 10.0 @END"``; components at different positions are grouped per position, the
    embeddings joined with ``+`` (``"embed + 0.1 0.2 @IO"``), long groups one per line. Takes
    components or their text (``"9.9@END"``, ``"mlp2"``, ``"embed@IO"``)."""
    groups: dict[str | None, list[str]] = {}
    for c in map(str, components):
        text, _, position = c.partition("@")
        groups.setdefault(position or None, []).append("embed +" if text == "embed" else text)
    parts = [
        " ".join(v).removesuffix(" +") + (f" @{p}" if p else " @all") for p, v in groups.items()
    ]
    return ("\n" if sum(map(len, parts)) > 60 else ", ").join(parts)


def without(h: Hypothesis, name: str) -> Hypothesis:
    """``h`` with node ``name`` removed, and every node that then feeds nothing.

    The removed components' outputs fall to their parents' other inputs (random by default):
    this is "scrubbing that node alone".
    """
    h.node(name)  # KeyError for a node that does not exist
    removed = {name}
    changed = True
    while changed:  # a node all of whose parents are removed explains nothing any more
        changed = False
        for n in h.nodes:
            if n.name not in removed and all(f.parent in removed for f in n.feeds):
                removed.add(n.name)
                changed = True
    nodes = []
    for n in h.nodes:
        if n.name in removed:
            continue
        feeds = tuple(f for f in n.feeds if f.parent not in removed)
        nodes.append(type(n)(n.name, n.components, feeds, n.rule, n.other))
    return Hypothesis(
        ablation_name(h.name, name),
        nodes,
        output_other=h.output_other,
        description=f"{h.name} without {name}",
        dataset=h.dataset,
    )


def ablation_name(hypothesis: str, node: str) -> str:
    return f"{hypothesis} without {node}"


def ablations(h: Hypothesis) -> list[Hypothesis]:
    """One hypothesis per node: ``h`` without that node (see :func:`without`)."""
    return [without(h, n.name) for n in h.nodes]


# ----------------------------------------------------------------------------- results


def load_results(ref: str | Path) -> tuple[list[dict], RunDir | None]:
    """Result records from a result JSON, a run directory, or a run name under ``runs/``, and
    the run they belong to (None for a loose JSON file: costs computed for it are not stored)."""
    from scrub.runner.store import RunDir, resolve_run

    p = Path(ref)
    if p.is_file():
        try:
            doc = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ScrubError(f"cannot read results file {p}: {e}", fix="give a result JSON") from e
        if not isinstance(doc, dict) or "recovered" not in doc:
            raise ScrubError(f"{p} is not a scrub result", fix="give a JSON written by scrub")
        return [doc], None
    run = RunDir(p) if (p / "run.json").is_file() else resolve_run(str(ref))
    records = run.records()
    if not records:
        raise ScrubError(f"run {run.path} holds no results", fix="give a run with results")
    return records, run


def load_records(ref: str | Path) -> list[dict]:
    """Result records from a result JSON, a run directory, or a run name under ``runs/``."""
    return load_results(ref)[0]


# ----------------------------------------------------------------------------- drawing


def result_line(costs: NodeCosts) -> str:
    """``"recovered 0.946 +- 0.005 (n=200, seed 0, logit-diff)"``: the run a drawing shows."""
    ok = isinstance(costs.full, (int, float)) and math.isfinite(costs.full)
    value = f"{costs.full:.3f}" if ok else "undefined"
    se = f" +- {costs.full_se:.3f}" if ok and isinstance(costs.full_se, (int, float)) else ""
    s = costs.settings
    return (
        f"recovered {value}{se} (n={s.get('n')}, seed {s.get('seed')}, "
        f"{s.get('metric') or 'logit-diff'})"
    )


def to_dot(h: Hypothesis, costs: NodeCosts | None = None):
    """A ``graphviz.Digraph`` of ``h``: children below parents, the output at the top.

    Every node states its rule and its ``other`` rule (also the default, so two hypotheses that
    differ only there look different); with ``costs`` the output states recovered +- SE, n and
    seed, and each node what scrubbing it alone costs.
    """
    from scrub.runner.plugin import spec_of

    graph(h)  # validates: a cycle or a missing parent raises here, not inside graphviz
    return spec_to_dot(spec_of(h), costs)


def spec_to_dot(spec: Mapping, costs: NodeCosts | None = None):
    """:func:`to_dot` from a stored hypothesis spec (``spec_of(h)``, as result records hold it)."""
    import graphviz

    name = str(spec.get("name"))
    g = graphviz.Digraph(name, graph_attr={"rankdir": "BT", "label": name, "labelloc": "t"})
    g.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11")
    g.attr("edge", fontname="Helvetica", fontsize="10")
    top = f"OUTPUT (logits)\\nother: {spec.get('output_other', 'random')}"
    if costs is not None:
        top += "\\n" + result_line(costs)
    g.node(OUTPUT, top, fillcolor="#ffffff", shape="ellipse")
    nodes: Mapping[str, Mapping] = spec.get("nodes", {})
    edges = [(child, f.rpartition(".")[0] or f) for child, n in nodes.items() for f in n["feeds"]]
    order = nx.DiGraph(edges)
    order.add_nodes_from(nodes)
    for node_name in nx.topological_sort(order):
        if node_name not in nodes:
            continue
        n = nodes[node_name]
        cls, colour = head_class(node_name)
        lines = [
            f"{node_name}: {components_label(n['components'])}",
            f"rule: {n['rule']}",
            f"other: {n['other']}",
        ]
        if costs is not None and node_name in costs.costs:
            lines.append(f"scrubbing it alone costs {costs.costs[node_name]:+.3f}")
        g.node(node_name, "\\n".join(lines), fillcolor=colour, tooltip=cls)
    for child, n in nodes.items():
        for f in n["feeds"]:
            parent, _, slot = f.rpartition(".")
            g.edge(child, parent or f, label=slot if parent else "resid")
    return g


@dataclass(frozen=True)
class DrawOutcome:
    """Files written: ``dot`` always; ``image`` when requested and ``dot`` ran; a message."""

    dot: Path
    image: Path | None
    message: str


def render(g, out: Path, *, dot_program: str | None = None) -> DrawOutcome:
    """Write ``g`` to ``out`` (.dot, .svg or .png); svg/png also leave the .dot beside them."""
    out = Path(out)
    if out.suffix not in FORMATS:
        raise ScrubError(f"cannot draw to {out.name}", fix=f"use {', '.join(FORMATS)}")
    dot_path = out if out.suffix == ".dot" else out.with_suffix(".dot")
    with atomic_path(dot_path) as tmp:
        tmp.write_text(g.source)
    if out.suffix == ".dot":
        return DrawOutcome(dot_path, None, f"wrote {dot_path}")
    exe = dot_program or shutil.which("dot")
    if exe is None:
        return DrawOutcome(
            dot_path, None, f"wrote {dot_path}; `dot` not found, no {out.suffix}: {INSTALL_HINT}"
        )
    with atomic_path(out) as tmp:
        proc = subprocess.run(
            [exe, f"-T{out.suffix[1:]}", "-o", str(tmp), str(dot_path)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise ScrubError(f"graphviz failed: {proc.stderr.strip()}", fix=INSTALL_HINT)
    return DrawOutcome(dot_path, out, f"wrote {out} (and {dot_path})")


def draw(
    h: Hypothesis,
    out: Path,
    *,
    records: Sequence[Mapping] | None = None,
    run: RunDir | None = None,
    compute: bool = True,
    progress: bool = False,
) -> DrawOutcome:
    """Render ``h`` to ``out``, annotated with its result and node costs when ``records`` are
    given (costs computed once and stored in ``run``, see :mod:`scrub.runner.costs`)."""
    from scrub.runner.costs import costs_for

    costs = None
    if records is not None:
        costs = costs_for(h, records, run=run, compute_missing=compute, progress=progress)
    outcome = render(to_dot(h, costs), out)
    if costs is None:
        return outcome
    note = {
        "results": "read from the results",
        "stored": f"read from {run.path / 'costs' if run else 'the run'}",
        "computed": "computed now" + (f" and stored in {run.path / 'costs'}" if run else ""),
        "none": "absent",
    }[costs.source]
    return DrawOutcome(outcome.dot, outcome.image, f"{outcome.message}; node costs {note}")
