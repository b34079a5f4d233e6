"""The ``scrub`` command line. Every failure is one line on stderr and an exit code
(:mod:`scrub.exits`: 2 bad input, 130 interrupted, 1 a bug); arguments are checked
(:mod:`scrub.arguments`) before any model loads."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from scrub import arguments as args_check
from scrub import env
from scrub.cli_options import Device, Dtype
from scrub.dataset_command import import_command
from scrub.discover.command import discover_command
from scrub.errors import ScrubError
from scrub.exits import debug_requested, run_guarded
from scrub.pages.command import report_command
from scrub.patching.command import patch_command
from scrub.patching.inspect_command import inspect_app
from scrub.stats.command import formal_tests_command

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Causal-scrubbing hypothesis testing for transformer circuits.",
)
dataset_app = typer.Typer(no_args_is_help=True, help="Build datasets and their corruptions.")
app.add_typer(dataset_app, name="dataset")


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="Show the traceback of an internal error (also SCRUB_DEBUG=1)"
        ),
    ] = False,
) -> None:
    """Causal-scrubbing hypothesis testing for transformer circuits.

    Exit codes: 0 success (scrub check: pytest's), 2 bad input, 130 interrupted, 1 a bug in scrub.
    """


# The command modules import torch and the engine only inside the command, so this is cheap.
app.command("patch")(patch_command)
dataset_app.command("import")(import_command)
app.command("test")(formal_tests_command)
app.add_typer(inspect_app, name="inspect")
app.command("report")(report_command)
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
    templates_dir: Annotated[
        Path | None,
        typer.Option(
            "--templates-dir", help="Your own templates_baba.txt, names.txt, ... (others shipped)"
        ),
    ] = None,
) -> None:
    """Generate an IOI PromptSet (optionally corrupted) and write it to --out."""
    args_check.check_count(n, "--n", what="prompts")
    args_check.check_seed(seed)
    args_check.check_fits(n, f"--n {n}")
    from scrub.data import IOIVocabulary, load_tokenizer, make_ioi, parse_corruptions
    from scrub.data import corrupt as apply_corruptions
    from scrub.data.export import FORMATS, write_promptset
    from scrub.data.tokenizer import splits_only_on_spaces
    from scrub.report import preview

    args_check.check_output(out, FORMATS, "--out")
    args_check.check_tokenizer(tokenizer)
    steps = parse_corruptions(corrupt) if corrupt is not None else []
    vocab = IOIVocabulary.from_folder(templates_dir) if templates_dir is not None else None
    tok = load_tokenizer(tokenizer)
    ps = make_ioi(
        n,
        seed=seed,
        tokenizer=tok,
        order=order,
        templates=_parse_ints(templates, "--templates"),
        vocab=vocab,
    )
    if steps:
        ps = apply_corruptions(ps, steps, seed=seed, vocab=vocab)
    write_promptset(ps, out)
    typer.echo(preview(ps))
    if vocab is not None:
        typer.echo("lists: " + ", ".join(f"{k} from {v}" for k, v in vocab.sources))
    if splits_only_on_spaces(tok):
        typer.echo("punctuation spaced out: the tokenizer splits only on whitespace")
    if ps.excluded_names:
        typer.echo(
            f"warning: excluded {len(ps.excluded_names)} names that are not single tokens: "
            f"{', '.join(ps.excluded_names)}",
            err=True,
        )
    typer.echo(f"wrote {len(ps)} prompts to {out}")


@app.command("run")
def run(
    ref: Annotated[str, typer.Argument(help="FILE::NAME of a hypothesis")],
    model: Annotated[
        str, typer.Option("--model", help="toy-ioi, gpt2-small or a path")
    ] = "toy-ioi",
    n: Annotated[
        int | None, typer.Option("--n", help="Reference examples (200; with --dataset all rows)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    metric: Annotated[str, typer.Option("--metric", help="logit-diff, loss or kl")] = "logit-diff",
    pool: Annotated[int | None, typer.Option("--pool", help="Rows to resample from")] = None,
    max_memory: Annotated[str, typer.Option("--max-memory", help="e.g. 2GB")] = "2GB",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here")] = None,
    dataset: Annotated[
        Path | None,
        typer.Option("--dataset", help="A prompt file to scrub on (.jsonl/.csv/.parquet)"),
    ] = None,
    device: Device = "auto",
    dtype: Dtype = "float32",
) -> None:
    """Scrub one hypothesis and print clean, scrubbed, random and recovered +- SE."""
    # Cheap checks first (no torch import): values, output path, hypothesis, model files.
    from scrub.scrubbing.loader import load_hypothesis
    from scrub.scrubbing.run import DEFAULT_N, DEFAULT_POOL, run_hypothesis, write_result
    from scrub.scrubbing.validate import check_structure

    if n is not None:
        args_check.check_count(n, "--n")
    args_check.check_seed(seed)
    memory = args_check.parse_bytes(max_memory, "--max-memory")
    if dataset is None:  # a prompt file's own size is checked when it is read
        n_rows = DEFAULT_N if n is None else n
        args_check.check_pool(pool, n_rows)
        rows = max(n_rows, pool or DEFAULT_POOL)
        what = f"--pool {pool}" if pool else f"--n {n_rows}"
        if not pool and n_rows < rows:
            what = f"a pool of {rows} rows"
        args_check.check_fits(rows, what, extra_bytes=memory, extra_what="--max-memory")
    if json_out is not None:
        args_check.check_output(json_out, (".json",), "--json")
    hypothesis = load_hypothesis(ref)
    check_structure(hypothesis)
    from scrub.metrics import check_metric  # imports torch

    check_metric(metric)
    from scrub.models import load_model
    from scrub.models.load import placement

    placement(device, dtype)  # checked before the model loads
    args_check.check_model(model)
    result = run_hypothesis(
        hypothesis,
        load_model(model, device=device, dtype=dtype),
        n=n,
        seed=seed,
        metric=metric,
        pool=pool,
        max_memory=memory,
        progress=True,
        dataset=dataset,
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
    """List stored runs: name, status, results, passed/failed, command; unreadable files."""
    from scrub.runner.store import list_runs

    found = list_runs(root)
    if not found:
        typer.echo(f"no runs under {root}")
        return
    for run in found:
        table = run.table()
        counts = table["outcome"].value_counts().to_dict() if len(table) else {}
        tally = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        status = run.status()
        args = (
            "" if status == "unreadable" else " ".join(map(str, run.meta().get("pytest_args", [])))
        )
        typer.echo(f"{run.path.name}  {status:<11} {len(table):>3} results  {tally:<24} {args}")
        for problem in run.problems():
            typer.echo(f"warning: {problem}", err=True)


@app.command("compare")
def compare(
    run_a: Annotated[str, typer.Argument(help="Run directory or name (or 'latest')")],
    run_b: Annotated[str, typer.Argument(help="Run directory or name (or 'latest')")],
    root: Annotated[Path, typer.Option("--root", help="Where runs are stored")] = Path("runs"),
) -> None:
    """Show what changed between two runs, result by result (paired by hypothesis and
    settings): the settings that differ, recovered's change +- SE, pass/fail flips."""
    from scrub.runner.compare import compare_runs, format_comparison
    from scrub.runner.store import resolve_run

    a, b = resolve_run(run_a, root), resolve_run(run_b, root)
    for problem in a.problems() + b.problems():
        typer.echo(f"warning: {problem}", err=True)
    diff = compare_runs(a, b)
    typer.echo(f"A = {a.path}\nB = {b.path}")
    for line in format_comparison(diff):
        typer.echo(line)
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
    from scrub.runner.draw import FORMATS, load_results
    from scrub.runner.draw import draw as draw_hypothesis
    from scrub.scrubbing.loader import load_hypothesis
    from scrub.scrubbing.validate import check_structure

    args_check.check_output(out, FORMATS, "-o/--out")
    hypothesis = load_hypothesis(ref)
    check_structure(hypothesis)
    records, run = load_results(results) if results is not None else (None, None)
    outcome = draw_hypothesis(hypothesis, out, records=records, run=run, progress=True)
    typer.echo(outcome.message)
    typer.echo(f"drawing: {outcome.image or outcome.dot}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; every outcome becomes an exit code (see :mod:`scrub.exits`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not env.flag("SCRUB_ALLOW_DOWNLOAD"):
        # No network unless asked: libraries that would consult the hub stay on local files.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run_guarded(
        lambda: app(args=argv, prog_name="scrub", standalone_mode=False),
        debug=debug_requested(argv),
    )


if __name__ == "__main__":
    sys.exit(main())
