"""Every file routelora writes goes through here: to a temporary path in the same folder, then renamed into place,
so that a crash leaves the old file or the new one, never half of one. Only safetensors and JSON are read.
"""

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from routelora.errors import FileFormatError


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, value, indent: int = 2) -> Path:
    """Atomically write ``value`` as indented JSON with a final newline (unknown types as their ``str``)."""
    return atomic_write(path, (json.dumps(value, indent=indent, default=str) + "\n").encode())


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    """Atomically write ``tensors``, each as a contiguous CPU copy of its own: safetensors refuses tensors that
    share storage (views of one stacked parameter)."""
    owned = {name: t.detach().to("cpu").clone(memory_format=torch.contiguous_format) for name, t in tensors.items()}
    return atomic_write(path, save(owned, metadata=metadata))


def write_with(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Atomically create ``path`` with ``writer(temporary_path)``, for writers that take a path (matplotlib)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(handle)  # a name of its own, so that two writers of one file do not share a temporary
    temporary = Path(name)
    try:
        writer(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | Path, error: type[Exception] = FileFormatError) -> dict:
    """A JSON object from ``path``; ``error`` (naming the file) when it is missing, broken or not an object."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} is missing")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as problem:
        raise error(f"{path} is not valid JSON ({problem})") from None
    if not isinstance(value, dict):
        raise error(f"{path} must hold a JSON object, not {type(value).__name__}")
    return value


def read_safetensors(path: str | Path, error: type[Exception] = FileFormatError) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on CPU; ``error`` (naming the file) when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        pickled = sorted(p.name for p in path.parent.glob("*") if p.suffix in PICKLED) if path.parent.is_dir() else []
        if pickled:
            raise error(
                f"{path} is missing; {path.parent} holds pickled weights ({', '.join(pickled)}), which routelora "
                "never unpickles: convert them to safetensors (safetensors.torch.save_file) first"
            )
        raise error(f"{path} is missing")
    try:
        return load_file(path, device="cpu")
    except Exception as problem:  # safetensors raises its own error types, OSError, or ValueError on a bad header
        raise error(f"{path} is not a readable safetensors file ({problem})") from None


PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
"""Suffixes of pickled weights, which are refused, never read."""


def staging_directory(destination: str | Path) -> Path:
    """A fresh temporary directory beside ``destination``, to fill and then :func:`publish_directory`."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.tmp-"))


def publish_directory(temporary: Path, destination: Path, overwrite: bool) -> None:
    """Move a fully written ``temporary`` directory to ``destination`` (a sibling), replacing it if ``overwrite``.

    Raises FileExistsError when ``destination`` exists and not ``overwrite``.
    """
    if not destination.exists():
        try:
            os.rename(temporary, destination)
        except OSError as error:  # another process published the same name between the check and the rename
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError(destination) from None
            raise
        return
    if not overwrite:
        raise FileExistsError(destination)
    # Two renames: between them the destination is briefly absent (a reader sees no directory, never half of
    # one), and the old copy is put back if the second rename fails.
    old = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.old-"))
    os.replace(destination, old / destination.name)
    try:
        os.rename(temporary, destination)
    except BaseException:
        os.rename(old / destination.name, destination)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
