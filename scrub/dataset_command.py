"""``scrub dataset import``: check a prompt file, preview it, and optionally write it resolved.

Register with ``dataset_app.command("import")(import_command)``.

    scrub dataset import prompts.jsonl --tokenizer toy-ioi --out checked.parquet
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scrub import arguments as args_check


def import_command(
    file: Annotated[Path, typer.Argument(help="Prompt file: .jsonl, .csv or .parquet")],
    tokenizer: Annotated[
        str, typer.Option("--tokenizer", help="toy-ioi or a tokenizer dir (the model's own)")
    ] = "toy-ioi",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the checked prompts (token ids, positions as indices)"),
    ] = None,
    rows: Annotated[int, typer.Option("--rows", help="Rows to preview")] = 5,
) -> None:
    """Check a prompt file (every row, against the tokenizer) and preview its positions."""
    from scrub.data.promptfile import FORMATS, check_path, load_prompts, preview, write_prompts
    from scrub.data.tokenizer import load_tokenizer

    check_path(file)
    if out is not None:
        args_check.check_output(out, FORMATS, "--out")
    ps = load_prompts(file, load_tokenizer(tokenizer))
    typer.echo(preview(ps, rows))
    if out is not None:
        write_prompts(ps, out)
        typer.echo(f"wrote {len(ps)} prompts to {out}")
    else:
        typer.echo(f"{file}: {len(ps)} prompts, all rows check out")
