"""Views of patching results: layer x head (or layer x position) heatmaps, attention patterns and
direct logit attribution of chosen heads.

Renderers return bytes or text so a caller can build every output before writing any (the CLI
writes nothing when one fails); the ``write_*`` helpers write atomically. HTML is self-contained
(no scripts fetched, no plotting dependency): an inline SVG whose cells show exact values on
hover.

>>> png = heatmap_png(result)                         # doctest: +SKIP
>>> Path("pp.html").write_text(heatmap_html(result))  # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
from jaxtyping import Float
from torch import Tensor

from scrub.atomic import atomic_path
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


def title(result: PatchResult) -> str:
    """What was patched, and the model, corruption, n and seed that produced it."""
    s = result.settings
    where = f" @ {s.sender_position}" if s.sender_position else ""
    mlps = f", MLPs {s.mlps}" if s.experiment == "path" else ""
    seed = f", seed {s.seed}" if s.seed is not None else ""
    corruption = s.corruption or "unstated"
    return (
        f"{s.experiment} patching: {s.senders}{where} -> {s.receivers}{mlps} "
        f"({s.model}, corruption {corruption}, n={s.n}{seed})"
    )


def legend(result: PatchResult, column: str = "normalized") -> str:
    """What the heatmap's colours mean, right also when corrupted scores above clean."""
    toward = "lowers" if result.clean > result.corrupted else "raises"
    return (
        f"clean logit diff {result.clean:.4f}, corrupted {result.corrupted:.4f}; {column} "
        f"({result.settings.normalization}); white = no effect, red = the patch moves the logit "
        f"difference towards the corrupted run's (here it {toward} it), blue = away from it."
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
    warn = "\nWARNING: " + "; ".join(w.split(":")[0] for w in result.warnings())
    ax.set_title(title(result) + (warn if result.warnings() else ""), fontsize=8)
    fig.colorbar(im, ax=ax, label=f"{column} ({result.settings.normalization})")
    return _png(fig)


def heatmap_svg(result: PatchResult, column: str = "normalized") -> str:
    """An SVG heatmap of ``column``, diverging around the no-effect value; each cell's hover text
    gives its normalised score, logit difference and SE."""
    from scrub.pages.svg import heatmap

    grid, rows, cols = score_matrix(result, column)
    raw, _, _ = score_matrix(result, "logit_diff")
    err, _, _ = score_matrix(result, "stderr")
    by_head = any(s.head is not None for s in result.scores)

    def tip(i: int, j: int, v: float) -> str:
        return (
            f"layer {rows[i]}, {'head' if by_head else 'position'} {cols[j]}: {column} {v:.4f}, "
            f"logit diff {raw[i, j]:.4f} +- {err[i, j]:.4f}"
        )

    return heatmap(
        grid,
        rows,
        cols,
        centre=result.no_effect(column),
        tip=tip,
        col_title="head" if by_head else "position",
        col_label_angle=0 if by_head else 60,
    )


def heatmap_fragment(result: PatchResult, column: str = "normalized") -> str:
    """Title, legend, warnings and heatmap of one result, as an HTML fragment (for pages)."""
    warnings = "".join(f'<p class="warn">warning: {html.escape(w)}</p>' for w in result.warnings())
    return (
        f"<h3>{html.escape(title(result))}</h3>{warnings}"
        f'<p class="legend">{html.escape(legend(result, column))}</p>'
        f"{heatmap_svg(result, column)}"
    )


def heatmap_html(result: PatchResult, column: str = "normalized") -> str:
    """A self-contained HTML page of :func:`heatmap_fragment` (no scripts, nothing fetched)."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title(result))}</title>
<style>
body {{ font-family: sans-serif; font-size: 13px; margin: 16px; }}
.warn {{ color: #c92a2a; font-weight: bold; }}
rect:hover {{ stroke: #000; stroke-width: 2; }}
</style></head><body>
{heatmap_fragment(result, column)}
</body></html>
"""


def run_patch_path(run: Path, result: PatchResult) -> Path:
    """Where a run stores a patching result: ``RUN/patching/<experiment>-<senders>-<receivers>-
    <corruption>-n<N>-seed<S>.json`` (the report page shows every file there)."""
    from scrub.runner.store import safe_key

    s = result.settings
    name = f"{s.experiment}-{s.senders}-{s.receivers}-{s.corruption}-n{s.n}-seed{s.seed}"
    return Path(run) / "patching" / f"{safe_key(name)}.json"


def write_bytes(data: bytes | str, path: Path) -> None:
    """Write rendered output atomically (complete or absent)."""
    with atomic_path(Path(path)) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


# ----------------------------------------------------------------------------- head views


def patterns_png(
    patterns: np.ndarray, heads: list[tuple[int, int]], labels: list[str], title: str = ""
) -> bytes:
    """A PNG of attention patterns ``[heads, query, key]`` on one prompt, one panel per head."""
    plt = _pyplot()

    fig, axes = plt.subplots(1, len(heads), figsize=(3.4 * len(heads), 3.6), squeeze=False)
    for ax, pat, (layer, head) in zip(axes[0], patterns, heads):
        ax.imshow(pat, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"head {layer}.{head}", fontsize=9)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
    if title:
        fig.suptitle(title[:110], fontsize=8)
    return _png(fig)


def dla_png(dla: Float[Tensor, "layer head"], title: str = "direct logit attribution") -> bytes:
    """A layer x head heatmap of direct logit attribution (:mod:`scrub.patching.inspect`)."""
    plt = _pyplot()

    data = dla.numpy()
    span = max(float(np.abs(data).max()), 1e-6)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * data.shape[1], 1.2 + 0.4 * data.shape[0]))
    im = ax.imshow(data, cmap="RdBu", vmin=-span, vmax=span, aspect="auto")
    ax.set_xlabel("head"), ax.set_ylabel("layer"), ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="logit diff (IO - S)")
    return _png(fig)
