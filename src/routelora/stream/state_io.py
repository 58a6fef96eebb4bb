"""A method's state on disk, so that a stream can stop after any step and go on from it: JSON for the structure,
one safetensors file for every tensor, an expert directory for every expert. Nothing is pickled.

A state is a tree of the things methods keep: routelora dataclasses (their fields), experts, tensors, samples,
task configs (by their YAML file), paths, lists, tuples, dicts and plain values. Reading it back gives the same
tensors bit for bit, so a resumed stream continues exactly where it stopped. Only dataclasses defined in
routelora are rebuilt, by their module and name; anything else in a state file is refused.
"""

import dataclasses
import importlib
import shutil
from pathlib import Path
from typing import Any

import torch

from routelora import io
from routelora.data.task import TaskConfig, load_task
from routelora.errors import FileFormatError
from routelora.experts.expert import Expert, load_expert, save_expert

STATE_JSON = "state.json"
TENSORS = "tensors.safetensors"
FORMAT = 1


class _Writer:
    def __init__(self, folder: Path) -> None:
        self.folder, self.tensors, self.experts = folder, {}, 0

    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, torch.Tensor):
            key = f"t{len(self.tensors)}"
            self.tensors[key] = value
            return {"$tensor": key}
        if isinstance(value, bytes):
            return {"$bytes": self.encode(torch.frombuffer(bytearray(value), dtype=torch.uint8))}
        if isinstance(value, Path):
            return {"$path": str(value)}
        if isinstance(value, Expert):
            where = f"experts/{self.experts}"
            self.experts += 1
            save_expert(value, self.folder / where)
            return {"$expert": where}
        if isinstance(value, TaskConfig):
            if value.source is None:
                raise ValueError(f"task {value.name} has no YAML file to refer to; a stream's tasks come from files")
            return {"$task": str(value.source)}
        if isinstance(value, list):
            return [self.encode(item) for item in value]
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(item) for item in value]}
        if isinstance(value, dict):
            if all(isinstance(key, str) for key in value):
                return {"$dict": {key: self.encode(item) for key, item in value.items()}}
            return {"$items": [[self.encode(key), self.encode(item)] for key, item in value.items()]}
        if dataclasses.is_dataclass(value) and type(value).__module__.startswith("routelora."):
            fields = {f.name: self.encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
            return {"$dataclass": f"{type(value).__module__}:{type(value).__qualname__}", "fields": fields}
        raise TypeError(f"cannot store a {type(value).__name__} in a method state")


def save_state(state: Any, folder: str | Path) -> Path:
    """Write ``state`` as a state folder at ``folder`` (replacing one there), atomically; returns the folder."""
    folder = Path(folder)
    staging = io.staging_directory(folder)
    try:
        writer = _Writer(staging)
        tree = writer.encode(state)
        io.write_safetensors(staging / TENSORS, writer.tensors)
        io.write_json(staging / STATE_JSON, {"format": FORMAT, "state": tree}, indent=1)
        io.publish_directory(staging, folder, overwrite=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def load_state(folder: str | Path) -> Any:
    """Read a state folder written by :func:`save_state`."""
    folder = Path(folder)
    document = io.read_json(folder / STATE_JSON)
    if document.get("format") != FORMAT:
        raise FileFormatError(
            f"{folder / STATE_JSON}: state format {document.get('format')!r}, this routelora reads {FORMAT}; "
            "rerun the stream from its start in a new folder"
        )
    tensors = io.read_safetensors(folder / TENSORS)
    return _decode(document["state"], folder, tensors)


def _decode(node: Any, folder: Path, tensors: dict[str, torch.Tensor]) -> Any:
    def decode(value):
        return _decode(value, folder, tensors)

    if isinstance(node, list):
        return [decode(item) for item in node]
    if not isinstance(node, dict):
        return node
    (tag, body), *rest = node.items()
    if tag == "$tensor":
        return tensors[body]
    if tag == "$bytes":
        return decode(body).numpy().tobytes()
    if tag == "$path":
        return Path(body)
    if tag == "$expert":
        return load_expert(folder / body)
    if tag == "$task":
        return load_task(body)
    if tag == "$tuple":
        return tuple(decode(item) for item in body)
    if tag == "$dict":
        return {key: decode(item) for key, item in body.items()}
    if tag == "$items":
        return {decode(key): decode(item) for key, item in body}
    if tag == "$dataclass":
        module, _, name = body.partition(":")
        cls = getattr(importlib.import_module(module), name, None) if module.startswith("routelora.") else None
        if cls is None or not dataclasses.is_dataclass(cls):
            raise FileFormatError(f"{folder / STATE_JSON}: {body!r} is not a routelora dataclass")
        return cls(**{key: decode(item) for key, item in rest[0][1].items()})
    raise FileFormatError(f"{folder / STATE_JSON}: unknown entry {tag!r}")


def tensor_bytes(folder: str | Path) -> int:
    """Bytes of the safetensors files under ``folder``: what a state stores, less its JSON (whose few bytes
    vary with the timings it records, so that a rerun would store a different count)."""
    return sum(path.stat().st_size for path in Path(folder).rglob("*.safetensors"))
