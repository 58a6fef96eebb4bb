"""Shape scenes: a flat background with a few flat-colour shapes, one per cell of a 3x3 grid.

The grid matches the tiny VLM's vision tower (48 px images, 16 px patches), so each image token sees
at most one whole object and nothing straddles two tokens. Shapes have no jitter, outline or
antialiasing: every pixel of a shape has exactly its palette colour, which keeps the task crisp for a
tiny model and lets tests read the image back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

GRID = 3
BACKGROUND = (255, 255, 255)
OUTLINE = (20, 20, 20)
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 90, 220),
    "yellow": (235, 190, 20),
    "purple": (145, 60, 185),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
# Names of the grid's rows, top to bottom.
ROWS: tuple[str, ...] = ("top", "middle", "bottom")
# Row-major names of the 9 cells.
POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)


def plural(kind: str) -> str:
    """Plural of a shape kind (``crosses``, ``circles``)."""
    return kind + "es" if kind.endswith("s") else kind + "s"


def cell_box(row: int, col: int, size: int) -> tuple[int, int, int, int]:
    """Pixel box ``(x0, y0, x1, y1)`` (exclusive end) of grid cell (row, col) in a ``size`` px image."""
    edges = [round(i * size / GRID) for i in range(GRID + 1)]
    return edges[col], edges[row], edges[col + 1], edges[row + 1]


@dataclass(frozen=True)
class Shape:
    """One flat-colour shape filling grid cell (row, col)."""

    shape: str
    colour: str
    row: int
    col: int

    @property
    def name(self) -> str:
        """Noun phrase without article, e.g. ``red circle``."""
        return f"{self.colour} {self.shape}"

    @property
    def position(self) -> str:
        """Name of the cell, e.g. ``top left``."""
        return POSITIONS[self.row * GRID + self.col]


@dataclass(frozen=True)
class Scene:
    """A set of shapes in distinct cells with distinct (colour, shape) pairs, kept in reading order."""

    shapes: tuple[Shape, ...]

    def colours(self) -> set[str]:
        """Colours present."""
        return {s.colour for s in self.shapes}

    def shape_kinds(self) -> set[str]:
        """Shape kinds present."""
        return {s.shape for s in self.shapes}

    def with_shape(self, kind: str) -> list[Shape]:
        """Shapes of kind ``kind``."""
        return [s for s in self.shapes if s.shape == kind]

    def with_colour(self, colour: str) -> list[Shape]:
        """Shapes of colour ``colour``."""
        return [s for s in self.shapes if s.colour == colour]

    def render(self, size: int) -> Image.Image:
        """Draw the scene as a ``size`` x ``size`` RGB image."""
        img = Image.new("RGB", (size, size), BACKGROUND)
        draw = ImageDraw.Draw(img)
        for s in self.shapes:
            draw_shape(draw, s.shape, COLOURS[s.colour], cell_box(s.row, s.col, size))
        return img


def draw_shape(
    draw: ImageDraw.ImageDraw, kind: str, rgb: tuple[int, int, int], box: tuple[int, int, int, int]
) -> None:
    """Draw one shape inside a cell box, leaving a thin margin so neighbours never touch.

    Every shape gets a dark outline. Without it the silhouette's contrast with the background depends on
    the fill colour, so the tiny vision tower has to learn each shape once per colour: a base pretrained
    for minutes recognised letters (always dark ink) perfectly but shapes at chance.
    """
    x0, y0, x1, y1 = box
    margin = max(1, (x1 - x0) // 10)
    width = max(1, (x1 - x0) // 16)
    x0, y0, x1, y1 = x0 + margin, y0 + margin, x1 - margin - 1, y1 - margin - 1  # PIL boxes are inclusive
    style = {"fill": rgb, "outline": OUTLINE, "width": width}
    if kind == "circle":
        draw.ellipse((x0, y0, x1, y1), **style)
    elif kind == "square":
        draw.rectangle((x0, y0, x1, y1), **style)
    elif kind == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], **style)
    elif kind == "cross":
        # Arms 40% of the box wide, so some fill colour remains inside the outline at 14 px.
        w = x1 - x0 + 1
        arm = max(3, round(w * 0.4))
        a0, b0 = x0 + (w - arm) // 2, y0 + (w - arm) // 2
        a1, b1 = a0 + arm - 1, b0 + arm - 1
        points = [(a0, y0), (a1, y0), (a1, b0), (x1, b0), (x1, b1), (a1, b1)]
        points += [(a1, y1), (a0, y1), (a0, b1), (x0, b1), (x0, b0), (a0, b0)]
        draw.polygon(points, **style)
    else:
        raise ValueError(f"unknown shape kind {kind!r}")


def sample_scene(
    rng: random.Random,
    n_min: int = 1,
    n_max: int = 3,
    n: int | None = None,
    colours: tuple[str, ...] | None = None,
    shapes: tuple[str, ...] | None = None,
) -> Scene:
    """Random scene of ``n`` (or ``n_min``..``n_max``) shapes in distinct cells with distinct (colour, shape).

    ``colours`` / ``shapes`` restrict the vocabulary drawn from (used by rules that need an attribute absent).
    """
    colours = colours or tuple(COLOURS)
    shapes = shapes or SHAPES
    count = n if n is not None else rng.randint(n_min, n_max)
    cells = sorted(rng.sample(range(GRID * GRID), count))
    combos = rng.sample([(c, k) for c in colours for k in shapes], count)
    return Scene(tuple(Shape(k, c, cell // GRID, cell % GRID) for cell, (c, k) in zip(cells, combos)))
