"""Small, dependency-free SVG charts for self-contained HTML reports.

Reports are opened on operators' laptops and attached to incident tickets, often
offline: no CDN, no JavaScript, just inline SVG that prints well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")
LEVEL_COLOURS = {1: "#dc2626", 2: "#ea580c", 3: "#eab308", 4: "#3b82f6"}


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    x: Sequence[float]
    """Epoch seconds."""
    y: Sequence[float | None]
    colour: str | None = None
    dashed: bool = False


@dataclass(frozen=True, slots=True)
class Span:
    start: float
    end: float
    colour: str
    label: str = ""


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        if v >= lo - step * 1e-9:
            ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:g}k"
    if v == int(v):
        return str(int(v))
    return f"{v:.3g}"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_label: str = "",
    spans: Sequence[Span] = (),
    width: int = 900,
    height: int = 260,
    tz: object | None = None,
    y_min: float | None = None,
) -> str:
    """A multi-series time chart with optional shaded spans (incidents)."""
    pad_l, pad_r, pad_t, pad_b = 64, 16, 28, 40
    xs = [x for s in series for x in s.x]
    ys = [y for s in series for y in s.y if y is not None and math.isfinite(y)]
    if not xs or not ys:
        return f'<p class="muted">{escape(title)}: no data</p>'
    x0, x1 = min(xs), max(xs)
    if x1 <= x0:
        x1 = x0 + 60
    y0 = min(ys) if y_min is None else min(y_min, *ys)
    y1 = max(ys)
    if y1 <= y0:
        y1 = y0 + 1
    y1 += (y1 - y0) * 0.05
    iw, ih = width - pad_l - pad_r, height - pad_t - pad_b

    def px(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * iw

    def py(y: float) -> float:
        return pad_t + ih - (y - y0) / (y1 - y0) * ih

    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{pad_l}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for sp in spans:
        a, b = max(sp.start, x0), min(sp.end, x1)
        if b <= a:
            b = a + (x1 - x0) / iw
        out.append(
            f'<rect x="{px(a):.1f}" y="{pad_t}" width="{max(px(b) - px(a), 1.5):.1f}" '
            f'height="{ih}" fill="{sp.colour}" opacity="0.15"><title>{escape(sp.label)}</title>'
            "</rect>"
        )
    for t in _nice_ticks(y0, y1):
        out.append(
            f'<line x1="{pad_l}" x2="{pad_l + iw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
            'class="grid"/>'
            f'<text x="{pad_l - 6}" y="{py(t) + 4:.1f}" text-anchor="end" class="tick">'
            f"{_fmt(t)}</text>"
        )
    for k in range(6):
        xv = x0 + (x1 - x0) * k / 5
        label = datetime.fromtimestamp(xv, tz=tz).strftime("%m-%d %H:%M")  # type: ignore[arg-type]
        out.append(
            f'<text x="{px(xv):.1f}" y="{height - 14}" text-anchor="middle" class="tick">'
            f"{label}</text>"
        )
    if y_label:
        out.append(
            f'<text x="14" y="{pad_t + ih / 2:.1f}" class="tick" '
            f'transform="rotate(-90 14 {pad_t + ih / 2:.1f})" text-anchor="middle">'
            f"{escape(y_label)}</text>"
        )
    for i, s in enumerate(series):
        colour = s.colour or PALETTE[i % len(PALETTE)]
        path: list[str] = []
        pen_up = True
        for x, y in zip(s.x, s.y, strict=True):
            if y is None or not math.isfinite(y):
                pen_up = True
                continue
            path.append(f"{'M' if pen_up else 'L'}{px(x):.1f},{py(y):.1f}")
            pen_up = False
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        out.append(
            f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>'
        )
        lx = pad_l + 8 + i * 170
        out.append(
            f'<rect x="{lx}" y="{height - 10}" width="10" height="3" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{height - 6}" class="legend">{escape(s.name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    width: int = 900,
    height: int = 240,
    colour: str = PALETTE[0],
) -> str:
    """A vertical bar chart (histograms, per-slice figures)."""
    pad_l, pad_r, pad_t, pad_b = 64, 16, 28, 48
    if not values:
        return f'<p class="muted">{escape(title)}: no data</p>'
    iw, ih = width - pad_l - pad_r, height - pad_t - pad_b
    top = max(*values, 1e-12)
    bw = iw / len(values)
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{pad_l}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    for t in _nice_ticks(0, top):
        y = pad_t + ih - t / top * ih
        out.append(
            f'<line x1="{pad_l}" x2="{pad_l + iw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>'
        )
    step = max(1, len(labels) // 12)
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        h = v / top * ih
        x = pad_l + i * bw
        out.append(
            f'<rect x="{x + 1:.1f}" y="{pad_t + ih - h:.1f}" width="{max(bw - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>{escape(lab)}: {_fmt(v)}</title></rect>'
        )
        if i % step == 0:
            out.append(
                f'<text x="{x + bw / 2:.1f}" y="{height - 28}" text-anchor="middle" '
                f'class="tick">{escape(lab)}</text>'
            )
    out.append("</svg>")
    return "".join(out)
