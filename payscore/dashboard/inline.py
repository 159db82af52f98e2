"""The overview's headline and charts as plain HTML and inline SVG; no I/O, no Streamlit.

Why not Streamlit's metrics and Vega-Lite charts: a first load waits for the browser to load
and run each kind of element the page shows. On a 2-core machine one Vega-Lite chart added
0.46-0.64 s and ten metrics 0.2-0.4 s to a 1 s page (docs/benchmarks.md), so the overview could
not be drawn in 1.5 s. Here the same figures are a few kilobytes of markup the page inserts
as it is; a chart's bin, bar or payment shows its figures as a tooltip (an SVG ``<title>``),
and a figure with help says so by its dotted label.

Every text is escaped; the markup is one line (the page passes it through Markdown, where a
blank line or an indented one would end the HTML block).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from payscore.dashboard.figures import SERIES_COLOURS, SERIES_SHAPES, STATUS_COLOURS, STATUS_SHAPES

GRID = "#DDDDDD"  # gridlines: light enough to sit behind every series
AXIS = "#888888"
FONT = "font-family:inherit;font-size:12px"
MARK = 3.5  # a point's half width in chart units


@dataclass(frozen=True)
class Figure:
    """One headline figure: its label, its value, a grey line under it, a tooltip."""

    label: str
    value: str
    note: str | None = None
    help: str | None = None


def headline_html(figures: Sequence[Figure], columns: int = 5) -> str:
    """The figures in rows of ``columns``: label, value, note. A value never wraps and its
    size follows the page width, so a count such as "10,049,060" fits a fifth of a wide page
    and the rate sits whole on the line under it."""
    cells = "".join(_figure(f) for f in figures)
    grid = (
        f"display:grid;grid-template-columns:repeat({columns},minmax(0,1fr));"
        "gap:0.8rem 1rem;margin:0.25rem 0 1rem 0"
    )
    return f'<div class="ps-headline" style="{grid}">{cells}</div>'


def _figure(f: Figure) -> str:
    tip = f' title="{escape(f.help)}"' if f.help else ""
    note = (
        f'<div class="ps-note" style="font-size:0.875rem;opacity:0.65;white-space:nowrap">'
        f"{escape(f.note)}</div>"
        if f.note
        else ""
    )
    hint = ";text-decoration:underline dotted;cursor:help" if f.help else ""
    return (
        f'<div class="ps-figure"{tip} style="min-width:0">'
        f'<div class="ps-label" style="font-size:0.875rem{hint}">{escape(f.label)}</div>'
        '<div class="ps-value" style="font-size:clamp(1.25rem,2.1vw,2.1rem);line-height:1.3;'
        f'white-space:nowrap">{escape(f.value)}</div>{note}</div>'
    )


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top``, about ``count`` of them (1, 2 or 5 times a
    power of ten apart)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    n = math.ceil(top / step - 1e-9)
    return [k * step for k in range(n + 1)]


def _number(v: float) -> str:
    return f"{v:,.0f}" if v == int(v) else f"{v:,.2f}"


@dataclass(frozen=True)
class _Frame:
    """Plot area inside a chart of ``width`` x ``height`` units, and its y scale."""

    width: int
    height: int
    ticks: list[float]
    left: int = 64
    right: int = 12
    top: int = 10
    bottom: int = 50

    def y(self, v: float) -> float:
        span = self.height - self.top - self.bottom
        return self.height - self.bottom - v / self.ticks[-1] * span

    def x(self, share: float) -> float:
        return self.left + share * (self.width - self.left - self.right)

    def grid(self) -> str:
        """Horizontal gridlines with their values, and the x axis line."""
        out = []
        for t in self.ticks:
            y = self.y(t)
            out.append(
                f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{y:.1f}" '
                f'y2="{y:.1f}" stroke="{GRID}" stroke-width="1"/>'
                f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                f'fill="currentColor" style="{FONT}">{_number(t)}</text>'
            )
        base = self.height - self.bottom
        out.append(
            f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{base}" y2="{base}" '
            f'stroke="{AXIS}" stroke-width="1"/>'
        )
        return "".join(out)

    def x_label(self, x: float, text: str) -> str:
        base = self.height - self.bottom
        return (
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" stroke="{AXIS}"/>'
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle" fill="currentColor" '
            f'style="{FONT}">{escape(text)}</text>'
        )


def _svg(frame: _Frame, label: str, body: str) -> str:
    return (
        f'<div class="ps-chart"><svg viewBox="0 0 {frame.width} {frame.height}" width="100%" '
        f'role="img" aria-label="{escape(label)}" style="display:block;overflow:visible">'
        f"{body}</svg></div>"
    )


def _paint(colour: str, filled: bool) -> str:
    """A point's fill and stroke: filled in ``colour``, or hollow with a ``colour`` outline."""
    if filled:
        return f'fill="{colour}" stroke="{colour}"'
    return f'fill="none" stroke="{colour}" stroke-width="1.5"'


def marker(shape: str, x: float, y: float, colour: str, filled: bool, tip: str) -> str:
    """A point of ``shape`` (circle, square, triangle-up) with its own tooltip, hollow when not
    ``filled``."""
    paint = _paint(colour, filled)
    return f'<path d="{outline(shape, x, y)}" {paint}><title>{escape(tip)}</title></path>'


def _path(points: Sequence[tuple[float, float]]) -> str:
    return "M" + "L".join(f"{x:.1f} {y:.1f}" for x, y in points)


def outline(shape: str, x: float, y: float) -> str:
    """Path commands drawing one point of ``shape`` (circle, square, triangle-up) at x, y."""
    r = MARK
    if shape == "square":
        return f"M{x - r:.1f} {y - r:.1f}h{2 * r}v{2 * r}h{-2 * r}Z"
    if shape == "triangle-up":
        top, side = y - r - 0.8, r + 0.6
        return f"M{x:.1f} {top:.1f}L{x + side:.1f} {y + r:.1f}L{x - side:.1f} {y + r:.1f}Z"
    return f"M{x - r:.1f} {y:.1f}a{r} {r} 0 1 0 {2 * r} 0a{r} {r} 0 1 0 {-2 * r} 0Z"


def points_path(
    shape: str, points: Sequence[tuple[float, float]], colour: str, filled: bool, kind: str
) -> str:
    """Every point of one series as one path (one element, not one per point: the page
    draws a few elements far faster than hundreds); ``kind`` is its class."""
    if not points:
        return ""
    d = "".join(outline(shape, x, y) for x, y in points)
    return f'<path class="{kind}" d="{d}" {_paint(colour, filled)}/>'


def activity_svg(
    buckets: Sequence[datetime],
    series: Mapping[str, Sequence[int]],
    time_format: str,
    *,
    width: int = 480,
    height: int = 270,
) -> str:
    """Payments, reviews and declines per bin (``series``: name in ``SERIES_COLOURS`` -> one
    count per bucket; ``buckets``: each bin's start, UTC) as lines with a point per bin.

    The first and last bins hold part of a period only and would read as a ramp: their points
    are hollow and the line to them is dashed (a dashed line runs under every bin, a solid one
    between whole bins). Shapes tell the series apart without colour; a legend sits under the
    axis. Pointing anywhere over a bin shows its time and every series' count (an invisible
    band per bin carries the tooltip)."""
    n = len(buckets)
    top = max((v for values in series.values() for v in values), default=0)
    frame = _Frame(width, height, nice_ticks(top))
    xs = [frame.x(0.5 if n == 1 else i / (n - 1)) for i in range(n)]
    partial = [n > 1 and i in (0, n - 1) for i in range(n)]
    body = [frame.grid()]
    for i in _label_positions(n):
        body.append(frame.x_label(xs[i], buckets[i].strftime(time_format)))
    for name, values in series.items():
        colour, shape = SERIES_COLOURS[name], SERIES_SHAPES[name]
        points = [(x, frame.y(v)) for x, v in zip(xs, values, strict=True)]
        whole = [p for p, part in zip(points, partial, strict=True) if not part]
        ends = [p for p, part in zip(points, partial, strict=True) if part]
        if n > 1:
            body.append(
                f'<path class="ps-line-dashed" d="{_path(points)}" fill="none" '
                f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="4 3" opacity="0.6"/>'
            )
        if len(whole) > 1:
            body.append(
                f'<path class="ps-line" d="{_path(whole)}" fill="none" stroke="{colour}" '
                'stroke-width="2"/>'
            )
        body.append(points_path(shape, whole, colour, True, "ps-points"))
        body.append(points_path(shape, ends, colour, False, "ps-points-partial"))
    body.append(_legend(frame, list(series)))
    body.extend(_bands(frame, xs, buckets, series, partial))
    return _svg(frame, "Payments and decisions per bin", "".join(body))


def _bands(
    frame: _Frame,
    xs: Sequence[float],
    buckets: Sequence[datetime],
    series: Mapping[str, Sequence[int]],
    partial: Sequence[bool],
) -> list[str]:
    """A transparent band over each bin, from halfway to the bin before to halfway to the one
    after, whose tooltip gives the bin's start and every series' count."""
    left, right = frame.x(0), frame.x(1)
    edges = [left, *((a + b) / 2 for a, b in zip(xs[:-1], xs[1:], strict=True)), right]
    top, bottom = frame.y(frame.ticks[-1]), frame.y(0)
    out = []
    for i, when in enumerate(buckets):
        counts = " · ".join(f"{name} {values[i]:,}" for name, values in series.items())
        tip = f"{when:%Y-%m-%d %H:%M:%S} UTC · {counts}" + (" · partial bin" if partial[i] else "")
        out.append(
            f'<rect class="ps-bin" x="{edges[i]:.1f}" y="{top:.1f}" '
            f'width="{edges[i + 1] - edges[i]:.1f}" height="{bottom - top:.1f}" '
            f'fill="transparent"><title>{escape(tip)}</title></rect>'
        )
    return out


def _label_positions(n: int, most: int = 6) -> list[int]:
    """Up to ``most`` evenly spread bins to label on the time axis, the first among them."""
    if n <= most:
        return list(range(n))
    step = math.ceil((n - 1) / (most - 1))
    return list(range(0, n, step))


def _legend(
    frame: _Frame,
    names: list[str],
    colours: Mapping[str, str] = SERIES_COLOURS,
    shapes: Mapping[str, str] = SERIES_SHAPES,
) -> str:
    y = frame.height - 10
    out, x = [], frame.left
    for name in names:
        out.append(points_path(shapes[name], [(x, y - 4)], colours[name], True, "ps-legend"))
        out.append(
            f'<text x="{x + 8}" y="{y}" fill="currentColor" style="{FONT}">{escape(name)}</text>'
        )
        x += 16 + 7 * len(name) + 18
    return "".join(out)


def histogram_svg(
    starts: Sequence[float], payments: Sequence[int], *, width: int = 480, height: int = 270
) -> str:
    """Decisions per score bin as bars over scores 0 to 1 (``starts``: each bin's lower
    score, all bins the same width); each bar's tooltip gives its scores and count."""
    n = len(starts)
    frame = _Frame(width, height, nice_ticks(max(payments, default=0)))
    body = [frame.grid()]
    for tick in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        body.append(frame.x_label(frame.x(tick), f"{tick:.1f}"))
    body.append(
        f'<text x="{frame.x(0.5):.1f}" y="{frame.height - 10}" text-anchor="middle" '
        f'fill="currentColor" style="{FONT}">score</text>'
    )
    colour, step = SERIES_COLOURS["payments"], 1 / n if n else 1
    base = frame.y(0)
    for start, count in zip(starts, payments, strict=True):
        left, right = frame.x(start), frame.x(start + step)
        y = frame.y(count)
        tip = f"scores {start:.2f}-{start + step:.2f}: {count:,} payments"
        body.append(
            f'<rect x="{left + 0.5:.1f}" y="{y:.1f}" width="{max(right - left - 1, 0.5):.1f}" '
            f'height="{base - y:.1f}" fill="{colour}"><title>{escape(tip)}</title></rect>'
        )
    return _svg(frame, "Score distribution", "".join(body))


def scatter_svg(
    times: Sequence[datetime],
    amounts: Sequence[float],
    statuses: Sequence[str],
    *,
    width: int = 960,
    height: int = 300,
) -> str:
    """A customer's payments: a point per payment over its event time (UTC) and amount, in
    the status palette and shapes, with a legend of the statuses shown; each point's tooltip
    gives its time, amount and status."""
    frame = _Frame(width, height, nice_ticks(max(amounts, default=0)))
    body = [frame.grid()]
    if times:
        first, last = min(times), max(times)
        span = (last - first).total_seconds()

        def x_of(when: datetime) -> float:
            return frame.x(0.5 if span <= 0 else (when - first).total_seconds() / span)

        labelled = [first + (last - first) * (k / 4) for k in range(5)] if span > 0 else [first]
        body.extend(frame.x_label(x_of(when), f"{when:%m-%d %H:%M}") for when in labelled)
        for when, amount, status in zip(times, amounts, statuses, strict=True):
            tip = f"{when:%Y-%m-%d %H:%M:%S} UTC · {amount:,.2f} · {status}"
            colour = STATUS_COLOURS.get(status, AXIS)
            shape = STATUS_SHAPES.get(status, "circle")
            body.append(marker(shape, x_of(when), frame.y(amount), colour, True, tip))
    shown = [s for s in STATUS_COLOURS if s in set(statuses)]
    body.append(_legend(frame, shown, STATUS_COLOURS, STATUS_SHAPES))
    return _svg(frame, "Payments over time by amount", "".join(body))
