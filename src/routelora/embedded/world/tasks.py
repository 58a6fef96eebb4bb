"""The task registry: name, kind, metric, labels, default sizes and generator of every world task."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .ablation import (
    TREND_LABELS,
    make_arith_image,
    make_arith_mixed,
    make_arith_text,
    make_chart_trend,
    make_text_entailment,
)
from .basics import make_basics
from .conversation import converse
from .language import ENTAILMENT_LABELS
from .retention import make_chart, make_doc, make_mcq
from .sampling import SampleContext, WorldSample
from .specialised import (
    GENRES,
    MEME_LABELS,
    make_caption,
    make_entailment,
    make_genre,
    make_meme,
    make_text_caption,
)
from .vqa import VQA_LABELS, make_vqa

KINDS = ("specialised", "retention", "ablation", "general")
"""specialised: the continual-learning stream's tasks; retention: the paper's general benchmarks (MMBench, ChartQA,
DocVQA analogues); ablation: the paper's other experiments; general: general skills of the base used only to
evaluate open-world routing (never in any router's statistics)."""
DEFAULT_SIZES = {
    "specialised": (2000, 200),
    "retention": (3000, 200),
    "ablation": (1000, 200),
    "general": (6000, 200),
}


@dataclass(frozen=True)
class TaskSpec:
    """Everything the writer needs to produce one task and its YAML file."""

    name: str
    kind: str
    description: str
    metric: str
    labels: tuple[str, ...] | None
    max_new_tokens: int
    generate: Callable[[SampleContext], WorldSample]
    has_train: bool = True
    reworded: bool = True
    """Its instructions come from phrasing families, so it has a ``test_reworded`` split."""

    def sample(self, seed: int, split: str, index: int) -> WorldSample:
        """WorldSample ``index`` of ``split``, its question wrapped in conversation where the split wraps it
        (:func:`~.conversation.converse`); the same arguments always give the same sample."""
        context = SampleContext(seed, self.name, split, index)
        sample = self.generate(context)
        sample.question = converse(sample.question, context)
        return sample


_SPECS = (
    TaskSpec(
        "caption", "specialised", "Caption a scene of 1-3 shapes (COCO analogue).", "cider", None, 24, make_caption
    ),
    TaskSpec(
        "text_caption",
        "specialised",
        "Caption a page by the text on it, with the caption task's instructions (TextCaps analogue, its twin).",
        "cider",
        None,
        16,
        make_text_caption,
    ),
    TaskSpec(
        "entailment",
        "specialised",
        "Does the image entail, contradict or leave open a hypothesis (SNLI-VE analogue).",
        "accuracy",
        ENTAILMENT_LABELS,
        4,
        make_entailment,
    ),
    TaskSpec(
        "meme",
        "specialised",
        "A meme is hateful iff the image shows what its text mocks (Hateful Memes analogue).",
        "accuracy",
        MEME_LABELS,
        2,
        make_meme,
    ),
    TaskSpec(
        "genre",
        "specialised",
        "Movie genres cued by poster colours and plot words (MM-IMDb analogue).",
        "multilabel_precision",
        GENRES,
        16,
        make_genre,
    ),
    TaskSpec(
        "mcq",
        "retention",
        "Multiple-choice questions on the count, kind, colour and row of the shapes in a scene (MMBench analogue).",
        "multiple_choice",
        None,
        2,
        make_mcq,
    ),
    TaskSpec(
        "chart",
        "retention",
        "Read the highest and lowest values, their difference and the bar count off a chart (ChartQA analogue).",
        "relaxed_accuracy",
        None,
        4,
        make_chart,
    ),
    TaskSpec("doc", "retention", "Read a 3-letter code from a page (DocVQA analogue).", "anls", None, 8, make_doc),
    TaskSpec(
        "chart_trend",
        "ablation",
        "Name the left-to-right trend of a 3-bar chart (ChartGemma analogue, unrelated task).",
        "accuracy",
        TREND_LABELS,
        8,
        make_chart_trend,
    ),
    TaskSpec(
        "text_entailment",
        "ablation",
        "Text-only entailment between a scene description and a hypothesis (XNLI analogue).",
        "accuracy",
        ENTAILMENT_LABELS,
        4,
        make_text_entailment,
    ),
    TaskSpec(
        "arith_text",
        "ablation",
        "Text-only add/subtract word problems (Orca-Math analogue).",
        "number_match",
        None,
        4,
        make_arith_text,
        reworded=False,
    ),
    TaskSpec(
        "arith_image",
        "ablation",
        "Count shapes in the image, then add or subtract (Multi-math analogue).",
        "number_match",
        None,
        4,
        make_arith_image,
        reworded=False,
    ),
    TaskSpec(
        "arith_mixed",
        "ablation",
        "Test-only mix of text and image word problems in new phrasing (MGSM analogue).",
        "number_match",
        None,
        4,
        make_arith_mixed,
        has_train=False,
        reworded=False,
    ),
    TaskSpec(
        "basics",
        "general",
        "Direct one-word perception questions (colour, shape, row, count, a letter, a bar's value).",
        "accuracy",
        None,
        4,
        make_basics,
    ),
    TaskSpec(
        "vqa",
        "general",
        "What kind of picture this is (shapes, chart or page), asked openly or as yes/no.",
        "accuracy",
        VQA_LABELS,
        4,
        make_vqa,
    ),
)

TASK_SPECS: dict[str, TaskSpec] = {s.name: s for s in _SPECS}
#: Ordered task names with their kind (specialised | retention | ablation | general).
WORLD_TASKS: dict[str, str] = {s.name: s.kind for s in _SPECS}


def tasks_of_kind(kind: str) -> tuple[str, ...]:
    """The world's task names of one kind, in the world's order."""
    return tuple(name for name, task_kind in WORLD_TASKS.items() if task_kind == kind)


SizeSpec = float | tuple[int, int] | Mapping[str, tuple[int, int]] | None


def resolve_sizes(sizes: SizeSpec, tasks: list[str]) -> dict[str, tuple[int | None, int]]:
    """(train, test) sample counts per task; train is None for a task without a train split.

    ``sizes`` is one of: None (defaults: specialised 2000/200, retention 3000/200, ablation 1000/200, general
    6000/200);
    a number, which scales every default (at least 1 sample per split); a ``(train, test)`` pair for
    every task; or a mapping from task name to ``(train, test)`` for those tasks, defaults for the rest.
    """
    if isinstance(sizes, Mapping) and set(sizes) - set(TASK_SPECS):
        raise ValueError(f"sizes names unknown task(s) {sorted(set(sizes) - set(TASK_SPECS))}")
    out: dict[str, tuple[int | None, int]] = {}
    for name in tasks:
        spec = TASK_SPECS[name]
        train, test = DEFAULT_SIZES[spec.kind]
        if isinstance(sizes, int | float) and not isinstance(sizes, bool):
            train, test = max(1, round(train * sizes)), max(1, round(test * sizes))
        elif isinstance(sizes, tuple):
            train, test = sizes
        elif isinstance(sizes, Mapping) and name in sizes:
            train, test = sizes[name]
        elif sizes is not None and not isinstance(sizes, Mapping):
            raise TypeError(f"sizes must be None, a number, a (train, test) pair or a mapping, got {sizes!r}")
        if train < 0 or test < 0:
            raise ValueError(f"negative size for task {name!r}: {(train, test)}")
        out[name] = (train if spec.has_train else None, test)
    return out


def check_tasks(tasks: list[str] | None) -> list[str]:
    """Task names in world order; raises on unknown names."""
    if tasks is None:
        return list(TASK_SPECS)
    if not tasks:
        raise ValueError("tasks must name at least one world task (or be None for all)")
    unknown = sorted(set(tasks) - set(TASK_SPECS))
    if unknown:
        raise ValueError(f"unknown world task(s) {unknown}; known: {list(TASK_SPECS)}")
    return [t for t in TASK_SPECS if t in tasks]
