"""Two small image tasks on disk (LLaVA JSONL + PNG + task YAML), shared by the expert and method tests."""

import json
import struct
import zlib

from PIL import Image

from routelora.data.task import TaskConfig, load_task

CORPUS = ["What colour is the square? red blue", "What shape is it? circle square"] * 20
"""Tokenizer corpus covering both tasks' words."""


def write_task(
    root, name: str, question: str, answers: list[str], max_new_tokens: int = 4, colours: tuple = ("red", "blue")
) -> TaskConfig:
    """A task whose samples alternate images of ``colours`` (red and blue), each asked ``question`` and answered in
    turn."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index, answer in enumerate(answers):
        Image.new("RGB", (48, 48), colours[index % len(colours)]).save(root / "images" / f"{name}{index}.png")
        turns = [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}]
        record = {"id": f"{name}{index}", "image": f"images/{name}{index}.png", "conversations": turns}
        lines.append(json.dumps(record))
    (root / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    (root / f"{name}.yaml").write_text(
        f"name: {name}\nmetric: accuracy\nmax_new_tokens: {max_new_tokens}\n"
        f"data: {{train: {name}.jsonl, test: {name}.jsonl}}\n"
    )
    return load_task(root / f"{name}.yaml")


def colour_and_shape(root, max_new_tokens: int = 4) -> list[TaskConfig]:
    """The two tasks: colour ("red"/"blue") and shape ("square"/"circle"), 8 samples each."""
    colour = write_task(root, "colour", "What colour is the square?", ["red", "blue"] * 4, max_new_tokens)
    shape = write_task(root, "shape", "What shape is it?", ["square", "circle"] * 4, max_new_tokens)
    return [colour, shape]


def twins(root) -> list[TaskConfig]:
    """Two tasks with the very same question that differ only in their images (red / blue against green / yellow
    pictures): only a router that reads the image can tell them apart."""
    warm = write_task(root, "warm", "What is it?", ["hot", "cold"] * 4, colours=("red", "blue"))
    cool = write_task(root, "cool", "What is it?", ["cold", "hot"] * 4, colours=("green", "yellow"))
    return [warm, cool]


def bomb_png() -> bytes:
    """A PNG whose header declares 40000 x 40000 pixels (1.6 G), with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body
