"""Document images: a short code of capital letters drawn with a built-in 5x7 bitmap font.

Each character fills its own grid cell of the middle row, so at 48 px one image token sees exactly one
character (glyph pixels are 2x2 there). The font is drawn with rectangles rather than a system font,
which keeps images identical on every machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from .scenes import BACKGROUND, GRID, cell_box

INK = (20, 20, 20)
CODE_LENGTH = GRID
# 5x7 glyphs; '#' is ink.
GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".####", "#....", "#....", "#....", "#....", "#....", ".####"),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "N": ("#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", "#...#"),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
}
ALPHABET: tuple[str, ...] = tuple(GLYPHS)


@dataclass(frozen=True)
class DocPage:
    """A white page with ``text`` written one character per cell along the middle row."""

    text: str

    def render(self, size: int) -> Image.Image:
        """Draw the page as a ``size`` x ``size`` RGB image."""
        img = Image.new("RGB", (size, size), BACKGROUND)
        draw = ImageDraw.Draw(img)
        for col, ch in enumerate(self.text):
            x0, y0, x1, y1 = cell_box(GRID // 2, col, size)
            glyph = GLYPHS[ch]
            scale = max(1, min((x1 - x0) // 7, (y1 - y0) // 8))
            gx = x0 + (x1 - x0 - 5 * scale) // 2
            gy = y0 + (y1 - y0 - 7 * scale) // 2
            for r, line in enumerate(glyph):
                for c, px in enumerate(line):
                    if px == "#":
                        draw.rectangle(
                            (gx + c * scale, gy + r * scale, gx + (c + 1) * scale - 1, gy + (r + 1) * scale - 1),
                            fill=INK,
                        )
        return img


def sample_code(rng: random.Random, length: int = CODE_LENGTH) -> str:
    """Random code of ``length`` letters from :data:`ALPHABET` (repeats allowed)."""
    return "".join(rng.choice(ALPHABET) for _ in range(length))
