"""Bar charts: 1-3 flat-colour bars, one per grid column, integer heights 1..9 on a gridline scale.

Light grey gridlines mark every unit (a darker one at 5) behind the bars, so the value of a bar is
the number of gridline steps its top reaches; a bar never shares an image column with another bar.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from .scenes import BACKGROUND, COLOURS, GRID, OUTLINE, cell_box

MAX_VALUE = 9
GRID_RGB = (215, 215, 215)
GRID_MID_RGB = (160, 160, 160)
AXIS_RGB = (60, 60, 60)


@dataclass(frozen=True)
class ChartGeometry:
    """Where values land in pixels: value ``v`` fills rows ``baseline - v * unit`` .. ``baseline - 1``
    (outline included)."""

    unit: int
    baseline: int


def chart_geometry(size: int) -> ChartGeometry:
    """Pixel scale of a ``size`` px chart: 9 units plus one axis row and a little headroom."""
    unit = max(1, (size - 3) // MAX_VALUE)
    return ChartGeometry(unit=unit, baseline=size - 1)


@dataclass(frozen=True)
class Bar:
    """One bar: its colour, value and grid column."""

    colour: str
    value: int
    col: int


@dataclass(frozen=True)
class BarChart:
    """A bar chart; bars are kept left to right."""

    bars: tuple[Bar, ...]

    def value_of(self, colour: str) -> int:
        """Value of the bar with colour ``colour``."""
        return next(b.value for b in self.bars if b.colour == colour)

    def tallest(self) -> Bar:
        """The bar with the largest value (values are distinct)."""
        return max(self.bars, key=lambda b: b.value)

    def shortest(self) -> Bar:
        """The bar with the smallest value."""
        return min(self.bars, key=lambda b: b.value)

    def render(self, size: int) -> Image.Image:
        """Draw the chart as a ``size`` x ``size`` RGB image."""
        geo = chart_geometry(size)
        img = Image.new("RGB", (size, size), BACKGROUND)
        draw = ImageDraw.Draw(img)
        for v in range(1, MAX_VALUE + 1):
            y = geo.baseline - v * geo.unit
            draw.line((0, y, size - 1, y), fill=GRID_MID_RGB if v == 5 else GRID_RGB)
        draw.line((0, geo.baseline, size - 1, geo.baseline), fill=AXIS_RGB)
        for bar in self.bars:
            x0, _, x1, _ = cell_box(0, bar.col, size)
            pad = max(1, (x1 - x0) // 8)
            top = geo.baseline - bar.value * geo.unit
            # Outlined like the shapes, so a bar's top edge looks the same whatever its colour.
            draw.rectangle((x0 + pad, top, x1 - pad - 1, geo.baseline - 1), fill=COLOURS[bar.colour], outline=OUTLINE)
        return img


def sample_chart(rng: random.Random, n_bars: int | None = None, values: list[int] | None = None) -> BarChart:
    """Random chart with distinct colours and distinct values; ``values`` fixes them left to right.

    Two-bar charts leave one random column empty so the model cannot rely on fixed bar positions.
    """
    if values is not None:
        n_bars = len(values)
    n = n_bars if n_bars is not None else rng.choice((2, 3))
    if values is None:
        values = rng.sample(range(1, MAX_VALUE + 1), n)
    cols = sorted(rng.sample(range(GRID), n))
    colours = rng.sample(list(COLOURS), n)
    return BarChart(tuple(Bar(c, v, col) for c, v, col in zip(colours, values, cols)))
