"""``scrub discover``: search for a hypothesis; optionally score it and the baselines.

Register with ``app.command("discover")(discover_command)``. Cheap checks come before any model
work; the hypothesis file is written atomically.

    scrub discover --model toy-ioi --corrupt abc --target 0.9 --out found.py --seed 0 \\
        --score scrub/models/toy_ioi/circuit.json
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Annotated

import typer

from scrub.cli_options import Device, Dtype
from scrub.errors import ScrubError

OTHER_RULES = ("template", "random")


def discover_command(
    out: Annotated[Path, typer.Option("--out", help="Write the found hypothesis here (.py)")],
    model: Annotated[str, typer.Option("--model", help="toy-ioi, gpt2-small or a dir")] = "toy-ioi",
    dataset: Annotated[str, typer.Option("--dataset", help="ioi")] = "ioi",
    corrupt: Annotated[
        str, typer.Option("--corrupt", help="Corruption for the path-patching order, e.g. abc")
    ] = "abc",
    target: Annotated[float, typer.Option("--target", help="Recovered fraction to reach")] = 0.9,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    n: Annotated[int, typer.Option("--n", help="Reference examples per scrub")] = 200,
    pool: Annotated[int, typer.Option("--pool", help="Rows to resample from")] = 2000,
    n_patch: Annotated[
        int, typer.Option("--n-patch", help="Prompts for path patching and the baselines")
    ] = 100,
    other: Annotated[
        str, typer.Option("--other", help="Unexplained inputs from: template (same) or random")
    ] = "template",
    score: Annotated[
        Path | None, typer.Option("--score", help="circuit.json: score search and baselines")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    device: Device = "auto",
    dtype: Dtype = "float32",
) -> None:
    """Find a small hypothesis recovering --target, in causal-scrubbing semantics."""
    from scrub.data import corrupt as apply_corruptions
    from scrub.data import make_ioi, parse_corruptions

    if out.suffix != ".py":
        raise ScrubError(f"cannot write {out.name}", fix="use a file ending in .py")
    if dataset != "ioi":
        raise ScrubError(f"unknown --dataset {dataset!r}", fix="use ioi (the only one so far)")
    if not 0.0 < target < 1.0:
        raise ScrubError(f"--target {target} is not between 0 and 1", fix="e.g. --target 0.9")
    if other not in OTHER_RULES:
        raise ScrubError(f"unknown --other {other!r}", fix=f"use {' or '.join(OTHER_RULES)}")
    if n > pool:
        raise ScrubError(f"--n {n} is more than --pool {pool}", fix="lower --n or raise --pool")
    steps = parse_corruptions(corrupt)
    from scrub.models.load import placement

    placement(device, dtype)  # checked before anything loads
    truth = None
    if score is not None:
        from scrub.discover.space import load_truth

        truth = load_truth(score)

    import torch

    from scrub.data.registry import dataset_for
    from scrub.discover import search as S
    from scrub.discover.space import Space
    from scrub.discover.writer import write_hypothesis
    from scrub.models import load_model
    from scrub.patching import PatchInputs
    from scrub.scrubbing.hypothesis import agree, random

    loaded = load_model(model, device=device, dtype=dtype)
    info = loaded.info
    ds = dataset_for("ioi", pool, seed=seed, model=loaded)
    clean_ps = make_ioi(n_patch, seed=seed, tokenizer=loaded.tokenizer)
    inputs = PatchInputs.from_promptsets(clean_ps, apply_corruptions(clean_ps, steps, seed=seed))
    settings = S.Settings(
        target=target, n=n, seed=seed, other=agree("template") if other == "template" else random
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="scrubs", unit=" scrub", leave=False)

    def tick(recovered: float, heads: int) -> None:
        bar.update(1)
        bar.set_postfix(recovered=f"{recovered:.3f}", heads=heads)

    torch.set_grad_enabled(False)
    start = time.perf_counter()
    found = S.discover(loaded, ds, inputs, settings, tick if bar is not None else None)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    command = (
        f"scrub discover --model {model} --dataset {dataset} --corrupt {corrupt} --target {target} "
        f"--seed {seed} --n {n} --pool {pool} --n-patch {n_patch} --other {other} --out {out}"
    )
    heads = found.head_parts()
    n_embed = len(found.parts) - len(heads)
    rec = f"{found.recovered:.3f} +- {found.recovered_se:.3f}"
    source = "a prompt of the same template" if other == "template" else "a random prompt"
    header = "\n\n".join(
        [
            f"Found by scrub's search: {len(heads)} heads at named positions, {n_embed} "
            f"embeddings ({found.evaluations} scrubs, {seconds:.0f} s).",
            "    "
            + command.replace(" --seed", " \\\n        --seed").replace(
                " --out", " \\\n        --out"
            ),
            textwrap.fill(
                f"{model}, n={n}, seed {seed}: recovered {rec}. Every node keeps the reference "
                f"input; each internal node's other inputs come from {source}. Check it with "
                f"`scrub run {out}::found --model {model} --seed {seed}`.",
                99,
            ),
        ]
    )
    write_hypothesis(found, out, variable="found", title=f"found on {model}", header=header)
    typer.echo(
        f"found {len(heads)} heads ({', '.join(str(p.site) for p in heads)}) and {n_embed} "
        f"embeddings: recovered {rec} (n={n}, seed {seed}) in {seconds:.0f} s, "
        f"{found.evaluations} scrubs"
    )
    typer.echo(f"wrote {out}")
    if truth is None:
        return
    from scrub.discover.compare import compare

    space = Space(info.n_layers, info.n_heads, tuple(ds.positions))
    typer.echo(compare(loaded, inputs, space, truth, found, seconds))
