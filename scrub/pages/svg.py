"""Small hand-written SVG charts for self-contained HTML pages: no scripts, no fonts fetched.

Every mark carries a ``<title>``, which browsers show on hover, so exact values are one pointer
away without any JavaScript. Functions return SVG text; callers embed it in HTML.

>>> svg = heatmap([[0.0, 1.0]], ["0"], ["0", "1"], centre=0.0, tip=lambda i, j, v: f"{v}")
>>> svg.startswith("<svg") and svg.count("<rect") == 2
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

import numpy as np

BLUE, RED, WHITE = (33, 102, 172), (178, 24, 43), (255, 255, 255)


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> str:
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b))
    return f"rgb({r},{g},{bl})"


def diverging(v: float, centre: float, span: float) -> str:
    """White at ``centre``, red below it, blue above it, saturated at ``centre -+ span``."""
    if not math.isfinite(v):
        return "#dddddd"
    t = max(-1.0, min(1.0, (v - centre) / span)) if span > 0 else 0.0
    return _mix(WHITE, RED if t < 0 else BLUE, abs(t))


def sequential(v: float, lo: float = 0.0, hi: float = 1.0) -> str:
    """White at ``lo`` to blue at ``hi``."""
    if not math.isfinite(v):
        return "#dddddd"
    return _mix(WHITE, BLUE, max(0.0, min(1.0, (v - lo) / (hi - lo or 1.0))))


def _text(x: float, y: float, s: str, *, size: int = 11, anchor: str = "middle", extra: str = ""):
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {extra}>'
        f"{escape(s)}</text>"
    )


def heatmap(
    grid: Sequence[Sequence[float]],
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    centre: float | None = None,
    span: float | None = None,
    tip: Callable[[int, int, float], str],
    row_title: str = "layer",
    col_title: str = "head",
    cell: int = 30,
    show_values: bool = True,
    col_label_angle: int = 0,
) -> str:
    """A grid of cells, diverging around ``centre`` (or white-to-blue over 0..1 when ``centre``
    is None); ``tip(i, j, value)`` is each cell's hover text."""
    data = np.asarray(grid, dtype=float)
    finite = data[np.isfinite(data)]
    if centre is not None and span is None:
        span = float(np.abs(finite - centre).max()) if finite.size else 1.0
        span = max(span, 1e-9)
    left = 16 + 7 * max([len(r) for r in rows] + [len(row_title)])
    top = 34 + (6 * max(map(len, cols)) if col_label_angle else 0)
    width, height = left + cell * len(cols) + 10, top + cell * len(rows) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif">',
        _text(left + cell * len(cols) / 2, 12, col_title, size=11),
        _text(4, top - 6, row_title, size=11, anchor="start"),
    ]
    for j, c in enumerate(cols):
        x = left + cell * j + cell / 2
        if col_label_angle:
            rot = f'transform="rotate({-col_label_angle} {x:.1f} {top - 4})"'
            out.append(_text(x, top - 4, c, size=9, anchor="start", extra=rot))
        else:
            out.append(_text(x, top - 6, c, size=10))
    for i, r in enumerate(rows):
        y = top + cell * i
        out.append(_text(left - 6, y + cell / 2 + 4, r, size=10, anchor="end"))
        for j in range(len(cols)):
            v = float(data[i, j])
            fill = diverging(v, centre, span or 1.0) if centre is not None else sequential(v)
            x = left + cell * j
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" '
                f'stroke="#ffffff"><title>{escape(tip(i, j, v))}</title></rect>'
            )
            if show_values and math.isfinite(v) and cell >= 24:
                dark = centre is not None and abs(v - centre) > 0.6 * (span or 1.0)
                colour = "#ffffff" if dark else "#222222"
                out.append(
                    _text(
                        x + cell / 2,
                        y + cell / 2 + 3,
                        f"{v:.2f}",
                        size=8,
                        extra=f'fill="{colour}" pointer-events="none"',
                    )
                )
    out.append("</svg>")
    return "".join(out)


def histogram(
    values: Sequence[float],
    *,
    lo: float,
    hi: float,
    bins: int = 30,
    marks: Mapping[str, float] | None = None,
    x_label: str = "",
    width: int = 360,
    height: int = 150,
    colour: str = "#4c6ef5",
) -> str:
    """Counts of ``values`` in ``bins`` equal bins over [lo, hi]; values outside are counted in
    the end bins and said so in their hover text. ``marks`` draw labelled vertical lines."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    edges = np.linspace(lo, hi, bins + 1)
    counts = np.histogram(np.clip(v, lo, hi), bins=edges)[0] if v.size else np.zeros(bins, int)
    below, above = int((v < lo).sum()), int((v > hi).sum())
    pad_l, pad_b, pad_t = 34, 30, 8
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    top = max(int(counts.max()) if counts.size else 0, 1)

    def xpos(x: float) -> float:
        return pad_l + (x - lo) / (hi - lo) * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif">',
        f'<rect x="{pad_l}" y="{pad_t}" width="{plot_w}" height="{plot_h}" fill="#f8f9fa"/>',
    ]
    bw = plot_w / bins
    for k, c in enumerate(counts):
        h = plot_h * c / top
        tip = f"[{edges[k]:.3f}, {edges[k + 1]:.3f}): {c} example(s)"
        if k == 0 and below:
            tip += f", {below} of them below {lo:g}"
        if k == bins - 1 and above:
            tip += f", {above} of them above {hi:g}"
        out.append(
            f'<rect x="{pad_l + k * bw:.1f}" y="{pad_t + plot_h - h:.1f}" width="{bw - 1:.1f}" '
            f'height="{max(h, 0):.1f}" fill="{colour}"><title>{escape(tip)}</title></rect>'
        )
    for k, (name, x) in enumerate((marks or {}).items()):
        if x is not None and math.isfinite(x) and lo <= x <= hi:
            px = xpos(x)
            out.append(
                f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{pad_t}" y2="{pad_t + plot_h}" '
                f'stroke="#222" stroke-dasharray="3,2"><title>{escape(f"{name} {x:.3f}")}'
                f"</title></line>"
            )
            out.append(_text(px + 2, pad_t + 10 + 11 * k, name, size=9, anchor="start"))
    for x in (lo, (lo + hi) / 2, hi):
        out.append(_text(xpos(x), pad_t + plot_h + 12, f"{x:g}", size=9))
    out.append(_text(pad_l + plot_w / 2, height - 4, x_label, size=10))
    out.append(_text(pad_l - 4, pad_t + 8, str(top), size=9, anchor="end"))
    out.append(_text(pad_l - 4, pad_t + plot_h, "0", size=9, anchor="end"))
    out.append("</svg>")
    return "".join(out)


def interval(
    value: float, se: float | None, *, lo: float, hi: float, width: int = 160, height: int = 18
) -> str:
    """A dot at ``value`` with a bar over its 95% interval (value -+ 1.96 SE) on [lo, hi]."""

    def xpos(x: float) -> float:
        return 4 + (min(max(x, lo), hi) - lo) / (hi - lo) * (width - 8)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
        f'<line x1="4" x2="{width - 4}" y1="{height / 2}" y2="{height / 2}" stroke="#dee2e6"/>',
    ]
    for ref in (0.0, 1.0):
        if lo <= ref <= hi:
            out.append(
                f'<line x1="{xpos(ref):.1f}" x2="{xpos(ref):.1f}" y1="2" y2="{height - 2}" '
                f'stroke="#adb5bd"/>'
            )
    if value is None or not math.isfinite(value):
        out.append("</svg>")
        return "".join(out)
    tip = f"recovered {value:.3f}"
    if se is not None and math.isfinite(se):
        a, b = value - 1.96 * se, value + 1.96 * se
        tip += f" +- {se:.3f} (95% CI {a:.3f} to {b:.3f})"
        out.append(
            f'<line x1="{xpos(a):.1f}" x2="{xpos(b):.1f}" y1="{height / 2}" y2="{height / 2}" '
            f'stroke="#1c7ed6" stroke-width="3"><title>{escape(tip)}</title></line>'
        )
    out.append(
        f'<circle cx="{xpos(value):.1f}" cy="{height / 2}" r="4" fill="#1c7ed6">'
        f"<title>{escape(tip)}</title></circle></svg>"
    )
    return "".join(out)
