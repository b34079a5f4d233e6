"""``scrub inspect attention`` and ``scrub inspect dla``: look at heads from the command line.

Register with ``app.add_typer(inspect_app, name="inspect")``. Prompts come from the IOI generator
(``--n``, ``--seed``) or a prompt file (``--dataset``); outputs are PNG, SVG or a self-contained
HTML page whose cells show exact values on hover, written atomically after being rendered.

    scrub inspect attention --heads 1.2,3.1 --prompt 0 -o attn.html
    scrub inspect dla --n 100 -o dla.png
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Annotated

import typer

from scrub import arguments as args_check
from scrub.cli_options import Device, Dtype
from scrub.errors import ScrubError

inspect_app = typer.Typer(
    no_args_is_help=True, help="Attention patterns and direct logit attribution."
)
OUTPUTS = (".png", ".svg", ".html")

ModelOpt = Annotated[str, typer.Option("--model", help="toy-ioi, gpt2-small or a dir")]
NOpt = Annotated[int, typer.Option("--n", help="Number of IOI prompts")]
SeedOpt = Annotated[int, typer.Option("--seed")]
DatasetOpt = Annotated[
    Path | None, typer.Option("--dataset", help="Prompt file instead of generated IOI prompts")
]
OutOpt = Annotated[Path, typer.Option("-o", "--out", help="out.png, out.svg or out.html")]


def parse_heads(text: str) -> list[tuple[int, int]]:
    """``"1.2,3.1"`` -> ``[(1, 2), (3, 1)]``."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        m = re.fullmatch(r"(\d+)\.(\d+)", part)
        if not m:
            raise ScrubError(f"cannot read head {part!r}", fix="write heads as L.H, e.g. 1.2,3.1")
        out.append((int(m.group(1)), int(m.group(2))))
    if not out:
        raise ScrubError("no heads given", fix="pass --heads 1.2,3.1")
    return out


def _check_paths(out: Path, dataset: Path | None) -> None:
    """The output and the prompt file, checked before any model work."""
    args_check.check_output(out, OUTPUTS, "--out")
    if dataset is not None:
        from scrub.data.promptfile import check_path

        check_path(dataset)


def _prompts(model, n: int, seed: int, dataset: Path | None):
    if dataset is not None:
        from scrub.data.promptfile import load_prompts

        info = model.info
        return load_prompts(dataset, model.tokenizer, n_vocab=info.d_vocab, n_ctx=info.n_ctx)
    from scrub.data import make_ioi

    return make_ioi(n, seed=seed, tokenizer=model.tokenizer)


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        "<style>body{font-family:sans-serif;font-size:13px;margin:16px}"
        "rect:hover{stroke:#000;stroke-width:2}</style></head>"
        f"<body><h3>{html.escape(title)}</h3>{body}</body></html>\n"
    )


def _write(out: Path, text: str | bytes) -> None:
    from scrub.patching.views import write_bytes

    write_bytes(text, out)
    typer.echo(f"wrote {out}")


@inspect_app.command("attention")
def attention(
    heads: Annotated[str, typer.Option("--heads", help="Heads as L.H, e.g. 1.2,3.1")],
    out: OutOpt,
    prompt: Annotated[int, typer.Option("--prompt", help="Which prompt (row) to show")] = 0,
    model: ModelOpt = "toy-ioi",
    n: NOpt = 10,
    seed: SeedOpt = 0,
    dataset: DatasetOpt = None,
    device: Device = "auto",
    dtype: Dtype = "float32",
) -> None:
    """Attention patterns of chosen heads on one prompt (query rows, key columns)."""
    import torch

    from scrub.models import load_model
    from scrub.pages.svg import heatmap
    from scrub.patching.inspect import attention_patterns, check_heads
    from scrub.patching.views import patterns_png

    _check_paths(out, dataset)
    chosen = parse_heads(heads)
    loaded = load_model(model, device=device, dtype=dtype)
    check_heads(loaded, chosen)
    ps = _prompts(loaded, max(n, prompt + 1), seed, dataset)
    if not 0 <= prompt < len(ps):
        raise ScrubError(f"--prompt {prompt} is not a row of {len(ps)} prompts", fix="pick a row")
    length = int(ps.mask[prompt].sum())
    toks = [t.replace("Ġ", " ") for t in ps.str_tokens[prompt][:length]]
    labels = [f"{i}:{t.strip() or '_'}" for i, t in enumerate(toks)]
    torch.set_grad_enabled(False)
    pats = attention_patterns(loaded, ps.tokens[prompt : prompt + 1, :length], chosen)[:, 0].numpy()
    title = f"attention patterns, {loaded.info.name}, prompt {prompt}: {ps.texts[prompt]}"
    if out.suffix == ".png":
        _write(out, patterns_png(pats, chosen, labels, title))
        return
    parts = []
    for pat, (layer, head) in zip(pats, chosen):

        def tip(i: int, j: int, v: float, layer=layer, head=head) -> str:
            return f"head {layer}.{head}: query {labels[i]} -> key {labels[j]}: {v:.3f}"

        svg = heatmap(
            pat,
            labels,
            labels,
            tip=tip,
            row_title="query",
            col_title=f"head {layer}.{head} (keys)",
            cell=22,
            show_values=False,
            col_label_angle=60,
        )
        parts.append(svg)
    _write(
        out, parts[0] if out.suffix == ".svg" and len(parts) == 1 else _page(title, "".join(parts))
    )


@inspect_app.command("dla")
def dla(
    out: OutOpt,
    model: ModelOpt = "toy-ioi",
    n: NOpt = 100,
    seed: SeedOpt = 0,
    dataset: DatasetOpt = None,
    device: Device = "auto",
    dtype: Dtype = "float32",
) -> None:
    """Direct logit attribution of every head to logit(IO) - logit(S) at END, averaged."""
    import numpy as np
    import torch

    from scrub.models import load_model
    from scrub.pages.svg import heatmap
    from scrub.patching.inspect import direct_logit_attribution
    from scrub.patching.views import dla_png

    _check_paths(out, dataset)
    loaded = load_model(model, device=device, dtype=dtype)
    ps = _prompts(loaded, n, seed, dataset)
    torch.set_grad_enabled(False)
    per = direct_logit_attribution(loaded, ps.tokens, ps.mask, ps.positions["END"], ps.answers)
    mean = per.mean(0)
    se = per.std(0) / max(len(ps), 1) ** 0.5
    where = f"file {dataset}" if dataset else f"IOI, seed {seed}"
    title = f"direct logit attribution, {loaded.info.name}, n={len(ps)} ({where})"
    top = np.dstack(np.unravel_index(np.argsort(-mean.abs().numpy(), axis=None), mean.shape))[0][:5]
    for layer, head in top:
        typer.echo(
            f"head {layer}.{head}: {float(mean[layer, head]):+.4f} +- {float(se[layer, head]):.4f}"
        )
    if out.suffix == ".png":
        _write(out, dla_png(mean, title=title))
        return
    rows = [str(i) for i in range(mean.shape[0])]
    cols = [str(j) for j in range(mean.shape[1])]

    def tip(i: int, j: int, v: float) -> str:
        return f"head {i}.{j}: {v:+.4f} +- {float(se[i, j]):.4f} (SE over prompts)"

    svg = heatmap(mean.numpy(), rows, cols, centre=0.0, tip=tip)
    legend = (
        "<p>logit(IO) - logit(S) written directly by each head at END (final LayerNorm scale "
        "frozen); blue raises it, red lowers it.</p>"
    )
    _write(out, svg if out.suffix == ".svg" else _page(title, legend + svg))
