"""``scrub discover``: search for a hypothesis; optionally score it and the baselines.

Register with ``app.command("discover")(discover_command)``. Cheap checks come before any model
work; the hypothesis file is written atomically.

    scrub discover --model toy-ioi --corrupt abc --corrupt swap-order --target 0.9 --seed 0 \\
        --out found.py --score scrub/models/toy_ioi/circuit.json
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Annotated

import typer

from scrub import arguments as args_check
from scrub.cli_options import Device, Dtype
from scrub.errors import ScrubError

#: What orders a search on generated IOI prompts unless --corrupt says otherwise: all names
#: changed, and the first clause's order swapped, mixed row by row.
DEFAULT_CORRUPTIONS = ("abc", "swap-order")


def discover_command(
    out: Annotated[Path, typer.Option("--out", help="Write the found hypothesis here (.py)")],
    model: Annotated[str, typer.Option("--model", help="toy-ioi, gpt2-small or a dir")] = "toy-ioi",
    dataset: Annotated[
        str, typer.Option("--dataset", help="ioi, or a prompt file (.jsonl/.csv/.parquet)")
    ] = "ioi",
    corrupted: Annotated[
        Path | None,
        typer.Option("--corrupted", help="With a prompt file: its corrupted prompts (a file)"),
    ] = None,
    corrupt: Annotated[
        list[str] | None,
        typer.Option(
            "--corrupt",
            help="IOI corruption ordering the search; repeat to mix several (row i takes the "
            "(i mod k)-th). Default: abc and swap-order mixed (one corruption hides paths)",
        ),
    ] = None,
    target: Annotated[float, typer.Option("--target", help="Recovered fraction to reach")] = 0.9,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    n: Annotated[int, typer.Option("--n", help="Reference examples per scrub")] = 200,
    pool: Annotated[int, typer.Option("--pool", help="Rows to resample from (IOI)")] = 2000,
    n_patch: Annotated[
        int, typer.Option("--n-patch", help="Prompts for path patching and the baselines")
    ] = 100,
    other: Annotated[
        str,
        typer.Option(
            "--other",
            help="Unexplained inputs from: template (a prompt of the same template), random, "
            "or any feature column of the prompts to agree on",
        ),
    ] = "template",
    beam: Annotated[
        int, typer.Option("--beam", help="Hypotheses kept per step of an expansion")
    ] = 3,
    shortlist: Annotated[
        int, typer.Option("--shortlist", help="Best heads by path patching tried per slot")
    ] = 8,
    score: Annotated[
        Path | None, typer.Option("--score", help="circuit.json: score search and baselines")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    device: Device = "auto",
    dtype: Dtype = "float32",
) -> None:
    """Find a small hypothesis recovering --target, in causal-scrubbing semantics."""
    # Cheap checks first (no torch import), the output path before anything runs.
    args_check.check_output(out, (".py",), "--out")
    args_check.check_seed(seed)
    for value, option, what in (
        (n, "--n", "reference examples"),
        (n_patch, "--n-patch", "prompts"),
        (beam, "--beam", "hypotheses"),
        (shortlist, "--shortlist", "heads"),
    ):
        args_check.check_count(value, option, what=what)
    from_file = dataset != "ioi"
    if from_file:
        from scrub.data.promptfile import check_path

        if Path(dataset).suffix not in (".jsonl", ".csv", ".parquet"):
            raise ScrubError(
                f"unknown --dataset {dataset!r}",
                fix="use ioi, or a prompt file ending in .jsonl, .csv or .parquet",
            )
        if corrupted is None:
            raise ScrubError(
                "--dataset FILE needs --corrupted FILE: its corrupted prompts order the search",
                fix="write a corrupted version of each prompt to a file (rows tied by id)",
            )
        if corrupt:
            raise ScrubError(
                "--corrupt rewrites generated IOI prompts, not a prompt file",
                fix="leave --corrupt out; --corrupted gives the file's corrupted prompts",
            )
        check_path(Path(dataset))
        check_path(corrupted)
    elif corrupted is not None:
        raise ScrubError(
            "--corrupted goes with --dataset FILE", fix="use --corrupt for generated IOI prompts"
        )
    if not 0.0 < target < 1.0:
        raise ScrubError(f"--target {target} is not between 0 and 1", fix="e.g. --target 0.9")
    if not from_file:
        args_check.check_pool(pool, n)
    from scrub.data import parse_corruptions  # imports torch

    # One corruption only shows the paths through the variables it changes (scrub.discover.data)
    mixes = [parse_corruptions(c) for c in (corrupt or DEFAULT_CORRUPTIONS)]
    from scrub.models.load import placement

    placement(device, dtype)  # checked before anything loads
    truth = None
    if score is not None:
        from scrub.discover.space import load_truth

        truth = load_truth(score)

    import torch

    from scrub.discover import search as S
    from scrub.discover.data import check_other, file_data, ioi_data
    from scrub.discover.space import Space
    from scrub.discover.writer import write_hypothesis
    from scrub.models import load_model
    from scrub.scrubbing.hypothesis import agree, random

    loaded = load_model(model, device=device, dtype=dtype)
    info = loaded.info
    if from_file:
        data = file_data(loaded, Path(dataset), corrupted, n_patch=n_patch)
        if n > len(data.pool):
            typer.echo(f"note: {dataset} has {len(data.pool)} rows: all are references", err=True)
            n = len(data.pool)
    else:
        data = ioi_data(loaded, pool=pool, n_patch=n_patch, corruptions=mixes, seed=seed)
    check_other(other, data.pool)
    settings = S.Settings(
        target=target,
        n=n,
        seed=seed,
        other=random if other == "random" else agree(other),
        shortlist=shortlist,
        beam=beam,
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="scrubs", unit=" scrub", leave=False)

    def tick(recovered: float, heads: int, nodes: int, scrubs: int) -> None:
        bar.update(scrubs - bar.n)
        bar.set_postfix(recovered=f"{recovered:.3f}", heads=heads, nodes=nodes)

    torch.set_grad_enabled(False)
    start = time.perf_counter()
    found = S.discover(loaded, data.pool, data.inputs, settings, tick if bar is not None else None)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    source_args = (
        f"--dataset {dataset} --corrupted {corrupted}"
        if from_file
        else "--dataset ioi " + " ".join(f"--corrupt {','.join(m)}" for m in mixes)
    )
    command = (
        f"scrub discover --model {model} {source_args} --target {target} "
        f"--seed {seed} --n {n}{'' if from_file else f' --pool {pool}'} --n-patch {n_patch} "
        f"--other {other} --beam {beam} --shortlist {shortlist} --out {out}"
    )
    heads = found.head_parts()
    n_embed = len(found.parts) - len(heads)
    sites = list(dict.fromkeys(p.site for p in heads))  # a head can be a node on several paths
    spread = sum(site.position is None for site in sites)
    counted = f"{len(sites)} heads" + (
        f" (as {len(heads)} nodes)" if len(heads) != len(sites) else ""
    )
    where = f"({spread} at all positions)" if spread else "at named positions"
    rec = f"{found.recovered:.3f} +- {found.recovered_se:.3f}"
    source = (
        "a random prompt"
        if other == "random"
        else "a prompt of the same template"
        if other == "template"
        else f"a prompt with the same {other}"
    )
    rerun = f"scrub run {out}::found --model {model} --seed {seed}"
    if from_file:
        rerun += f" {data.run_args} --n {n}"
    elif pool != 2000:
        rerun += f" --pool {pool}"
    if n != 200 and not from_file:
        rerun += f" --n {n}"
    missed = (
        ""
        if found.reached
        else f"NOT the target: no hypothesis the search built reached --target {target} (see "
        f"README, 'What can go wrong'); this is the best it verified. "
    )
    header = "\n\n".join(
        [
            textwrap.fill(
                f"Found by scrub's search: {counted} {where}, {n_embed} embeddings "
                f"({found.evaluations} scrubs in {found.passes} batched passes).",
                96,  # the file's docstring opens with three quotes on this line
            ),
            "    "
            + command.replace(" --seed", " \\\n        --seed").replace(
                " --out", " \\\n        --out"
            ),
            textwrap.fill(
                f"{model}, n={n}, seed {seed}: recovered {rec}. {missed}Every node keeps the "
                "reference "
                f"input; each internal node's other inputs come from {source}. Check it with "
                f"`{rerun}`.",
                99,
                break_on_hyphens=False,  # paths and options stay whole
                break_long_words=False,
            ),
        ]
    )
    write_hypothesis(found, out, variable="found", title=f"found on {model}", header=header)
    typer.echo(
        f"found {counted} ({', '.join(map(str, sites))}) and {n_embed} "
        f"embeddings: recovered {rec} (n={n}, seed {seed}) in {seconds:.0f} s, "
        f"{found.evaluations} scrubs in {found.passes} passes"
    )
    typer.echo(f"wrote {out}")
    if missed:
        typer.echo(f"warning: {missed.strip()}", err=True)
    if truth is None:
        return
    from scrub.discover.compare import compare

    space = Space(info.n_layers, info.n_heads, tuple(data.pool.positions))
    typer.echo(compare(loaded, data.inputs, space, truth, found, seconds, data.corruption))
