"""One self-contained HTML page per run: ``scrub report RUN -o report.html``.

The page needs nothing but itself (no CDN, no fonts or scripts fetched): drawings are graphviz's
SVG inlined, charts are hand-written SVG (:mod:`scrub.pages.svg`) whose marks show exact values on
hover, and the only script (sorting the results table by a column) is inline. Sections:

* warnings: each result's, each patching result's, and what the page could not show;
* the results table: one row per distinct result, recovered +- SE with its 95% interval drawn,
  the claims that used it and their worst outcome (click a header to sort);
* each hypothesis drawn with its node costs, where the run stores them (``scrub draw --results``
  computes and stores them; the report itself never runs a model);
* per-example distributions: each result's per-example recovered fractions;
* heatmaps of the patching results stored in the run (``scrub patch --run RUN``);
* settings and versions (``run.json``).

Each section is a card with a coloured left edge (:data:`MARKERS`), which the browser test finds
in a screenshot.

>>> text = build_report(RunDir(Path("runs/20250101-120000-a1b2c3")))   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from scrub.runner.store import RunDir

#: Left-edge colour of each section's card (also what the screenshot test looks for).
MARKERS = {
    "warnings": "#e8590c",
    "results": "#0b7285",
    "hypotheses": "#5f3dc4",
    "distributions": "#2f9e44",
    "patching": "#c2255c",
    "settings": "#495057",
}
OUTCOME_COLOURS = {"pass": "#2b8a3e", "fail": "#c92a2a", "error": "#e67700", "skip": "#868e96"}

CSS = """
body { font-family: Helvetica, Arial, sans-serif; font-size: 13px; margin: 0; background: #ffffff;
  color: #212529; }
header { padding: 14px 22px; background: #f1f3f5; }
h1 { font-size: 20px; margin: 0 0 4px 0; } h2 { font-size: 16px; margin: 0 0 8px 0; }
h3 { font-size: 13px; margin: 10px 0 4px 0; }
.card { margin: 14px 22px; padding: 10px 14px; border-left: 8px solid; background: #ffffff; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #dee2e6; padding: 3px 7px; text-align: right;
  white-space: nowrap; }
th { cursor: pointer; background: #f8f9fa; } th.text, td.text { text-align: left; }
.badge { color: #ffffff; padding: 1px 6px; border-radius: 3px; font-weight: bold; }
.warn { color: #c92a2a; } .muted { color: #868e96; }
.grid { display: flex; flex-wrap: wrap; gap: 14px; } .cell { flex: 0 0 auto; }
.graph svg { max-width: 100%; height: auto; }
rect:hover { stroke: #000000; stroke-width: 1.5; }
code { background: #f1f3f5; padding: 0 3px; }
"""

#: Sort the results table by a clicked column (numbers numerically); nothing else runs.
SCRIPT = """
(function () {
  var table = document.getElementById("results-table");
  if (!table) { return; }
  var heads = table.querySelectorAll("th");
  heads.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var dir = th.dataset.dir === "asc" ? -1 : 1;
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v || a.cells[col].textContent;
        var y = b.cells[col].dataset.v || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        if (!isNaN(nx) && !isNaN(ny)) { return dir * (nx - ny); }
        return dir * x.localeCompare(y);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  document.body.dataset.ready = "1";
})();
"""


def _card(key: str, title: str, body: str) -> str:
    return (
        f'<section class="card" id="{key}" style="border-left-color:{MARKERS[key]}">'
        f"<h2>{escape(title)}</h2>{body}</section>"
    )


def _num(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def _badge(outcome: str) -> str:
    colour = OUTCOME_COLOURS.get(outcome, "#495057")
    return f'<span class="badge" style="background:{colour}">{escape(outcome.upper())}</span>'


def _results_table(results: list[dict]) -> str:
    from scrub.pages.svg import interval

    values = [r["record"].get("recovered") for r in results]
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    lo, hi = min([0.0, *finite]) - 0.1, max([1.0, *finite]) + 0.1
    head = (
        '<tr><th class="text">hypothesis</th><th class="text">model</th><th>n</th><th>seed</th>'
        '<th class="text">metric</th><th>clean</th><th>scrubbed</th><th>random</th>'
        "<th>recovered</th><th>SE</th><th>95% CI</th><th>interval</th><th>claims</th>"
        "<th>outcome</th></tr>"
    )
    rows = []
    for r in results:
        rec, s = r["record"], r["settings"]
        v, se = rec.get("recovered"), rec.get("recovered_se")
        ci = (
            f"{v - 1.96 * se:.3f} to {v + 1.96 * se:.3f}"
            if isinstance(v, (int, float)) and isinstance(se, (int, float))
            else "-"
        )
        rows.append(
            f'<tr><td class="text">{escape(str(rec.get("hypothesis")))}</td>'
            f'<td class="text">{escape(str(s.get("model")))}</td><td>{s.get("n")}</td>'
            f'<td>{s.get("seed")}</td><td class="text">{escape(str(s.get("metric")))}</td>'
            f"<td>{_num(rec.get('clean'))}</td><td>{_num(rec.get('scrubbed'))}</td>"
            f"<td>{_num(rec.get('random'))}</td><td>{_num(v)}</td><td>{_num(se)}</td>"
            f'<td>{ci}</td><td data-v="{_num(v)}">{interval(v, se, lo=lo, hi=hi)}</td>'
            f"<td>{len(r['outcomes'])}</td>"
            f'<td data-v="{escape(r["outcome"])}">{_badge(r["outcome"])}</td></tr>'
        )
    note = (
        '<p class="muted">One row per distinct result (claims that share a result count once; '
        "the outcome is the worst of theirs). recovered = (scrubbed - random) / (clean - random), "
        "SE by the delta method; the interval is recovered -+ 1.96 SE on a scale with 0 and 1 "
        "marked. Click a header to sort.</p>"
    )
    body = "".join(rows)
    return f'{note}<table id="results-table"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _svg_of_dot(g, prefix: str) -> str:
    """Graphviz's SVG without its XML prologue, its ids prefixed (ids are unique per page)."""
    svg = g.pipe(format="svg").decode("utf-8")
    return svg[svg.index("<svg") :].replace(' id="', f' id="{prefix}')


def _hypotheses(results: list[dict], costs: Mapping[str, dict], warnings: list[str]) -> str:
    from scrub.runner.costs import NodeCosts, matches
    from scrub.runner.draw import spec_to_dot

    if shutil.which("dot") is None:
        warnings.append("graphviz `dot` is not installed, so hypotheses are not drawn")
        return '<p class="warn">graphviz is not installed (apt-get install graphviz).</p>'
    parts, seen = [], set()
    for r in results:
        rec = r["record"]
        spec = rec.get("hypothesis_spec")
        name = str(rec.get("hypothesis"))
        if spec is None or name in seen:
            continue
        seen.add(name)
        doc = costs.get(name)
        stored = doc is not None and matches(doc, spec.get("nodes"), r["settings"])
        nc = NodeCosts(
            name,
            rec.get("recovered"),
            rec.get("recovered_se"),
            r["settings"],
            doc["costs"] if stored else {},
            "stored" if stored else "none",
        )
        note = (
            "node costs: what scrubbing each node alone costs, stored in the run"
            if stored
            else "node costs not computed: <code>scrub report RUN --costs FILE.py</code> (or "
            "<code>scrub draw FILE.py::NAME --results RUN</code>) computes and stores them"
        )
        parts.append(
            f'<div class="cell graph"><h3>{escape(name)}</h3><p class="muted">{note}</p>'
            f"{_svg_of_dot(spec_to_dot(spec, nc), f'h{len(parts)}-')}</div>"
        )
    if not parts:
        return '<p class="muted">No result of this run names its hypothesis structure.</p>'
    return f'<div class="grid">{"".join(parts)}</div>'


def _distributions(results: list[dict]) -> str:
    import numpy as np

    from scrub.pages.svg import histogram
    from scrub.scrubbing.result import per_example_recovered

    parts = []
    for r in results:
        rec = r["record"]
        per = rec.get("per_example") or {}
        if not all(k in per for k in ("clean", "scrubbed", "random")):
            continue
        ratios = per_example_recovered(
            np.asarray(per["clean"]), np.asarray(per["scrubbed"]), np.asarray(per["random"])
        )
        ok = ratios[np.isfinite(ratios)]
        median = float(np.median(ok)) if ok.size else math.nan
        svg = histogram(
            ok.tolist(),
            lo=-1.0,
            hi=2.0,
            marks={"recovered": rec.get("recovered", math.nan), "median": median},
            x_label="per-example recovered fraction",
        )
        parts.append(
            f'<div class="cell"><h3>{escape(str(rec.get("hypothesis")))}</h3>'
            f'<p class="muted">n={len(ratios)}, median {_num(median)}, '
            f"{int((~np.isfinite(ratios)).sum())} undefined (clean = random)</p>{svg}</div>"
        )
    intro = (
        '<p class="muted">(scrubbed - random) / (clean - random) for each example; values '
        "outside [-1, 2] are counted in the end bins (hover a bar for its counts).</p>"
    )
    return intro + f'<div class="grid">{"".join(parts)}</div>'


def patch_results(run: RunDir) -> list:
    from scrub.patching.results import PatchResult

    out = []
    for p in sorted((run.path / "patching").glob("*.json")):
        try:
            out.append(PatchResult.from_json(json.loads(p.read_text())))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a patching result (or being written): the page lists what it can
    return out


def _settings(run: RunDir, meta: Mapping[str, Any]) -> str:
    def table(d: Mapping[str, Any]) -> str:
        rows = "".join(
            f'<tr><td class="text">{escape(str(k))}</td>'
            f'<td class="text">{escape(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>'
            for k, v in d.items()
        )
        return f"<table>{rows}</table>"

    basics = {k: meta.get(k) for k in ("run", "started") if k in meta}
    basics["command"] = " ".join(map(str, meta.get("command", [])))
    basics["directory"] = str(run.path)
    return (
        f"<h3>run</h3>{table(basics)}<h3>options</h3>{table(meta.get('options') or {})}"
        f"<h3>versions</h3>{table(meta.get('versions') or {})}"
    )


def build_report(run: RunDir) -> str:
    """The report page of ``run`` as HTML text (see the module docstring)."""
    from scrub.patching.views import heatmap_fragment
    from scrub.runner.compare import distinct_results
    from scrub.runner.costs import read_any

    meta = run.meta()
    results = distinct_results(run.records())
    warnings: list[str] = []
    for r in results:
        for w in r["record"].get("warnings") or []:
            warnings.append(f"{r['record'].get('hypothesis')}: {w}")
    patches = patch_results(run)
    for p in patches:
        warnings += [
            f"patching ({p.settings.experiment}, {p.settings.senders}): {w}" for w in p.warnings()
        ]
    hypotheses = _hypotheses(results, read_any(run), warnings)
    tally: dict[str, int] = {}
    for r in results:
        tally[r["outcome"]] = tally.get(r["outcome"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(tally.items())) or "no results"
    sections = [
        _card(
            "warnings",
            f"Warnings ({len(warnings)})",
            "".join(f'<p class="warn">{escape(w)}</p>' for w in warnings)
            or '<p class="muted">none</p>',
        ),
        _card("results", "Results", _results_table(results) if results else "<p>none</p>"),
        _card("hypotheses", "Hypotheses", hypotheses),
        _card("distributions", "Per-example distributions", _distributions(results)),
    ]
    if patches:
        body = "".join(f'<div class="cell">{heatmap_fragment(p)}</div>' for p in patches)
        sections.append(_card("patching", "Patching", f'<div class="grid">{body}</div>'))
    sections.append(_card("settings", "Settings and versions", _settings(run, meta)))
    title = f"scrub run {meta.get('run', run.path.name)}"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><div>{len(results)} distinct results: "
        f"{escape(summary)}; started {escape(str(meta.get('started', '?')))}</div></header>"
        f"{''.join(sections)}<script>{SCRIPT}</script></body></html>\n"
    )


def write_report(run: RunDir, out: Path) -> Path:
    """Build the page and write it atomically (complete or absent)."""
    from scrub.atomic import atomic_path

    text = build_report(run)
    with atomic_path(Path(out)) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(out)
