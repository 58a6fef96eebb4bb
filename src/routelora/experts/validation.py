"""The check of a freshly trained expert: its score on a few of its task's held-out training samples against the
task's trivial baseline, so that an expert that learnt nothing (at chance, say) is flagged the moment it is made,
not found later in a table.

The trivial baseline is one constant answer for every sample, the most common answer of the task's training
samples, scored with the task's own metric on the same validation samples: the majority class of a
classification task, at least chance on a yes/no one, the most frequent caption of a captioning task. An expert
that does not score above it is flagged: a warning line, and ``above_baseline: false`` in its training record.
"""

import logging
import time
from collections import Counter
from collections.abc import Sequence

from torch import nn

from routelora.data.collate import VLMCollator
from routelora.data.samples import Sample
from routelora.data.task import TaskConfig
from routelora.metrics import compute_metric
from routelora.models.generation import greedy_answers
from routelora.training.distributed import process_state

logger = logging.getLogger(__name__)


def constant_answer(samples: Sequence[Sample]) -> str:
    """The most common answer of ``samples`` (the first seen among equally common ones)."""
    return Counter(sample.answer for sample in samples).most_common(1)[0][0]


def check_against_baseline(
    model: nn.Module,
    collator: VLMCollator,
    task: TaskConfig,
    training: Sequence[Sample],
    validation: Sequence[Sample],
    batch_size: int = 16,
) -> dict:
    """Score ``model`` (the expert's adapter active) on ``validation`` and the constant answer of ``training``
    on the same samples; returns the record kept in the expert's training settings, and warns where the expert
    is not above the baseline."""
    start = time.perf_counter()
    was_training = model.training
    model.eval()  # dropout off, as at evaluation
    answers = []
    for first in range(0, len(validation), batch_size):
        answers += greedy_answers(model, collator, validation[first : first + batch_size], task.max_new_tokens)
    model.train(was_training)
    references = [sample.references for sample in validation]
    constant = constant_answer(training)
    score = compute_metric(task.metric, answers, references, labels=task.labels)["score"]
    baseline = compute_metric(task.metric, [constant] * len(validation), references, labels=task.labels)["score"]
    record = {
        "samples": len(validation),
        "metric": task.metric,
        "score": score,
        "baseline": baseline,
        "baseline_answer": constant,
        "above_baseline": score > baseline,
        "seconds": time.perf_counter() - start,
    }
    if not record["above_baseline"] and process_state().is_main_process:
        logger.warning(
            "expert %s scores %.3f (%s) on %d validation samples, not above its trivial baseline %.3f (always "
            "answering %r): it has not learnt its task",
            task.name,
            score,
            task.metric,
            len(validation),
            baseline,
            constant,
        )
    return record
