"""A task, as a YAML file declares it: where its data is, how to prompt, what to score."""

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from routelora.errors import RouteloraError
from routelora.metrics import METRICS

KINDS = ("specialised", "retention", "ablation", "general", "pretraining", "custom")


class TaskError(RouteloraError):
    """A task file or a task's data is wrong; the message names the file and field or line."""


@dataclass
class TaskData:
    """Where a task's splits are. Paths in the YAML are relative to the YAML file."""

    train: Path | None = None
    """Training split: LLaVA-format ``.json``/``.jsonl``, a ``.parquet`` file, or a ``datasets`` directory."""
    test: Path | None = None
    """Evaluation split, in any of the same formats."""
    test_reworded: Path | None = None
    """Optional second evaluation split: test samples asked in instructions worded unlike any in training (the
    embedded world's held-out phrasings), to check that a method holds beyond its training templates."""
    test_chatter: Path | None = None
    """Optional conversational split: test samples wrapped in a greeting, a sentence of context and thanks (the
    embedded world's held-out conversation), to check that routing and answers hold when users chat."""


SPLITS = tuple(f.name for f in fields(TaskData))
EVALUATION_SPLITS = tuple(split for split in SPLITS if split.startswith("test"))
"""The splits a method is evaluated on: the test split and its held-out variants."""


@dataclass
class TaskConfig:
    """One task: data, prompt, answer, metric. Loaded from YAML by :func:`load_task`."""

    name: str
    """Short identifier; also the expert's name in a library."""
    data: TaskData
    """The task's splits."""
    metric: str
    """Headline metric, a name in :data:`routelora.metrics.METRICS`."""
    description: str = ""
    """One line for people."""
    kind: str = "custom"
    """``specialised`` (a new task), ``retention`` (a general skill to keep), ``ablation``, ``pretraining``
    (generic data of the tiny base only) or ``custom``."""
    labels: list[str] | None = None
    """Passed to the metric, for the metrics that take labels (each metric's ``labels`` in the registry says
    what they mean: the label set of ``accuracy`` and ``multilabel_precision``, the allowed option letters of
    ``multiple_choice``)."""
    max_new_tokens: int = 16
    """Generation budget at evaluation."""
    prompt_template: str = "{prompt}"
    """Format string applied to each sample's prompt; ``{prompt}`` and any field of a tabular row may appear."""
    answer_field: str | None = None
    """Column holding the answer in tabular data; LLaVA data takes the last ``gpt`` turn when this is unset."""
    question_field: str = "question"
    """Column holding the question in tabular data (becomes ``{prompt}``)."""
    image_field: str = "image"
    """Key or column holding the image (a path relative to the data file, or image bytes in tabular data)."""
    references_field: str = "references"
    """Key or column holding all acceptable answers; the answer alone where absent."""
    source: Path | None = field(default=None, compare=False)
    """The YAML file this task was read from."""

    def __post_init__(self) -> None:
        where = f"{self.source}: " if self.source else ""
        if not self.name or not isinstance(self.name, str):
            raise TaskError(f"{where}field 'name' must be a non-empty string")
        if self.metric not in METRICS:
            raise TaskError(f"{where}field 'metric': unknown metric {self.metric!r}; known: {', '.join(METRICS)}")
        if self.kind not in KINDS:
            raise TaskError(f"{where}field 'kind': {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.labels is not None:
            if (
                not isinstance(self.labels, list)
                or not self.labels
                or not all(isinstance(x, str) for x in self.labels)
            ):
                raise TaskError(f"{where}field 'labels' must be a non-empty list of strings")
            if METRICS[self.metric].labels is None:
                takers = ", ".join(name for name, spec in METRICS.items() if spec.labels is not None)
                raise TaskError(
                    f"{where}field 'labels': metric {self.metric!r} takes no labels (only {takers} do); remove it"
                )
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise TaskError(f"{where}field 'max_new_tokens' must be a positive integer")
        if "{prompt}" not in self.prompt_template and "{" not in self.prompt_template:
            raise TaskError(f"{where}field 'prompt_template' must contain a {{field}} such as {{prompt}}")
        if self.data.train is None and self.data.test is None:
            raise TaskError(f"{where}field 'data' names neither a train nor a test split")

    def split(self, name: str) -> Path:
        """Path of split ``name`` (one of :data:`SPLITS`), or a clear error if the task has none."""
        path = getattr(self.data, name, None) if name in SPLITS else None
        if path is None:
            raise TaskError(f"task {self.name} has no {name!r} split" + (f" ({self.source})" if self.source else ""))
        return path


def load_task(path: str | Path) -> TaskConfig:
    """Read and validate a task YAML file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TaskError(f"task file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise TaskError(f"{path}{line}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(raw, dict):
        raise TaskError(f"{path}: a task file must be a mapping of fields")
    known = {f.name for f in fields(TaskConfig)} - {"source"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TaskError(f"{path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for required in ("name", "data", "metric"):
        if required not in raw:
            raise TaskError(f"{path}: missing field '{required}'")
    data = raw.pop("data")
    if not isinstance(data, dict) or set(data) - set(SPLITS):
        raise TaskError(f"{path}: field 'data' must be a mapping of splits ({', '.join(SPLITS)})")
    splits = {key: (path.parent / value).resolve() if value else None for key, value in data.items()}
    return TaskConfig(data=TaskData(**splits), source=path, **raw)
