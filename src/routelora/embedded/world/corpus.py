"""Representative world texts for training the tiny model's tokenizer."""

from __future__ import annotations

from .tasks import TASK_SPECS


def world_corpus(seed: int = 0, per_task: int = 250) -> list[str]:
    """Questions, answers and reference texts of ``per_task`` samples of every task (about 7k strings).

    Samples come from a split of their own ("corpus"), so the corpus covers the vocabulary without
    being the train data. Questions carry no ``<image>`` placeholder: the tokenizer should add it as a
    special token. No image is rendered, so this takes well under a second.
    """
    texts: list[str] = []
    for spec in TASK_SPECS.values():
        for i in range(per_task):
            sample = spec.sample(seed, "corpus", i)
            texts.append(sample.question)
            texts.append(sample.answer)
            texts.extend(r for r in sample.references if r != sample.answer)
    return texts
