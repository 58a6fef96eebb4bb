"""The one registry of metrics: what a task file may name, what each metric accepts, and its maximum.

``compute_metric(name, predictions, references, labels=None, **options)`` returns a dict with the headline
figure under ``score``, the other figures under their own keys, and one score per sample under
``per_sample``. A new metric is a function (in its own file, or beside its kin) plus one line in :data:`METRICS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from routelora.metrics.answers import (
    MetricResult,
    accuracy,
    anls,
    multilabel_precision,
    multiple_choice,
    number_match,
    relaxed_accuracy,
)
from routelora.metrics.caption import CIDER_MAXIMUM, caption_metrics, validate_inputs


def _cider(predictions: Sequence[str], references: Sequence[Sequence[str]], **options: Any) -> MetricResult:
    # METEOR costs a JVM start (~10 s) per call; the registry leaves it out unless asked (meteor=True).
    options.setdefault("meteor", False)
    scores = caption_metrics(predictions, references, **options).as_dict()
    per_sample = scores.pop("per_sample_cider")
    return {"score": scores["cider"], **scores, "per_sample": per_sample}


@dataclass(frozen=True)
class MetricSpec:
    """One registered metric: how to compute it, and what a task file may tell it."""

    function: Callable[..., MetricResult]
    """``function(predictions, references, **options)``."""
    labels: str | None = None
    """What a task's ``labels`` field means to this metric (None: the metric takes no labels, and a task file
    that sets them is refused)."""
    options: tuple[str, ...] = ()
    """Keyword options the metric takes besides ``labels`` (``compute_metric`` refuses any other)."""
    maximum: float = 1.0
    """Highest attainable score."""


METRICS: dict[str, MetricSpec] = {
    "cider": MetricSpec(_cider, options=("tokenizer", "meteor"), maximum=CIDER_MAXIMUM),
    "accuracy": MetricSpec(
        accuracy, labels="the label set; each prediction is mapped onto one label", options=("strip_articles",)
    ),
    "multilabel_precision": MetricSpec(multilabel_precision, labels="the label set; other predicted labels drop"),
    "relaxed_accuracy": MetricSpec(relaxed_accuracy, options=("tolerance",)),
    "anls": MetricSpec(anls, options=("threshold",)),
    "multiple_choice": MetricSpec(
        multiple_choice, labels="the allowed option letters, e.g. [A, B, C, D]", options=("options",)
    ),
    "number_match": MetricSpec(number_match),
}
"""Every metric a task can name, by name: the one registry that task files are validated against."""


def _check_name(name: str) -> None:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")


def compute_metric(
    name: str,
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    labels: Sequence[str] | None = None,
    **options: Any,
) -> MetricResult:
    """Compute metric ``name``; ``score`` is the headline figure, ``per_sample`` one score per sample.

    ``labels``: the label set (accuracy, multilabel_precision) or allowed letters (multiple_choice); ignored by
    the other metrics. ``options`` go to the metric function (e.g. ``options=`` per-sample choices for
    multiple_choice, ``tokenizer=``/``meteor=`` for cider, ``strip_articles=`` for accuracy).
    """
    _check_name(name)
    validate_inputs(predictions, references)
    unknown = sorted(set(options) - set(METRICS[name].options))
    if unknown:
        accepted = ", ".join(METRICS[name].options) or "none"
        raise ValueError(f"metric {name!r} takes no option {', '.join(unknown)}; its options: {accepted}")
    if labels is not None and METRICS[name].labels is not None:
        options["labels"] = labels
    return METRICS[name].function(predictions, references, **options)


def metric_maximum(name: str) -> float:
    """Highest attainable score: 1.0 for bounded metrics, 10.0 for CIDEr (pycocoevalcap's per-sample cap).

    CIDEr has no natural maximum; pycocoevalcap scales by 10, so 10.0 is reached only by a caption identical
    in n-gram weights to every reference. For "at least 80% of the maximum", CIDEr thresholds are rarely useful.
    """
    _check_name(name)
    return METRICS[name].maximum
