"""Evaluate a model on a task: batched greedy generation, the task's metric, per-sample predictions."""

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate.utils import gather_object
from torch import nn
from tqdm.auto import tqdm

from routelora import io
from routelora.data.collate import VLMCollator
from routelora.data.samples import Sample, load_split
from routelora.data.task import TaskConfig
from routelora.metrics import compute_metric
from routelora.models.generation import greedy_answers
from routelora.routing.grouping import decide_routes, route_batches, routed_model
from routelora.training.distributed import process_state


@dataclass
class EvalResult:
    """Scores of one model on one task split, with every prediction."""

    task: str
    metric: str
    score: float
    """The headline figure of the task's metric."""
    scores: dict[str, float]
    """Every figure the metric reports."""
    samples: int
    skipped: int = 0
    """Bad samples skipped (``skip_bad``)."""
    seconds: float = 0.0
    predictions: list[dict] = field(default_factory=list)
    """One entry per sample: id, prediction, references, score."""

    def save(self, path: str | Path) -> Path:
        """Write as JSON through a temporary file, so an interrupted write leaves no half file."""
        return io.write_json(path, asdict(self), indent=1)


@torch.no_grad()
def generate_answers(
    model: nn.Module,
    collator: VLMCollator,
    samples: Sequence[Sample],
    max_new_tokens: int,
    batch_size: int = 32,
    progress: bool | str = True,
    group_by_route: bool = True,
) -> list[str]:
    """Greedy answers to ``samples``, generated in batches with the KV cache, in the samples' order.

    With a router that decides once per sequence (top-1) attached, ``group_by_route`` and more samples than one
    batch, every sample's route is decided first and the samples of one route are generated together
    (:mod:`routelora.routing.grouping`), so that each full batch merges its expert and runs at the base model's
    speed; the answers are those of each sample's route.
    """
    model.eval()
    device = next(model.parameters()).device

    def model_batch(chunk: Sequence[Sample]) -> dict[str, torch.Tensor]:
        return {key: value.to(device) for key, value in collator(chunk, with_answers=False).items()}

    count = len(samples)
    batches = [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]
    router = routed_model(model) if group_by_route and count > batch_size else None
    if router is not None:
        routes = []
        for indices in batches:
            chosen = decide_routes(router, model_batch([samples[i] for i in indices]))  # (batch, k)
            routes += [tuple(row) for row in chosen.tolist()]
        batches = route_batches(routes, batch_size)
    answers: list[str] = [""] * count
    description = progress if isinstance(progress, str) else "generating"
    with tqdm(total=count, desc=description, disable=not progress, dynamic_ncols=True) as bar:
        for indices in batches:
            texts = greedy_answers(model, collator, [samples[i] for i in indices], max_new_tokens)
            for index, text in zip(indices, texts):
                answers[index] = text
            bar.update(len(indices))
    return answers


def evaluate_task(
    model: nn.Module,
    processor,
    task: TaskConfig,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 32,
    skip_bad: bool = False,
    progress: bool | str = True,
) -> EvalResult:
    """Generate answers for ``split`` of ``task`` and score them with the task's metric."""
    data = load_split(task, split, skip_bad=skip_bad, limit=limit)
    start = time.perf_counter()
    collator = VLMCollator(processor)
    shown = progress if progress is not True else task.name
    predictions = _generate_split(model, collator, data.samples, task.max_new_tokens, batch_size, shown)
    references = [sample.references for sample in data.samples]
    scores = compute_metric(task.metric, predictions, references, labels=task.labels)
    per_sample = scores.pop("per_sample")
    return EvalResult(
        task=task.name,
        metric=task.metric,
        score=scores["score"],
        scores=scores,
        samples=len(data.samples),
        skipped=len(data.skipped),
        seconds=time.perf_counter() - start,
        predictions=[
            {"id": s.id, "prediction": p, "references": s.references, "score": score}
            for s, p, score in zip(data.samples, predictions, per_sample)
        ],
    )


def _generate_split(model, collator, samples: list[Sample], max_new_tokens: int, batch_size: int, progress):
    """Every sample's answer; under ``accelerate launch`` with several processes, each process generates for its
    share of the samples (accelerate's ``split_between_processes``) and the answers are gathered, in sample order,
    on every process, so the score is computed once from all of them."""
    state = process_state()
    if state.num_processes == 1:
        return generate_answers(model, collator, samples, max_new_tokens, batch_size, progress)
    with state.split_between_processes(list(range(len(samples)))) as indices:
        mine = [samples[i] for i in indices]
        shown = progress if state.is_main_process else False
        answers = generate_answers(model, collator, mine, max_new_tokens, batch_size, shown) if mine else []
        pairs = list(zip(indices, answers))
    gathered = gather_object(pairs)
    return [answer for _, answer in sorted(gathered, key=lambda pair: pair[0])]
