"""Where the quality-against-drift chart's parts go, as pure geometry with no Django: data coordinates (KL across,
win rate and its interval up) to the SVG's own coordinates, the axis ticks, and where each point's label goes so
that it stays inside the picture and off the other labels. ``training.review.drift_chart`` says what they say.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The SVG's own coordinates (its viewBox); the page scales it to the width it has.
WIDTH = 640
HEIGHT = 384
LEFT, RIGHT, TOP, BOTTOM = 64, 620, 16, 336
FONT_SIZE = 12
# A generous mean glyph width for the page's sans-serif at FONT_SIZE: a label estimated too wide only moves or
# shortens, one estimated too narrow would run out of the picture.
CHAR_WIDTH = 0.62 * FONT_SIZE
LABEL_GAP = 9  # from the point's centre to its label
LINE_HEIGHT = 15  # labels closer than this overlap
MAX_NAME_CHARS = 30
REFERENCE_LABEL = "50%: no better than the base"
ELLIPSIS = "\u2026"


@dataclass(frozen=True)
class PlotInput:
    """One point in data coordinates: KL per token across, win rate (0–1) and its interval up."""

    key: str
    name: str
    method: str
    kl: float
    rate: float
    low: float
    high: float


@dataclass(frozen=True)
class Tick:
    value: float
    at: float  # SVG coordinate along its axis


@dataclass(frozen=True)
class PlacedPoint:
    key: str
    label: str  # "name · METHOD", the name shortened with an ellipsis where the picture has no room for it
    x: float
    y: float
    y_low: float
    y_high: float
    label_x: float
    label_y: float  # the label's baseline
    anchor: str  # SVG text-anchor: "start" (label right of the point) or "end" (left of it)

    @property
    def label_moved(self) -> bool:
        """The label sits off its point's height (moved off another label): the template draws a leader line."""
        return abs(self.label_y - FONT_SIZE / 3 - self.y) > LINE_HEIGHT / 2

    @property
    def leader_end_x(self) -> float:
        return self.label_x - 2 if self.anchor == "start" else self.label_x + 2

    @property
    def leader_end_y(self) -> float:
        return self.label_y - FONT_SIZE / 3


@dataclass(frozen=True)
class ChartLayout:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    x_max: float
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    reference_y: float
    reference_label: str
    points: list[PlacedPoint]

    @property
    def middle_x(self) -> float:
        return (self.left + self.right) / 2

    @property
    def middle_y(self) -> float:
        return (self.top + self.bottom) / 2


def nice_scale(largest: float) -> tuple[float, float]:
    """(axis end, tick step) for an axis from 0 that shows ``largest`` with a little room: the step is 1, 2, 2.5 or 5
    times a power of ten, 3 to 6 steps in all, and the end the lowest such round number (of two alike, the one with
    fewer ticks). An axis of nothing but zeros still needs a scale: 0–0.01."""
    if not math.isfinite(largest) or largest <= 0:
        return 0.01, 0.0025
    target = largest * 1.05
    power = 10 ** math.floor(math.log10(target))
    best: tuple[float, float] | None = None
    for scale in (power / 10, power):
        for multiple in (1, 2, 2.5, 5):
            step = multiple * scale
            steps = math.ceil(target / step - 1e-9)
            if 3 <= steps <= 6 and (best is None or steps * step < best[0] * (1 - 1e-9)
                                    or (abs(steps * step - best[0]) <= 1e-9 * best[0] and step > best[1])):
                best = (steps * step, step)
    assert best is not None  # some step of the two decades always gives 3 to 6 steps
    return best


def text_width(text: str) -> float:
    return len(text) * CHAR_WIDTH


def _label(name: str, method: str, room: float) -> str:
    """"name · METHOD" in at most ``room`` SVG units, shortening the name (never the method) with an ellipsis."""
    suffix = f" \u00b7 {method}"
    chars = MAX_NAME_CHARS if math.isinf(room) else min(MAX_NAME_CHARS, int((room - text_width(suffix)) / CHAR_WIDTH))
    if len(name) > chars:
        name = name[: max(1, chars - 1)].rstrip() + ELLIPSIS
    return name + suffix


@dataclass(frozen=True)
class _Box:
    x0: float
    x1: float
    middle: float

    def overlaps(self, other: _Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and abs(self.middle - other.middle) < LINE_HEIGHT


def chart_layout(points: Sequence[PlotInput], *, width: int = WIDTH, height: int = HEIGHT) -> ChartLayout:
    """Where everything goes, in SVG units of a ``width`` × ``height`` picture. The win-rate axis is always 0–100%
    (an interval can reach either end); the KL axis runs from 0 to a round number above the largest KL. Each label
    goes right of its point, or left where the right has no room, and moves up or down a line at a time off the
    labels already placed (highest points first) and off the 50% line's own label. Points come back in the order
    given."""
    left, right, top, bottom = LEFT, width - (WIDTH - RIGHT), TOP, height - (HEIGHT - BOTTOM)
    x_max, x_step = nice_scale(max((p.kl for p in points), default=0.0))

    def to_x(kl: float) -> float:
        return left + (right - left) * min(max(kl, 0.0), x_max) / x_max

    def to_y(rate: float) -> float:
        return bottom - (bottom - top) * min(max(rate, 0.0), 1.0)

    reference_y = to_y(0.5)
    # The template draws the 50% line's label right-aligned at its right end, its baseline 5 units above the line.
    placed = [_Box(right - 4 - text_width(REFERENCE_LABEL), right, reference_y - 5 - FONT_SIZE / 3)]
    laid_out: dict[int, PlacedPoint] = {}
    for index in sorted(range(len(points)), key=lambda i: (-points[i].rate, i)):
        point = points[index]
        x, y = to_x(point.kl), to_y(point.rate)
        room_right, room_left = width - 2 - (x + LABEL_GAP), (x - LABEL_GAP) - 2
        whole = text_width(_label(point.name, point.method, math.inf))
        right_side = whole <= room_right or (whole > room_left and room_right >= room_left)
        label = _label(point.name, point.method, room_right if right_side else room_left)
        label_x = x + LABEL_GAP if right_side else x - LABEL_GAP
        x0, x1 = (label_x, label_x + text_width(label)) if right_side else (label_x - text_width(label), label_x)
        middle = y
        for shift in (0, 1, -1, 2, -2, 3, -3, 4, -4):
            candidate = _Box(x0, x1, y + shift * LINE_HEIGHT)
            inside = FONT_SIZE <= candidate.middle <= bottom - FONT_SIZE / 2
            if inside and not any(candidate.overlaps(box) for box in placed):
                middle = candidate.middle
                break
        placed.append(_Box(x0, x1, middle))
        laid_out[index] = PlacedPoint(
            key=point.key, label=label, x=x, y=y, y_low=to_y(point.low), y_high=to_y(point.high),
            label_x=label_x, label_y=middle + FONT_SIZE / 3, anchor="start" if right_side else "end",
        )
    steps = round(x_max / x_step)
    return ChartLayout(
        width=width, height=height, left=left, right=right, top=top, bottom=bottom, x_max=x_max,
        x_ticks=[Tick(value=round(n * x_step, 12), at=to_x(n * x_step)) for n in range(steps + 1)],
        y_ticks=[Tick(value=share, at=to_y(share)) for share in (0.0, 0.25, 0.5, 0.75, 1.0)],
        reference_y=reference_y, reference_label=REFERENCE_LABEL, points=[laid_out[i] for i in range(len(points))],
    )
