"""What a continual-learning stream runs: its tasks in order, the retention benchmarks, the methods and their
recipes. ``routelora stream --config STREAM.yaml`` reads one; every field has a default (the paper's stream on
the embedded world).

A task is a task YAML file (a path, relative to the stream file) or the name of a task of the embedded world
(``caption``...), which is generated and cached on first use.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from routelora.data.task import EVALUATION_SPLITS
from routelora.errors import RouteloraError
from routelora.experts.config import ExpertTrainConfig
from routelora.gates.config import GateTrainConfig

PAPER_ORDER = ("caption", "entailment", "meme", "genre")
"""The paper's stream (its Table 2 order): captioning, then entailment, hateful memes, genre."""
RETENTION = ("mcq", "chart", "doc")
"""The embedded world's retention benchmarks (general skills of the base model)."""
DEFAULT_METHODS = (
    "zero-shot",
    "sequential-full",
    "sequential-lora",
    "replay",
    "averaging",
    "task-arithmetic",
    "ties",
    "dare",
    "multitask-lora",
    "multitask-full",
    "arrow",
    "routelora",
    "text-prototypes",
    "paper",
)


STREAM_EXPERT_RECIPE = {"lr": 1e-3, "lora_plus_ratio": 16.0, "steps": 500, "batch_size": 8, "holdout": 32}
"""LoRA+ at lr 1e-3 (lora_B at 16 times that), 500 steps of 8 samples: the samples and compute of the earlier 250
steps of 16 at lr 4e-3, and on the tiny base's held-out training samples at three seeds a higher mean on caption
(CIDEr 4.66 against 3.48), entailment (0.750 against 0.682) and genre (0.756 against 0.597), meme 0.828 against
0.865."""


class StreamConfigError(RouteloraError):
    """A stream file that cannot be run; the message names the file and the field."""


@dataclass
class StreamConfig:
    """One continual-learning stream and the methods run on it."""

    tasks: list[str] = field(default_factory=lambda: list(PAPER_ORDER))
    """The stream, in order: task YAML paths or embedded world task names."""
    retention: list[str] = field(default_factory=lambda: list(RETENTION))
    """Benchmarks of general skill evaluated after every step. The default router never sees their data (it is
    open-world); the earlier default, closed-world ``text-prototypes``, keeps their statistics as base candidates."""
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    """Names in ``routelora.methods.METHODS``, run side by side on the same base, tasks, budgets and seeds."""
    expert: ExpertTrainConfig = field(default_factory=lambda: ExpertTrainConfig(**STREAM_EXPERT_RECIPE))
    """Recipe of every LoRA: each task's expert (routing, the merges, Arrow and the specialists share them),
    the sequential LoRA (per task) and the multi-task LoRA (steps added up over the tasks). ``holdout`` samples of
    each task's training data are kept out of every method's training: task arithmetic's validation split. The
    default (:data:`STREAM_EXPERT_RECIPE`) was chosen on those held-out samples (docs/demo.md, "The expert recipe")."""
    full: ExpertTrainConfig = field(default_factory=lambda: ExpertTrainConfig(lr=5e-4, steps=250, holdout=32))
    """Recipe of full fine-tuning of the language model: sequential, replay, multi-task (steps added up)."""
    gates: GateTrainConfig = field(default_factory=GateTrainConfig)
    """Gate and prototype training of each expert (the routers)."""
    replay: float = 0.2
    """Share of each earlier task's training samples the replay baseline keeps."""
    split: str = "test"
    """Split every task is evaluated on (``test``, ``test_reworded`` or ``test_chatter``)."""
    eval_limit: int | None = None
    """Evaluate the first N samples of each task (None: all)."""
    world_seed: int = 0
    """Seed of the embedded world that task names refer to."""
    seed: int = 0
    """Seed of every method's randomness (replay buffers, DARE's drops, Arrow)."""
    workers: int = 1
    """Processes the methods learn in side by side, each on one thread (1: every method in this process, on
    torch's threads). On a CPU of few cores, tiny matrices keep a second thread half idle: two one-thread
    processes learn the demo's stream about 1.3 times faster than one process of two threads. Each (method, step)
    then runs on one thread wherever it lands, so the figures equal those of ``workers=1`` under
    ``torch.set_num_threads(1)``; a run on more threads can differ in the last bits (on the demo's 2-core AMD EPYC
    it did not: docs/demo.md)."""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("tasks: a stream needs at least one task")
        for name, values in (("tasks", self.tasks), ("retention", self.retention), ("methods", self.methods)):
            repeated = sorted({value for value in values if values.count(value) > 1})
            if repeated:
                raise ValueError(f"{name}: {', '.join(repeated)} given more than once")
        if not self.methods:
            raise ValueError("methods: name at least one method")
        if not 0 <= self.replay <= 1:
            raise ValueError(f"replay must be in [0, 1], got {self.replay}")
        if self.split not in EVALUATION_SPLITS:
            raise ValueError(f"split must be one of {', '.join(EVALUATION_SPLITS)}, got {self.split!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be positive, got {self.workers}")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError(f"eval_limit must be positive, got {self.eval_limit}")


def load_stream_config(path: str | Path) -> StreamConfig:
    """Read a stream YAML file; relative task paths are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise StreamConfigError(f"stream file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise StreamConfigError(f"{path}{f' line {mark.line + 1}' if mark else ''}: not valid YAML") from None
    config = from_mapping(StreamConfig, raw, str(path))
    config.tasks = [_resolve(task, path.parent) for task in config.tasks]
    config.retention = [_resolve(task, path.parent) for task in config.retention]
    return config


def _resolve(task: str, folder: Path) -> str:
    return str((folder / task).resolve()) if task.endswith((".yaml", ".yml")) else task


def from_mapping(cls: type, raw: object, where: str):
    """Build dataclass ``cls`` from a YAML mapping, refusing unknown keys and values of the wrong type with a
    message naming ``where`` and the field."""
    if not isinstance(raw, dict):
        raise StreamConfigError(f"{where}: expected a mapping of fields, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise StreamConfigError(
            f"{where}: unknown field(s) {', '.join(map(str, unknown))}; known: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {name: _value(hints[name], value, f"{where}: {name}") for name, value in raw.items()}
    try:
        return cls(**values)
    except ValueError as error:
        raise StreamConfigError(f"{where}: {error}") from None


def _value(hint, value, where: str):
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        hint = next(a for a in arguments if a is not type(None))
        origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        if not isinstance(value, list):
            raise StreamConfigError(f"{where} must be a list, got {type(value).__name__}")
        return [_value(arguments[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    accepted = (int, float) if hint is float else (hint,)
    if not isinstance(value, accepted) or (hint is not bool and isinstance(value, bool)):
        raise StreamConfigError(f"{where} must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return float(value) if hint is float else value


def resolve_tasks(names: list[str], world: Path | None) -> list[Path]:
    """Each stream entry's task YAML file: a path as given, a bare name as that task of ``world`` (the embedded
    world's folder)."""
    files = []
    for name in names:
        if name.endswith((".yaml", ".yml")):
            files.append(Path(name))
        elif world is not None and (world / f"{name}.yaml").is_file():
            files.append(world / f"{name}.yaml")
        else:
            where = f"the world at {world}" if world else "the embedded world"
            raise StreamConfigError(
                f"task {name!r} is neither a task YAML file nor a task of {where}; give the path of its YAML file"
            )
    return files
