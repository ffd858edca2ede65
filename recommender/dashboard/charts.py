"""Server-rendered SVG line charts for the admin dashboard.

No JavaScript and nothing fetched from elsewhere: the markup is inline in the
page, scales with its container (viewBox), follows the admin's light or dark
theme through ``currentColor`` and CSS, and shows each point's value as a
native tooltip (<title>).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Okabe–Ito colours: distinguishable with the common colour-vision deficiencies.
# There are only so many: a chart draws at most len(PALETTE) coloured lines
# (the dashboard groups older policy versions into one "earlier" line), so no
# two lines ever share a colour.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7f6d00", "#882255")
FALLBACK_COLOUR = "#8a8a8a"

WIDTH = 640
HEIGHT = 260
MARGIN_LEFT = 58
MARGIN_RIGHT = 16
MARGIN_TOP = 34
MARGIN_BOTTOM = 30
FONT_SIZE = 11
# Average glyph width of the admin's sans-serif at FONT_SIZE, to lay out the
# legend without measuring text (there is no browser on the server).
CHAR_WIDTH = 6.4
MAX_MARKERS = 400

_TIME_STEPS = (
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=1),
    timedelta(days=2),
    timedelta(days=7),
    timedelta(days=14),
    timedelta(days=30),
)


@dataclass(frozen=True)
class Line:
    """One series. Points are (time, value) in time order; consecutive points
    further apart than the chart's ``max_gap`` are not joined."""

    label: str
    points: Sequence[tuple[datetime, float]]
    colour: str = PALETTE[0]
    dashed: bool = False


def series_colour(index: int, *, fallback: bool = False) -> str:
    return FALLBACK_COLOUR if fallback else PALETTE[index % len(PALETTE)]


def nice_ticks(low: float, high: float, *, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw_step = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step)
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    n = round((last - first) / step)
    # Rounding to the step's precision keeps labels like 0.30000000000000004 out.
    digits = max(0, -math.floor(math.log10(step)) + 2)
    return [round(first + i * step, digits) for i in range(n + 1)]


def time_ticks(start: datetime, end: datetime, *, max_ticks: int = 7) -> list[datetime]:
    """Tick times on local hour or midnight boundaries, at most ``max_ticks``."""
    span = end - start
    step = next((s for s in _TIME_STEPS if span / s <= max_ticks), _TIME_STEPS[-1])
    local = timezone.localtime(start)
    if step >= timedelta(days=1):
        tick = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if tick < local:
            tick += timedelta(days=1)
    else:
        hours = int(step.total_seconds() // 3600)
        tick = local.replace(minute=0, second=0, microsecond=0)
        while tick < local or tick.hour % hours:
            tick += timedelta(hours=1)
    ticks = []
    while tick <= end:
        ticks.append(tick)
        tick = timezone.localtime(tick + step)
        if step >= timedelta(days=1):
            # Re-anchor on midnight in case a DST change shifted the offset.
            tick = tick.replace(hour=0, minute=0)
    return ticks


def time_label(moment: datetime, *, step_days: bool) -> str:
    local = timezone.localtime(moment)
    if step_days or (local.hour == 0 and local.minute == 0):
        return f"{local:%b} {local.day}"
    return f"{local:%H:%M}"


@dataclass(frozen=True)
class _Frame:
    """Where a chart's plot area lies, and how time and value map into it."""

    width: int
    height: int
    x_start: datetime
    x_end: datetime
    y_low: float
    y_high: float

    @property
    def plot_w(self) -> float:
        return self.width - MARGIN_LEFT - MARGIN_RIGHT

    @property
    def axis_y(self) -> float:
        return self.height - MARGIN_BOTTOM

    def x_of(self, moment: datetime) -> float:
        span_s = (self.x_end - self.x_start).total_seconds()
        return MARGIN_LEFT + self.plot_w * (moment - self.x_start).total_seconds() / span_s

    def y_of(self, value: float) -> float:
        plot_h = self.height - MARGIN_TOP - MARGIN_BOTTOM
        span = (self.y_high - self.y_low) or 1.0
        return MARGIN_TOP + plot_h * (1 - (value - self.y_low) / span)


def line_chart(
    *,
    title: str,
    lines: Sequence[Line],
    x_start: datetime,
    x_end: datetime,
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
    include_zero: bool = True,
    max_gap: timedelta | None = None,
    point_label: Callable[[datetime], str] | None = None,
    empty_text: str = "No data in this range.",
    markers: Sequence[tuple[datetime, str]] = (),
    width: int = WIDTH,
    height: int = HEIGHT,
) -> SafeString:
    """An SVG line chart over time, with a legend, y grid and time axis.
    ``markers`` are labelled moments (a new version going live) drawn as thin
    vertical lines."""
    values = [v for line in lines for _, v in line.points if math.isfinite(v)]
    out: list[str] = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'font-size="{FONT_SIZE}" fill="currentColor">',
        f"<title>{escape(title)}</title>",
    ]
    if not values or x_end <= x_start:
        out.append(
            f'<text class="chart-empty" x="{width / 2:.0f}" y="{height / 2:.0f}" '
            f'text-anchor="middle" opacity="0.7">{escape(empty_text)}</text></svg>'
        )
        return mark_safe("".join(out))

    low, high = min(values), max(values)
    if include_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    ticks = nice_ticks(low, high)
    frame = _Frame(width, height, x_start, x_end, ticks[0], ticks[-1])
    out += _y_grid(frame, ticks, y_format)
    out += _time_axis(frame)
    out += _markers(frame, markers)
    describe = point_label or (lambda m: f"{timezone.localtime(m):%b %d %H:%M}")
    n_points = sum(len(line.points) for line in lines)
    for line in lines:
        out += _series(frame, line, max_gap, describe, y_format, dots=n_points <= MAX_MARKERS)
    out += _legend(frame, lines)
    out.append("</svg>")
    return mark_safe("".join(out))


def _y_grid(frame: _Frame, ticks: list[float], y_format: Callable[[float], str]) -> list[str]:
    """Horizontal grid lines at the value ticks, labelled on the left."""
    out = []
    for tick in ticks:
        y = frame.y_of(tick)
        out.append(
            f'<line class="chart-grid" x1="{MARGIN_LEFT}" x2="{frame.width - MARGIN_RIGHT}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="currentColor" stroke-opacity="0.15"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{y + 3.5:.1f}" text-anchor="end" opacity="0.75">'
            f"{escape(y_format(tick))}</text>"
        )
    return out


def _time_axis(frame: _Frame) -> list[str]:
    """The time axis with its ticks, labels kept inside the picture at the edges."""
    axis_y = frame.axis_y
    out = [
        f'<line class="chart-axis" x1="{MARGIN_LEFT}" x2="{frame.width - MARGIN_RIGHT}" '
        f'y1="{axis_y}" y2="{axis_y}" stroke="currentColor" stroke-opacity="0.4"/>'
    ]
    x_ticks = time_ticks(frame.x_start, frame.x_end)
    step_days = len(x_ticks) > 1 and (x_ticks[1] - x_ticks[0]) >= timedelta(days=1)
    for tick in x_ticks:
        x = frame.x_of(tick)
        label = time_label(tick, step_days=step_days)
        half = CHAR_WIDTH * len(label) / 2
        anchor = "middle"
        if x + half > frame.width - 2:
            anchor = "end"
        elif x - half < 2:
            anchor = "start"
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_y}" y2="{axis_y + 4}" '
            f'stroke="currentColor" stroke-opacity="0.4"/>'
            f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="{anchor}" opacity="0.75">'
            f"{escape(label)}</text>"
        )
    return out


def _markers(frame: _Frame, markers: Sequence[tuple[datetime, str]]) -> list[str]:
    """Thin vertical lines, labelled unless too close to the previous label."""
    out = []
    last_label_x = float("-inf")
    for moment, label in markers:
        if not frame.x_start <= moment <= frame.x_end:
            continue
        x = frame.x_of(moment)
        out.append(
            f'<g class="chart-marker" data-label="{escape(label)}"><line x1="{x:.1f}" '
            f'x2="{x:.1f}" y1="{MARGIN_TOP}" y2="{frame.axis_y}" stroke="currentColor" '
            f'stroke-opacity="0.35" stroke-dasharray="2 3"/>'
        )
        if x - last_label_x >= CHAR_WIDTH * (len(label) + 1):
            out.append(
                f'<text x="{x + 3:.1f}" y="{MARGIN_TOP + 10}" opacity="0.7">{escape(label)}</text>'
            )
            last_label_x = x
        moment_text = f"{timezone.localtime(moment):%b %d %H:%M}"
        out.append(f"<title>{escape(label)} · {escape(moment_text)}</title></g>")
    return out


def _segments(
    frame: _Frame, line: Line, max_gap: timedelta | None
) -> list[list[tuple[float, float]]]:
    """The line's points in plot coordinates, split where it has no data for
    longer than ``max_gap`` or a value is not finite."""
    segments: list[list[tuple[float, float]]] = []
    previous: datetime | None = None
    for moment, value in line.points:
        if not math.isfinite(value):
            previous = None
            continue
        if previous is None or (max_gap is not None and moment - previous > max_gap):
            segments.append([])
        segments[-1].append((frame.x_of(moment), frame.y_of(value)))
        previous = moment
    return segments


def _series(
    frame: _Frame,
    line: Line,
    max_gap: timedelta | None,
    describe: Callable[[datetime], str],
    y_format: Callable[[float], str],
    *,
    dots: bool,
) -> list[str]:
    """One series: its polylines and, when the chart is not too dense, a dot
    per point with its value as a tooltip."""
    # Dashed lines (the fallback) are a reference: drawn lighter and thinner.
    style = (
        ' stroke-dasharray="5 4" stroke-width="1.5" stroke-opacity="0.85"'
        if line.dashed
        else ' stroke-width="2"'
    )
    out = [f'<g class="chart-series" data-label="{escape(line.label)}">']
    for segment in _segments(frame, line, max_gap):
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
        out.append(
            f'<polyline points="{coords}" fill="none" stroke="{line.colour}" '
            f'stroke-linejoin="round" stroke-linecap="round"{style}/>'
        )
    if dots:
        for moment, value in line.points:
            if math.isfinite(value):
                out.append(
                    f'<circle cx="{frame.x_of(moment):.1f}" cy="{frame.y_of(value):.1f}" r="2.6" '
                    f'fill="{line.colour}"><title>{escape(line.label)} · '
                    f"{escape(describe(moment))}: {escape(y_format(value))}</title></circle>"
                )
    out.append("</g>")
    return out


def _legend(frame: _Frame, lines: Sequence[Line]) -> list[str]:
    """The legend along the top, wrapping onto a second row if needed."""
    out = []
    x, y = MARGIN_LEFT, 14.0
    for line in lines:
        item_w = 26 + CHAR_WIDTH * len(line.label) + 14
        if x + item_w > frame.width - MARGIN_RIGHT and x > MARGIN_LEFT:
            x, y = MARGIN_LEFT, y + 15
        dash = ' stroke-dasharray="5 4"' if line.dashed else ""
        out.append(
            f'<g class="chart-legend"><line x1="{x}" x2="{x + 20}" y1="{y - 3.5:.1f}" '
            f'y2="{y - 3.5:.1f}" stroke="{line.colour}" stroke-width="3"{dash}/>'
            f'<text x="{x + 26}" y="{y:.1f}">{escape(line.label)}</text></g>'
        )
        x += item_w
    return out
