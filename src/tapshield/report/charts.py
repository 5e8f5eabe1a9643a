"""Every chart of tapshield's HTML reports: small, dependency-free inline SVG.

Reports are opened on operators' laptops and attached to incident tickets, often
offline: no CDN, no JavaScript, just inline SVG that prints well. The analysis
report draws time series with shaded incidents (:func:`line_chart`); the impact
report draws lost sales against the counterfactual with its band
(:func:`band_timeline`), a paired histogram (DSCR before and after) and
horizontal bars (exposure by region or industry). Values arrive as plain floats
for drawing only; every figure printed in a report comes from exact integers,
never from these coordinates.
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


# -- impact report -------------------------------------------------------------

BLUE, RED, GREY, GREEN, ORANGE = "#2563eb", "#dc2626", "#9ca3af", "#16a34a", "#ea580c"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _num(v: float) -> str:
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def band_timeline(
    labels: Sequence[str],
    counterfactual: Sequence[float],
    actual: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    window: tuple[int, int],
    *,
    title: str,
    width: int = 760,
    height: int = 260,
) -> str:
    """Counterfactual (with band) and actual per hour; the impact window shaded."""
    n = len(labels)
    if n == 0:
        return "<p>No hourly data.</p>"
    left, right, top, bottom = 64, 36, 28, 40
    pw, ph = width - left - right, height - top - bottom
    ymax = max([*high, *counterfactual, *actual, 1.0])
    ticks = _ticks(0.0, ymax)
    ymax = max(ymax, ticks[-1])

    def x(i: float) -> float:
        return left + (pw * i / max(n - 1, 1))

    def y(v: float) -> float:
        return top + ph - ph * v / ymax

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="16" font-size="13" font-weight="600">{escape(title)}</text>']
    a, b = window
    # points sit at the start of their hour; the window runs from the start of its
    # first hour to the end of its last
    shade = max(x(min(b, n - 1)) - x(a), 2)
    parts.append(f'<rect x="{x(a):.1f}" y="{top}" width="{shade:.1f}" height="{ph}" '
                 'fill="#fee2e2"/>')
    for t in ticks:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                     f'stroke="#e5e7eb"/><text x="{left - 6}" y="{y(t) + 4:.1f}" font-size="10" '
                     f'text-anchor="end">{_num(t)}</text>')
    band = [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(high)]
    band += [f"{x(i):.1f},{y(v):.1f}" for i, v in reversed(list(enumerate(low)))]
    parts.append(f'<polygon points="{" ".join(band)}" fill="{BLUE}" fill-opacity="0.15"/>')
    for series, colour, dash in ((counterfactual, BLUE, "5,3"), (actual, RED, "")):
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(series))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2" '
                     + (f'stroke-dasharray="{dash}"' if dash else "") + "/>")
    step = max(1, n // 8)
    for i in range(0, n, step):
        parts.append(f'<text x="{x(i):.1f}" y="{top + ph + 14}" font-size="10" '
                     f'text-anchor="middle">{escape(labels[i])}</text>')
    ly = height - 8
    parts.append(
        f'<line x1="{left}" x2="{left + 18}" y1="{ly - 4}" y2="{ly - 4}" stroke="{BLUE}" '
        f'stroke-width="2" stroke-dasharray="5,3"/><text x="{left + 22}" y="{ly}" font-size="11">'
        'counterfactual (band: confidence interval)</text>'
        f'<line x1="{left + 280}" x2="{left + 298}" y1="{ly - 4}" y2="{ly - 4}" stroke="{RED}" '
        f'stroke-width="2"/><text x="{left + 302}" y="{ly}" font-size="11">actual sales</text>'
        f'<rect x="{left + 400}" y="{ly - 10}" width="14" height="10" fill="#fee2e2"/>'
        f'<text x="{left + 418}" y="{ly}" font-size="11">impact window</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def paired_histogram(
    before: Sequence[float],
    after: Sequence[float],
    *,
    edges: Sequence[float],
    marker: float | None,
    title: str,
    width: int = 760,
    height: int = 240,
) -> str:
    """Counts per bin of two samples side by side, with a vertical marker (the covenant)."""
    nb = len(edges) - 1

    def counts(values: Sequence[float]) -> list[int]:
        out = [0] * nb
        for v in values:
            i = nb - 1 if v >= edges[-1] else max(0, next(
                (k for k in range(nb) if edges[k] <= v < edges[k + 1]), 0))
            out[i] += 1
        return out

    cb, ca = counts(before), counts(after)
    left, right, top, bottom = 48, 12, 28, 42
    pw, ph = width - left - right, height - top - bottom
    ymax = max([*cb, *ca, 1])
    ticks = _ticks(0, ymax, 4)
    ymax = max(ymax, int(ticks[-1]))
    bw = pw / nb
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="16" font-size="13" font-weight="600">{escape(title)}</text>']
    for t in ticks:
        yy = top + ph - ph * t / ymax
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" '
                     f'stroke="#e5e7eb"/><text x="{left - 6}" y="{yy + 4:.1f}" font-size="10" '
                     f'text-anchor="end">{t:g}</text>')
    for k in range(nb):
        for j, (c, colour) in enumerate(((cb[k], GREY), (ca[k], RED))):
            h = ph * c / ymax
            parts.append(f'<rect x="{left + k * bw + j * bw / 2 + 1:.1f}" y="{top + ph - h:.1f}" '
                         f'width="{bw / 2 - 1:.1f}" height="{h:.1f}" fill="{colour}"/>')
        if k % 2 == 0:
            parts.append(f'<text x="{left + k * bw:.1f}" y="{top + ph + 14}" font-size="10" '
                         f'text-anchor="middle">{edges[k]:g}</text>')
    parts.append(f'<text x="{left + pw:.1f}" y="{top + ph + 14}" font-size="10" '
                 f'text-anchor="end">{edges[-1]:g}+</text>')
    if marker is not None and edges[0] <= marker <= edges[-1]:
        mx = left + pw * (marker - edges[0]) / (edges[-1] - edges[0])
        parts.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + ph}" '
                     f'stroke="{ORANGE}" stroke-width="2" stroke-dasharray="4,3"/>')
    ly = height - 8
    parts.append(
        f'<rect x="{left}" y="{ly - 10}" width="14" height="10" fill="{GREY}"/>'
        f'<text x="{left + 18}" y="{ly}" font-size="11">before the outage</text>'
        f'<rect x="{left + 150}" y="{ly - 10}" width="14" height="10" fill="{RED}"/>'
        f'<text x="{left + 168}" y="{ly}" font-size="11">after (stressed)</text>'
        f'<line x1="{left + 300}" x2="{left + 318}" y1="{ly - 4}" y2="{ly - 4}" stroke="{ORANGE}" '
        f'stroke-width="2" stroke-dasharray="4,3"/>'
        f'<text x="{left + 322}" y="{ly}" font-size="11">most common covenant minimum</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def bars(
    labels: Sequence[str], values: Sequence[float], *, title: str, width: int = 760,
    unit: str = "",
) -> str:
    """Horizontal bars, largest first as given; zero bars are left out."""
    kept = [(lab, v) for lab, v in zip(labels, values, strict=True) if v > 0]
    labels, values = [k[0] for k in kept], [k[1] for k in kept]
    n = len(labels)
    if n == 0:
        return ""
    row = 20
    left, right, top = 150, 90, 26
    height = top + n * row + 8
    vmax = max([*values, 1.0])
    pw = width - left - right
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="4" y="16" font-size="13" font-weight="600">{escape(title)}</text>']
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        yy = top + i * row
        w = pw * v / vmax
        parts.append(f'<text x="{left - 6}" y="{yy + 13}" font-size="11" text-anchor="end">'
                     f'{escape(lab)}</text><rect x="{left}" y="{yy + 3}" width="{w:.1f}" '
                     f'height="{row - 6}" fill="{BLUE}"/><text x="{left + w + 4:.1f}" '
                     f'y="{yy + 13}" font-size="11">{_num(v)}{escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)
