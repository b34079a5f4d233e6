"""``scrub report RUN -o report.html``: one self-contained page per run (see
:mod:`scrub.pages.report`). Register with ``app.command("report")(report_command)``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scrub import arguments as args_check
from scrub.errors import ScrubError


def report_command(
    run: Annotated[str, typer.Argument(help="Run directory or name (or 'latest')")] = "latest",
    out: Annotated[Path, typer.Option("-o", "--out", help="The page to write (.html)")] = Path(
        "report.html"
    ),
    root: Annotated[Path, typer.Option("--root", help="Where runs are stored")] = Path("runs"),
    costs: Annotated[
        list[Path] | None,
        typer.Option(
            "--costs",
            help="Hypothesis file(s): compute (once, stored in the run) the node costs of each "
            "of their hypotheses that has a result in the run",
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML page for a run: results, drawings, distributions, patching."""
    from scrub.pages.report import write_report
    from scrub.runner.store import resolve_run

    args_check.check_output(out, (".html",), "--out")
    found = resolve_run(run, root)
    if costs:
        store_costs(found, costs)
    written = write_report(found, out)
    typer.echo(f"report: {written.resolve()}")


def store_costs(run, files: list[Path]) -> None:
    """Node costs of every hypothesis in ``files`` that has a result in ``run``, stored there."""
    from scrub.runner.costs import costs_for
    from scrub.runner.plugin import spec_of
    from scrub.scrubbing.loader import load_file

    records = run.records()
    specs = {r.get("hypothesis"): (r.get("hypothesis_spec") or {}).get("nodes") for r in records}
    cache: dict = {}  # models and datasets, shared by the hypotheses
    for path in files:
        for h in load_file(path).values():
            if specs.get(h.name) is None or specs[h.name] != spec_of(h)["nodes"]:
                continue  # no result of this hypothesis (of this version) in the run
            try:
                got = costs_for(h, records, run=run, cache=cache)
            except ScrubError as e:
                typer.echo(f"warning: no node costs for {h.name!r}: {e}", err=True)
                continue
            typer.echo(f"node costs of {h.name!r}: {got.source}")
