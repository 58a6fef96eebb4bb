"""Held-out checks from outside the task world: a task's test samples wrapped in conversation the world never uses,
and general questions that no world task asks, on the world's own pictures (``outside.yaml`` holds the words).

Written as task files beside the comparison's results, so that every condition evaluates them as any user's task.
"""

import json
import random
from importlib import resources
from pathlib import Path

import yaml

from routelora import io
from routelora.data.task import TaskConfig, load_task

IMAGE = "<image>\n"


def outside_words() -> dict[str, list[str]]:
    """The greetings, contexts, thanks and general questions of ``outside.yaml``."""
    return yaml.safe_load(resources.files(__package__).joinpath("outside.yaml").read_text())


def _records(task: TaskConfig, limit: int) -> list[dict]:
    lines = task.data.test.read_text().splitlines()[:limit]
    records = [json.loads(line) for line in lines]
    for record in records:  # the derived file lives elsewhere: point at the world's own images
        if "image" in record:
            record["image"] = str((task.data.test.parent / record["image"]).resolve())
    return records


def _write(out: Path, name: str, records: list[dict], source: TaskConfig, **fields) -> TaskConfig:
    data = "".join(json.dumps(record) + "\n" for record in records)
    io.atomic_write(out / f"{name}.jsonl", data.encode())
    content = {
        "name": name,
        "description": f"{source.name}'s test samples, from outside the world",
        "kind": source.kind,
        "data": {"test": f"{name}.jsonl"},
        "metric": source.metric,
        "labels": list(source.labels) if source.labels else None,
        "max_new_tokens": source.max_new_tokens,
    } | fields
    io.atomic_write(out / f"{name}.yaml", yaml.safe_dump(content, sort_keys=False).encode())
    return load_task(out / f"{name}.yaml")


def wrapped_in_outside_words(task: TaskConfig, out: Path, limit: int, seed: int = 0) -> TaskConfig:
    """``task`` (same name, so its own expert is known) whose test split is its first ``limit`` test samples, each
    wrapped in a greeting, a context sentence and thanks from outside the world."""
    words, rng = outside_words(), random.Random(seed)
    records = _records(task, limit)
    for record in records:
        turn = record["conversations"][0]
        head = IMAGE if turn["value"].startswith(IMAGE) else ""
        parts = [rng.choice(words[part]) for part in ("greeting", "context")]
        turn["value"] = f"{head}{' '.join(parts)} {turn['value'].removeprefix(head)} {rng.choice(words['thanks'])}"
    folder = out / "outside"
    folder.mkdir(parents=True, exist_ok=True)
    return _write(folder, task.name, records, task)


def general_questions(sources: list[TaskConfig], out: Path, limit: int, seed: int = 0) -> TaskConfig:
    """A task named ``probe``: the pictures of ``sources``' first test samples, each asked a general question from
    outside the world (no reference answer is meaningful: its score is not reported, only where it is routed)."""
    words, rng = outside_words(), random.Random(seed)
    records = []
    for source in sources:
        for record in _records(source, limit // len(sources)):
            question = rng.choice(words["questions"])
            record["conversations"] = [
                {"from": "human", "value": f"{IMAGE}{question}"},
                {"from": "gpt", "value": "none"},
            ]
            record["references"] = ["none"]
            records.append(record)
    folder = out / "outside"
    folder.mkdir(parents=True, exist_ok=True)
    kind = {"kind": "general", "metric": "accuracy", "labels": None}
    return _write(folder, "probe", records, sources[0], description="general questions from outside the world", **kind)
