"""The ``scrub`` command line. Bad input exits with code 2 and one line naming problem and fix."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from scrub.discover.command import discover_command
from scrub.errors import ScrubError
from scrub.patching.command import patch_command

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Causal-scrubbing hypothesis testing for transformer circuits.",
)
dataset_app = typer.Typer(no_args_is_help=True, help="Build datasets and their corruptions.")
app.add_typer(dataset_app, name="dataset")
# The command module imports torch and the engine only inside the command, so this is cheap.
app.command("patch")(patch_command)
app.command("discover")(discover_command)


def _parse_ints(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ScrubError(f"{what} {text!r} is not a comma-separated list of integers") from None


@dataset_app.command("ioi")
def dataset_ioi(
    out: Annotated[Path, typer.Option("--out", help="Output file: .jsonl, .csv or .parquet")],
    n: Annotated[int, typer.Option("--n", help="Number of prompts")] = 100,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    order: Annotated[str, typer.Option("--order", help="ABBA, BABA or mixed")] = "mixed",
    templates: Annotated[
        str | None, typer.Option("--templates", help="Template ids, e.g. 0,3")
    ] = None,
    corrupt: Annotated[str | None, typer.Option("--corrupt", help="e.g. prefix,flip-io")] = None,
    tokenizer: Annotated[
        str, typer.Option("--tokenizer", help="toy-ioi or a tokenizer dir")
    ] = "toy-ioi",
) -> None:
    """Generate an IOI PromptSet (optionally corrupted) and write it to --out."""
    from scrub.data import corrupt as apply_corruptions
    from scrub.data import load_tokenizer, make_ioi, parse_corruptions
    from scrub.data.export import FORMATS, write_promptset
    from scrub.report import preview

    if out.suffix not in FORMATS:
        raise ScrubError(
            f"cannot write {out.name}", fix=f"use a file ending in {', '.join(FORMATS)}"
        )
    steps = parse_corruptions(corrupt) if corrupt is not None else []
    tok = load_tokenizer(tokenizer)
    ps = make_ioi(
        n, seed=seed, tokenizer=tok, order=order, templates=_parse_ints(templates, "--templates")
    )
    if steps:
        ps = apply_corruptions(ps, steps, seed=seed)
    write_promptset(ps, out)
    typer.echo(preview(ps))
    if ps.excluded_names:
        typer.echo(
            f"excluded {len(ps.excluded_names)} names that are not single tokens: "
            f"{', '.join(ps.excluded_names)}"
        )
    typer.echo(f"wrote {len(ps)} prompts to {out}")


def _parse_bytes(text: str) -> int:
    """``"2GB"``, ``"500MB"`` or a plain byte count."""
    units = {"KB": 1024, "MB": 1024**2, "GB": 1024**3}
    t = text.strip().upper()
    try:
        for unit, factor in units.items():
            if t.endswith(unit):
                return int(float(t[: -len(unit)]) * factor)
        return int(t)
    except ValueError:
        raise ScrubError(
            f"cannot read the memory size {text!r}", fix="write e.g. 2GB or 500MB"
        ) from None


@app.command("run")
def run(
    ref: Annotated[str, typer.Argument(help="FILE::NAME of a hypothesis")],
    model: Annotated[
        str, typer.Option("--model", help="toy-ioi, gpt2-small or a path")
    ] = "toy-ioi",
    n: Annotated[int, typer.Option("--n", help="Reference examples")] = 200,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    metric: Annotated[str, typer.Option("--metric", help="logit-diff, loss or kl")] = "logit-diff",
    pool: Annotated[int | None, typer.Option("--pool", help="Rows to resample from")] = None,
    max_memory: Annotated[str, typer.Option("--max-memory", help="e.g. 2GB")] = "2GB",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here")] = None,
) -> None:
    """Scrub one hypothesis and print clean, scrubbed, random and recovered +- SE."""
    from scrub.metrics import check_metric
    from scrub.scrubbing.loader import load_hypothesis
    from scrub.scrubbing.run import run_hypothesis, write_result

    check_metric(metric)
    if json_out is not None and json_out.suffix != ".json":
        raise ScrubError(f"cannot write {json_out.name}", fix="use a file ending in .json")
    hypothesis = load_hypothesis(ref)
    result = run_hypothesis(
        hypothesis,
        model,
        n=n,
        seed=seed,
        metric=metric,
        pool=pool,
        max_memory=_parse_bytes(max_memory),
        progress=True,
    )
    s = result.summary()
    typer.echo(
        f"hypothesis {hypothesis.name}  model {model}  n={s['n']}  metric {metric}  seed {seed}"
    )
    for key in ("clean", "scrubbed", "random"):
        typer.echo(f"  {key:<10}{s[key]:>10.4f}")
    typer.echo(
        f"  {'recovered':<10}{s['recovered']:>10.4f} +- {s['recovered_se']:.4f} (delta-method SE)"
    )
    typer.echo(
        f"  mean of per-example ratios {s['mean_of_ratios']:.4f} +- {s['mean_of_ratios_se']:.4f}"
    )
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    if json_out is not None:
        write_result(result, json_out)
        typer.echo(f"wrote {json_out}")


@app.command(
    "check",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def check(ctx: typer.Context) -> None:
    """Run the claims under hypotheses/ (pytest underneath: its options and exit codes)."""
    from scrub.runner.check import check as run_check

    raise SystemExit(run_check(list(ctx.args)))


@app.command("runs")
def runs(
    root: Annotated[Path, typer.Option("--root", help="Where runs are stored")] = Path("runs"),
) -> None:
    """List stored runs: name, results, passed/failed, command."""
    from scrub.runner.store import list_runs

    found = list_runs(root)
    if not found:
        typer.echo(f"no runs under {root}")
        return
    for run in found:
        table = run.table()
        counts = table["outcome"].value_counts().to_dict() if len(table) else {}
        tally = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        args = " ".join(map(str, run.meta().get("pytest_args", [])))
        typer.echo(f"{run.path.name}  {len(table):>3} results  {tally:<24} {args}")


@app.command("compare")
def compare(
    run_a: Annotated[str, typer.Argument(help="Run directory or name (or 'latest')")],
    run_b: Annotated[str, typer.Argument(help="Run directory or name (or 'latest')")],
    root: Annotated[Path, typer.Option("--root", help="Where runs are stored")] = Path("runs"),
) -> None:
    """Show what changed between two runs: recovered, its change and pass/fail flips."""
    import pandas as pd

    from scrub.runner.store import compare_runs, resolve_run

    a, b = resolve_run(run_a, root), resolve_run(run_b, root)
    diff = compare_runs(a, b)
    typer.echo(f"A = {a.path}\nB = {b.path}")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        typer.echo(diff.drop(columns=["key"]).to_string(index=False, float_format="%.3f"))
    changed = int((diff["status"] != "same").sum())
    typer.echo(f"{changed} of {len(diff)} results changed")


@app.command("draw")
def draw(
    ref: Annotated[str, typer.Argument(help="FILE::NAME of a hypothesis")],
    out: Annotated[Path, typer.Option("-o", "--out", help="graph.svg, .png or .dot")],
    results: Annotated[
        str | None, typer.Option("--results", help="A run (dir or name) or a result JSON")
    ] = None,
) -> None:
    """Render a hypothesis with graphviz, optionally annotated with what each node costs."""
    from scrub.runner.draw import FORMATS, load_records
    from scrub.runner.draw import draw as draw_hypothesis
    from scrub.scrubbing.loader import load_hypothesis

    if out.suffix not in FORMATS:
        raise ScrubError(f"cannot draw to {out.name}", fix=f"use {', '.join(FORMATS)}")
    hypothesis = load_hypothesis(ref)
    records = load_records(results) if results is not None else None
    outcome = draw_hypothesis(hypothesis, out, records=records)
    typer.echo(outcome.message)
    typer.echo(f"drawing: {outcome.image or outcome.dot}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning :class:`ScrubError` into exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except ScrubError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except SystemExit as e:  # typer exits with the code of --help and usage errors
        return int(e.code or 0)
    except Exception as e:  # click usage errors carry their own exit code
        import click

        if isinstance(e, click.ClickException):
            e.show()
            return e.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
