"""A contact sheet: a PNG grid showing a few test samples of every task of a written world."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from routelora import io

PANEL_W = 240
LABEL_W = 120
IMAGE_PX = 144
PAD = 8
LINE_H = 14
WRAP = 36


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow without FreeType offers only the fixed bitmap font
        return ImageFont.load_default()


def _read_samples(task_dir: Path, n: int) -> list[dict]:
    out = []
    with open(task_dir / "test.jsonl") as f:
        for line in f:
            if len(out) == n:
                break
            out.append(json.loads(line))
    return out


def _text_lines(record: dict) -> list[str]:
    question = record["conversations"][0]["value"].removeprefix("<image>\n")
    lines = []
    for part in question.split("\n"):
        lines.extend(textwrap.wrap(part, WRAP) or [""])
    lines.extend(textwrap.wrap("=> " + record["conversations"][1]["value"], WRAP))
    return lines


def contact_sheet(world_dir: str | Path, out_png: str | Path, per_task: int = 4) -> Path:
    """Render the first ``per_task`` test samples of every task into one PNG at ``out_png``.

    Images are enlarged with nearest-neighbour resampling so single pixels stay visible; each has its
    question and answer printed under it; text-only samples show a grey placeholder.
    """
    world_dir, out_png = Path(world_dir), Path(out_png)
    info = json.loads((world_dir / "world.json").read_text())
    font = _font()
    rows = []
    for name, task in info["tasks"].items():
        records = _read_samples(world_dir / name, per_task)
        height = IMAGE_PX + PAD * 3 + LINE_H * max((len(_text_lines(r)) for r in records), default=0)
        rows.append((name, task["kind"], records, height))
    width = LABEL_W + per_task * PANEL_W
    sheet = Image.new("RGB", (width, sum(r[3] for r in rows) + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    y = PAD
    for name, kind, records, height in rows:
        draw.text((PAD, y), name, fill="black", font=font)
        draw.text((PAD, y + LINE_H), f"({kind})", fill="gray", font=font)
        for j, record in enumerate(records):
            x = LABEL_W + j * PANEL_W
            if "image" in record:
                img = Image.open(world_dir / name / record["image"]).convert("RGB")
                sheet.paste(img.resize((IMAGE_PX, IMAGE_PX), Image.Resampling.NEAREST), (x, y))
                draw.rectangle((x - 1, y - 1, x + IMAGE_PX, y + IMAGE_PX), outline="gray")
            else:
                draw.rectangle((x, y, x + IMAGE_PX - 1, y + IMAGE_PX - 1), fill=(230, 230, 230))
                draw.text((x + 40, y + IMAGE_PX // 2 - 6), "text only", fill="gray", font=font)
            for k, line in enumerate(_text_lines(record)):
                draw.text((x, y + IMAGE_PX + PAD + k * LINE_H), line, fill="black", font=font)
        draw.line((0, y + height - PAD // 2, width, y + height - PAD // 2), fill=(200, 200, 200))
        y += height
    return io.write_with(out_png, lambda path: sheet.save(path, format="PNG"))
