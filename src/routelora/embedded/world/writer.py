"""Writing a world to disk as LLaVA-style JSONL + PNG files, one folder and one YAML file per task.

The whole world is written into a hidden temporary folder beside ``out_dir`` and renamed into place
only when complete, so an interrupted or failed run never leaves a half-written world behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm import tqdm

from routelora import io

from .sampling import CHATTER, REWORDED, WorldSample
from .tasks import TASK_SPECS, SizeSpec, TaskSpec, check_tasks, resolve_sizes

#: Changes whenever a generator's output changes, so cached worlds can be told apart.
WORLD_VERSION = "routelora-world-v5"
IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class TaskFiles:
    """Where one written task lives and how many samples each split holds."""

    name: str
    kind: str
    metric: str
    yaml: Path
    train: Path | None
    test: Path
    n_train: int | None
    n_test: int
    test_reworded: Path | None = None
    test_chatter: Path | None = None


@dataclass(frozen=True)
class WorldManifest:
    """A written world: its folder, generation settings and per-task files."""

    root: Path
    seed: int
    image_size: int
    version: str
    tasks: dict[str, TaskFiles]

    @classmethod
    def load(cls, root: str | Path) -> WorldManifest:
        """Read the manifest of a world written by :func:`generate_world`."""
        root = Path(root)
        info = json.loads((root / "world.json").read_text())
        tasks = {}
        for name, t in info["tasks"].items():
            n_train, n_test = info["sizes"][name]["train"], info["sizes"][name]["test"]
            tasks[name] = TaskFiles(
                name=name,
                kind=t["kind"],
                metric=t["metric"],
                yaml=root / t["yaml"],
                train=None if n_train is None else root / name / "train.jsonl",
                test=root / name / "test.jsonl",
                n_train=n_train,
                n_test=n_test,
                test_reworded=root / name / f"{REWORDED}.jsonl" if t.get("reworded") else None,
                test_chatter=root / name / f"{CHATTER}.jsonl" if t.get("chatter") else None,
            )
        return cls(root, info["seed"], info["image_size"], info["version"], tasks)


def sample_record(task: str, split: str, index: int, sample: WorldSample) -> dict:
    """The JSONL record of one sample; the image key is present only for samples with an image."""
    record: dict = {"id": f"{task}-{split}-{index}"}
    human = sample.question
    if sample.image is not None:
        record["image"] = image_relpath(split, index)
        human = f"{IMAGE_TOKEN}\n{human}"
    record["conversations"] = [{"from": "human", "value": human}, {"from": "gpt", "value": sample.answer}]
    record["references"] = list(sample.references)
    return record


def image_relpath(split: str, index: int) -> str:
    """Image path relative to the task folder (where the JSONL files are)."""
    return f"images/{split}_{index:06d}.png"


def task_yaml(spec: TaskSpec, has_train: bool) -> dict:
    """The task file's content; data paths are relative to the YAML file."""
    return {
        "name": spec.name,
        "description": spec.description,
        "kind": spec.kind,
        "data": {
            "train": f"{spec.name}/train.jsonl" if has_train else None,
            "test": f"{spec.name}/test.jsonl",
            **({REWORDED: f"{spec.name}/{REWORDED}.jsonl"} if spec.reworded else {}),
            CHATTER: f"{spec.name}/{CHATTER}.jsonl",
        },
        "metric": spec.metric,
        "labels": list(spec.labels) if spec.labels is not None else None,
        "max_new_tokens": spec.max_new_tokens,
    }


def _write_split(spec: TaskSpec, split: str, n: int, seed: int, image_size: int, task_dir: Path, bar: tqdm) -> None:
    lines = []
    for i in range(n):
        sample = spec.sample(seed, split, i)
        if sample.image is not None:
            sample.image.render(image_size).save(task_dir / image_relpath(split, i), format="PNG")
        lines.append(json.dumps(sample_record(spec.name, split, i, sample)) + "\n")
        bar.update(1)
    (task_dir / f"{split}.jsonl").write_text("".join(lines))


def _splits(spec: TaskSpec, sizes: tuple[int | None, int]) -> Iterator[tuple[str, int]]:
    train, test = sizes
    if train is not None:
        yield "train", train
    yield "test", test
    if spec.reworded:
        yield REWORDED, test
    yield CHATTER, test


def _check_replaceable(out_dir: Path) -> None:
    # Refuse to replace a folder that is not a world: a wrong out_dir must never delete user data.
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "world.json").exists())
    ):
        raise FileExistsError(f"{out_dir} exists and is not a routelora world; refusing to replace it")


def generate_world(
    out_dir: str | Path,
    seed: int = 0,
    sizes: SizeSpec = None,
    image_size: int = 48,
    tasks: list[str] | None = None,
    progress: bool = True,
) -> WorldManifest:
    """Generate the task world into ``out_dir`` (replacing an earlier world there) and return its manifest.

    Layout: ``<task>.yaml``, ``<task>/{train,test,test_reworded,test_chatter}.jsonl``,
    ``<task>/images/<split>_<index>.png`` and ``world.json``. ``sizes`` is described in
    :func:`routelora.embedded.world.tasks.resolve_sizes`; ``tasks`` restricts the world to some task names. The same
    arguments always give byte-identical files.
    """
    out_dir = Path(out_dir)
    names = check_tasks(tasks)
    resolved = resolve_sizes(sizes, names)
    if image_size < 12:
        raise ValueError(f"image_size {image_size} is too small to draw shapes legibly (minimum 12)")
    _check_replaceable(out_dir)
    tmp = io.staging_directory(out_dir)
    total = sum(n for name in names for _, n in _splits(TASK_SPECS[name], resolved[name]))
    try:
        with tqdm(total=total, disable=not progress, desc="world", unit="sample") as bar:
            for name in names:
                spec = TASK_SPECS[name]
                bar.set_postfix_str(name)
                task_dir = tmp / name
                (task_dir / "images").mkdir(parents=True)
                for split, n in _splits(spec, resolved[name]):
                    _write_split(spec, split, n, seed, image_size, task_dir, bar)
                content = task_yaml(spec, resolved[name][0] is not None)
                (tmp / f"{name}.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
        info = {
            "version": WORLD_VERSION,
            "seed": seed,
            "image_size": image_size,
            "sizes": {name: {"train": resolved[name][0], "test": resolved[name][1]} for name in names},
            "tasks": {
                name: {
                    "kind": TASK_SPECS[name].kind,
                    "metric": TASK_SPECS[name].metric,
                    "yaml": f"{name}.yaml",
                    "reworded": TASK_SPECS[name].reworded,
                    "chatter": True,
                }
                for name in names
            },
        }
        (tmp / "world.json").write_text(json.dumps(info, indent=2) + "\n")
        io.publish_directory(tmp, out_dir, overwrite=True)  # an old world there is replaced whole
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return WorldManifest.load(out_dir)
