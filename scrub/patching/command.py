"""``scrub patch``: a path-patching scan from the command line.

Register with ``app.command("patch")(patch_command)``. Every input is validated before any model
work, and every output (JSON, PNG, HTML) is rendered in memory before any is written, each
atomically: a failed run leaves no file behind.

    scrub patch --model toy-ioi --n 100 --seed 0 --corrupt abc --senders heads \\
        --receivers q:3.0,3.1 --positions END --mlps free --json out.json --png out.png
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from scrub.cli_options import Device, Dtype
from scrub.errors import ScrubError


def parse_senders(text: str, position: str | None):
    """``heads``, ``mlps``, ``heads+mlps`` (scans) or an explicit list like ``0.1,3.2,mlp2``."""
    from scrub.patching.activation import Component

    if text in ("heads", "mlps", "heads+mlps"):
        return text
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        head = re.fullmatch(r"(\d+)\.(\d+)", part)
        mlp = re.fullmatch(r"mlp:?(\d+)", part)
        if head:
            out.append(Component("head", int(head.group(1)), int(head.group(2)), position))
        elif mlp:
            out.append(Component("mlp", int(mlp.group(1)), None, position))
        else:
            raise ScrubError(
                f"cannot read sender {part!r}",
                fix="use heads, mlps, heads+mlps, or a list like 0.1,3.2,mlp2",
            )
    if not out:
        raise ScrubError("no senders given", fix="use --senders heads")
    return out


EXPERIMENTS = ("path", "activation")


def activation_kind(senders: str) -> str:
    """The component kind an activation scan patches, from ``--senders``."""
    from scrub.patching.activation import ACTIVATION_KINDS

    kind = "head" if senders == "heads" else senders
    if kind not in ACTIVATION_KINDS:
        raise ScrubError(
            f"activation patching cannot scan --senders {senders!r}",
            fix="use heads, resid_pre, attn_out or mlp_out",
        )
    return kind


def patch_command(
    model: Annotated[str, typer.Option("--model", help="toy-ioi, gpt2-small(-random) or a dir")] = (
        "toy-ioi"
    ),
    n: Annotated[int, typer.Option("--n", help="Number of prompts")] = 100,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    corrupt: Annotated[str, typer.Option("--corrupt", help="Corruption, e.g. abc")] = "abc",
    senders: Annotated[
        str, typer.Option("--senders", help="heads, mlps, heads+mlps, or e.g. 0.1,3.2,mlp2")
    ] = "heads",
    receivers: Annotated[
        str,
        typer.Option(
            "--receivers",
            help="logits, or q|k|v:L.H,L.H[@POSITION|@all] (q defaults to END, k/v to all)",
        ),
    ] = "logits",
    positions: Annotated[
        str | None, typer.Option("--positions", help="Patch senders only at this position")
    ] = None,
    mlps: Annotated[str, typer.Option("--mlps", help="free (default) or frozen")] = "free",
    normalize: Annotated[
        str, typer.Option("--normalize", help="clean (clean=1, corrupted=0) or damage (0, -1)")
    ] = "clean",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results as JSON")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Write a heatmap PNG")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write a heatmap HTML")] = None,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="Clean prompt file (.jsonl, .csv, .parquet)")
    ] = None,
    corrupted: Annotated[
        Path | None,
        typer.Option("--corrupted", help="Corrupted prompt file: rows tied by id, else by order"),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    device: Device = "auto",
    dtype: Dtype = "float32",
    experiment: Annotated[
        str,
        typer.Option(
            "--experiment",
            help="path (default) or activation: patch each component's corrupted output into the "
            "clean run, everything downstream recomputed (--senders heads|resid_pre|attn_out|"
            "mlp_out, --positions NAME|each)",
        ),
    ] = "path",
    run_dir: Annotated[
        str | None,
        typer.Option("--run", help="Also store the result in this run (dir, name or latest)"),
    ] = None,
) -> None:
    """Path-patch senders (corrupted) to receivers, other heads frozen; print the top senders.

    With --experiment activation, patch every component of a kind instead (receivers: logits).
    """
    import torch

    # Cheap checks first, before loading anything.
    from scrub import arguments as args_check
    from scrub.data import corrupt as apply_corruptions
    from scrub.data import make_ioi, parse_corruptions
    from scrub.models import load_model
    from scrub.models.load import placement
    from scrub.patching.inputs import PatchInputs
    from scrub.patching.path import MLP_MODES, Receivers, path_scan
    from scrub.patching.results import check_normalization
    from scrub.patching.views import heatmap_html, heatmap_png, title, write_bytes

    # Cheap checks first, before loading anything.
    if experiment not in EXPERIMENTS:
        raise ScrubError(f"unknown --experiment {experiment!r}", fix="use path or activation")
    args_check.check_count(n, "--n", what="prompts")
    args_check.check_seed(seed)
    args_check.check_fits(n, f"--n {n}")
    if mlps not in MLP_MODES:
        raise ScrubError(f"unknown --mlps {mlps!r}", fix="use free or frozen")
    normalization = check_normalization(normalize)
    recv = Receivers.parse(receivers)
    if experiment == "activation":
        if receivers != "logits":
            raise ScrubError(
                "activation patching reads the logits only", fix="drop --receivers (or use path)"
            )
        sender_spec = activation_kind(senders)
    else:
        sender_spec = parse_senders(senders, positions)
    run = None
    if run_dir is not None:
        from scrub.runner.store import resolve_run

        run = resolve_run(run_dir)
    if (dataset is None) != (corrupted is None):
        raise ScrubError("--dataset and --corrupted go together", fix="pass both files or neither")
    for path, suffix, option in (
        (json_out, ".json", "--json"),
        (png, ".png", "--png"),
        (html_out, ".html", "--html"),
    ):
        if path is not None:
            args_check.check_output(path, (suffix,), option)
    if dataset is not None:
        from scrub.data.promptfile import check_path, load_pair

        check_path(dataset)
        check_path(corrupted)
    steps = [] if dataset is not None else parse_corruptions(corrupt)
    placement(device, dtype)
    args_check.check_model(model)

    loaded = load_model(model, device=device, dtype=dtype)
    if dataset is not None:
        info = loaded.info
        clean_ps, bad_ps = load_pair(
            dataset, corrupted, loaded.tokenizer, n_vocab=info.d_vocab, n_ctx=info.n_ctx
        )
        provenance = {"corruption": f"file:{corrupted}", "seed": None}
    else:
        clean_ps = make_ioi(n, seed=seed, tokenizer=loaded.tokenizer)
        bad_ps = apply_corruptions(clean_ps, steps, seed=seed)
        provenance = {"corruption": ",".join(steps), "seed": seed}
    inputs = PatchInputs.from_promptsets(clean_ps, bad_ps)
    if positions is not None and not (experiment == "activation" and positions == "each"):
        inputs.index(positions)

    torch.set_grad_enabled(False)
    if experiment == "activation":
        from scrub.patching.activation import activation_scan

        result = activation_scan(
            loaded,
            inputs,
            sender_spec,
            position=positions,
            normalization=normalization,
            progress=progress,
            settings=provenance,
        )
    else:
        result = path_scan(
            loaded,
            inputs,
            sender_spec,
            recv,
            mlps=mlps,
            position=positions,
            normalization=normalization,
            progress=progress,
            settings=provenance,
        )
    # Render everything before writing anything: a failure leaves no partial output.
    rendered: list[tuple[bytes | str, Path]] = []
    text = json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n"
    if json_out is not None:
        rendered.append((text, json_out))
    if png is not None:
        rendered.append((heatmap_png(result), png))
    if html_out is not None:
        rendered.append((heatmap_html(result), html_out))
    if run is not None:
        from scrub.patching.views import run_patch_path

        rendered.append((text, run_patch_path(run.path, result)))
    for data, path in rendered:
        write_bytes(data, path)

    frame = result.to_frame().dropna(subset=["logit_diff"])
    effect = frame["normalized"].sub(result.no_effect()).abs()
    top = frame.reindex(effect.sort_values(ascending=False).index).head(10)
    typer.echo(f"{title(result)}: clean {result.clean:.3f}, corrupted {result.corrupted:.3f}")
    for w in result.warnings():
        typer.echo(f"warning: {w}", err=True)
    cols = ["component", "layer", "head", "position", "logit_diff", "normalized"]
    typer.echo(top[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    for _, path in rendered:
        typer.echo(f"wrote {path}")
