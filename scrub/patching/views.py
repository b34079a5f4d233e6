"""Views of patching results: layer x head (or layer x position) heatmaps, attention patterns and
direct logit attribution of chosen heads.

Renderers return bytes or text so a caller can build every output before writing any (the CLI
writes nothing when one fails); the ``write_*`` helpers write atomically. HTML is self-contained
(no scripts fetched, no plotting dependency): a coloured table whose cells show exact values on
hover.

>>> png = heatmap_png(result)                         # doctest: +SKIP
>>> Path("pp.html").write_text(heatmap_html(result))  # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
import math
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from scrub.atomic import atomic_path
from scrub.models.kernel import attention
from scrub.models.weights import ModelWeights, Norm
from scrub.patching.inputs import PatchInputs, RunCache, run_cache
from scrub.patching.results import PatchResult


def score_matrix(
    result: PatchResult, column: str = "normalized"
) -> tuple[np.ndarray, list[str], list[str]]:
    """Scores as a matrix with row labels (layers) and column labels (heads, "mlp" or positions).

    Head scans give layer x head (plus an "mlp" column when MLPs were senders); scans without
    heads give layer x position.
    """
    frame = result.to_frame()
    by_head = frame["component"].isin(["head"]).any()
    if by_head:
        key = frame["head"].astype("object").where(frame["head"].notna(), "mlp")
    else:
        key = frame["position"].astype("object").where(frame["position"].notna(), "all")
    frame = frame.assign(_col=key.astype(str))
    cols = list(dict.fromkeys(frame["_col"]))
    layers = sorted(frame["layer"].unique())
    grid = frame.pivot_table(index="layer", columns="_col", values=column, dropna=False)
    grid = grid.reindex(index=layers, columns=cols)
    return grid.to_numpy(dtype=float), [str(x) for x in layers], cols


def _title(result: PatchResult) -> str:
    s = result.settings
    where = f" @ {s.sender_position}" if s.sender_position else ""
    mlps = f", MLPs {s.mlps}" if s.experiment == "path" else ""
    return (
        f"{s.experiment} patching: {s.senders}{where} -> {s.receivers}{mlps} ({s.model}, n={s.n})"
    )


def _pyplot():
    """matplotlib's pyplot on the headless Agg backend (a no-op when a backend is chosen)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    """``fig`` laid out and rendered as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def heatmap_png(result: PatchResult, column: str = "normalized") -> bytes:
    """A PNG heatmap of ``column``, diverging around the no-effect value."""
    from matplotlib.colors import TwoSlopeNorm

    plt = _pyplot()

    grid, rows, cols = score_matrix(result, column)
    centre = result.no_effect(column)  # the heatmap's white
    finite = grid[np.isfinite(grid)]
    span = max(float(np.abs(finite - centre).max()) if finite.size else 1.0, 1e-6)
    # At least 5 inches wide, so the title (model, receivers, MLP mode) fits on small models.
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.5 * len(cols)), 1.6 + 0.4 * len(rows)))
    norm = TwoSlopeNorm(vcenter=centre, vmin=centre - span, vmax=centre + span)
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu", norm=norm, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    by_head = any(s.head is not None for s in result.scores)
    ax.set_xlabel("head" if by_head else "position")
    ax.set_ylabel("layer")
    ax.set_title(_title(result), fontsize=8)
    fig.colorbar(im, ax=ax, label=f"{column} ({result.settings.normalization})")
    return _png(fig)


def heatmap_html(result: PatchResult, column: str = "normalized") -> str:
    """A self-contained HTML heatmap; hovering a cell shows its raw and normalised scores."""
    grid, rows, cols = score_matrix(result, column)
    raw, _, _ = score_matrix(result, "logit_diff")
    centre = result.no_effect(column)  # the heatmap's white
    finite = grid[np.isfinite(grid)]
    span = max(float(np.abs(finite - centre).max()) if finite.size else 1.0, 1e-6)

    def colour(v: float) -> str:
        if not math.isfinite(v):
            return "#dddddd"
        a = max(-1.0, min(1.0, (v - centre) / span))
        # Red below the neutral value (the patch hurts), blue above, white at no effect.
        r, g, b = (
            (255, int(255 * (1 - abs(a))), int(255 * (1 - abs(a))))
            if a < 0
            else (
                int(255 * (1 - a)),
                int(255 * (1 - a)),
                255,
            )
        )
        return f"rgb({r},{g},{b})"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for i, layer in enumerate(rows):
        cells = []
        for j, col in enumerate(cols):
            v, ld = grid[i, j], raw[i, j]
            tip = f"layer {layer}, {col}: {column} {v:.4f}, logit diff {ld:.4f}"
            text = "" if not math.isfinite(v) else f"{v:.2f}"
            cells.append(
                f'<td style="background:{colour(v)}" title="{html.escape(tip)}">{text}</td>'
            )
        body.append(f"<tr><th>{html.escape(layer)}</th>{''.join(cells)}</tr>")
    s = result.settings
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(_title(result))}</title>
<style>
body {{ font-family: sans-serif; font-size: 13px; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; font-size: 11px; }}
td:hover {{ outline: 2px solid black; }}
</style></head><body>
<h3>{html.escape(_title(result))}</h3>
<p>clean logit diff {result.clean:.4f}, corrupted {result.corrupted:.4f};
{html.escape(column)} ({html.escape(s.normalization)}); MLPs {html.escape(s.mlps)};
white = no effect, red = the patch lowers the score. Rows: layers.</p>
<table><tr><th>layer</th>{head}</tr>
{chr(10).join(body)}
</table></body></html>
"""


def write_bytes(data: bytes | str, path: Path) -> None:
    """Write rendered output atomically (complete or absent)."""
    with atomic_path(Path(path)) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


# ----------------------------------------------------------------------------- head views


def attention_patterns(
    w: ModelWeights, inputs: PatchInputs, heads: list[tuple[int, int]], row: int = 0
) -> Float[Tensor, "heads t t"]:
    """The clean run's attention patterns of ``heads`` on prompt ``row`` (real tokens only)."""
    length = int(inputs.mask[row].sum())
    tokens = inputs.clean[row : row + 1, :length]
    cache = run_cache(w, tokens, inputs.mask[row : row + 1, :length], inputs.end[row : row + 1])
    out = []
    for layer, head in heads:
        x = cache.resid_pre[layer][:, :, None].expand(-1, -1, w.n_heads, -1)
        _, pattern = attention(w, layer, x, x, x)
        out.append(pattern[0, head])
    return torch.stack(out)


def attention_png(
    w: ModelWeights,
    inputs: PatchInputs,
    heads: list[tuple[int, int]],
    str_tokens: list[str],
    row: int = 0,
) -> bytes:
    """A PNG of each chosen head's attention pattern on one prompt (query rows, key columns)."""
    plt = _pyplot()

    patterns = attention_patterns(w, inputs, heads, row).numpy()
    k = len(heads)
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 3.4), squeeze=False)
    for ax, pat, (layer, head) in zip(axes[0], patterns, heads):
        ax.imshow(pat, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"head {layer}.{head}", fontsize=9)
        ax.set_xticks(range(len(str_tokens)), str_tokens, rotation=90, fontsize=6)
        ax.set_yticks(range(len(str_tokens)), str_tokens, fontsize=6)
    return _png(fig)


def direct_logit_attribution(
    w: ModelWeights, inputs: PatchInputs, cache: RunCache | None = None
) -> Float[Tensor, "layer head"]:
    """Each head's direct effect on logit(IO) - logit(S) at END, averaged over prompts.

    A head's result at END is centred (LayerNorm models) and divided by the final norm's scale
    of the clean run (the norm is frozen, as is usual for DLA), then read through the final
    norm's weight and the unembedding difference of the answers.
    """
    cache = cache or run_cache(w, inputs.clean, inputs.mask, inputs.end)
    rows, end = torch.arange(inputs.n), inputs.end
    final = cache.final_end
    layer_norm = w.norm is Norm.LAYER
    spread = (
        final.var(-1, unbiased=False, keepdim=True)
        if layer_norm
        else final.pow(2).mean(-1, keepdim=True)
    )
    scale = (spread + w.eps).sqrt()  # [n, 1]
    direction = (w.W_U.T[inputs.answers[:, 0]] - w.W_U.T[inputs.answers[:, 1]]) * w.norm_f_w
    out = torch.zeros(len(w.layers), w.n_heads)
    for layer, lw in enumerate(w.layers):
        z = cache.z[layer][rows, end]  # [n, H, e]
        result = torch.einsum("nhe,hed->nhd", z, lw.W_O)
        if layer_norm:
            result = result - result.mean(-1, keepdim=True)
        out[layer] = (result / scale[:, None] * direction[:, None]).sum(-1).mean(0)
    return out


def dla_png(dla: Float[Tensor, "layer head"], title: str = "direct logit attribution") -> bytes:
    """A layer x head heatmap of :func:`direct_logit_attribution`."""
    plt = _pyplot()

    data = dla.numpy()
    span = max(float(np.abs(data).max()), 1e-6)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * data.shape[1], 1.2 + 0.4 * data.shape[0]))
    im = ax.imshow(data, cmap="RdBu", vmin=-span, vmax=span, aspect="auto")
    ax.set_xlabel("head"), ax.set_ylabel("layer"), ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="logit diff (IO - S)")
    return _png(fig)
