"""The ``scrub`` command line. Bad input exits with code 2 and one line naming problem and fix."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from scrub.errors import ScrubError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Causal-scrubbing hypothesis testing for transformer circuits.",
)
dataset_app = typer.Typer(no_args_is_help=True, help="Build datasets and their corruptions.")
app.add_typer(dataset_app, name="dataset")


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
