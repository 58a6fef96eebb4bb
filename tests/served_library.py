"""A tiny base on disk and a library of two routed experts (colour, shape) with the base's own statistics (a
third task, ``general``), for the serving and export tests."""

import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.experts import ExpertLibrary, save_expert
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.gates.prototypes import store_base_prototypes
from routelora.gates.train import GateTrainConfig, train_gates
from routelora.models.checkpoint import save_checkpoint
from tiny_tasks import CORPUS, colour_and_shape, write_task

QUICK = ExpertTrainConfig(rank=4, steps=12, batch_size=4, lr=1e-2)


def build_library(root: Path) -> dict:
    """``root/base`` (the checkpoint), ``root/library`` and the tasks; returns their paths and the tasks."""
    model, processor = build_tiny_vlm(TinyVLMRecipe(text_layers=2), CORPUS)
    base = save_checkpoint(model, processor, root / "base")
    tasks = colour_and_shape(root / "data")
    general = write_task(root / "data", "general", "What is this?", ["a picture"] * 8, colours=("green", "white"))
    library = ExpertLibrary(root / "library")
    for task in tasks:
        expert, _ = train_expert(model, processor, task, QUICK, progress=False)
        expert, _ = train_gates(model, processor, expert, task, GateTrainConfig(steps=1, prototype_samples=8))
        library.add(save_expert(expert, root / "experts" / task.name))
    store_base_prototypes(library.root, model, processor, [general], samples=8)
    return {"root": root, "base": base, "library": library.root, "tasks": {t.name: t for t in [*tasks, general]}}


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def chat_body(model: str, prompt: str, image: Path | None = None, **fields) -> dict:
    """A chat-completions body with the image first in the user's turn (where ``routelora predict`` puts it)."""
    parts = [{"type": "image_url", "image_url": {"url": data_uri(image)}}] if image is not None else []
    parts.append({"type": "text", "text": prompt})
    return {"model": model, "messages": [{"role": "user", "content": parts}], **fields}


@contextmanager
def running(served) -> Iterator[str]:
    """Serve ``served`` (a :class:`~routelora.serving.app.Served`) on a free loopback port in a thread; yields its
    URL and stops the server (and its batcher) when the block ends."""
    import uvicorn

    from routelora.serving.app import build_app
    from routelora.serving.server import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(build_app(served), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"
