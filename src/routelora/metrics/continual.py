"""Continual-learning metrics from an accuracy matrix, as the literature defines them (and computes them only in
its papers, not in code).

``R[s][j]`` is the score on task ``j`` (in stream order, 0-based) after step ``s`` of the stream; row 0 is the
zero-shot base, before any task, and row ``j + 1`` the step that learned task ``j``. With ``T`` tasks, rows run
0..T. Every function takes scores already normalised to one scale (see :func:`normalise`), so that a CIDEr and an
accuracy can be averaged:

* MFT, mean fine-tune accuracy: ``mean_j R[j+1][j]``, each task right after it was learned;
* MFN, mean final accuracy: ``mean_j R[T][j]``;
* MAA, mean average accuracy: ``mean_s mean_{j < s} R[s][j]`` over steps s = 1..T, the tasks seen so far;
* BWT, backward transfer: ``mean_{j < T-1} (R[T][j] - R[j+1][j])``, negative when learning later tasks hurt;
* forgetting, Chaudhry et al. (2018): ``mean_{j < T-1} (max_{j+1 <= s < T} R[s][j] - R[T][j])``, the drop from
  the best a task ever scored before the last step;
* forgetting, last minus diagonal: ``mean_{j < T-1} (R[j+1][j] - R[T][j])``, which is -BWT, named as such;
* forward transfer, Lopez-Paz & Ranzato (2017, GEM): ``mean_{j >= 1} (R[j][j] - R[0][j])``, a task's score by
  the model trained up to the task before it, against the zero-shot base's (what earlier tasks taught it). GEM's
  reference is a randomly initialised model; for a pretrained model the zero-shot base takes its place.

Written by hand because neither transformers, peft nor the CL libraries' code computes them (CoIN and MCITlib
report them from their own scripts).
"""

from collections.abc import Mapping, Sequence

Matrix = Sequence[Sequence[float]]


def _check(matrix: Matrix) -> int:
    tasks = len(matrix[0]) if matrix else 0
    if tasks == 0 or len(matrix) != tasks + 1 or any(len(row) != tasks for row in matrix):
        shape = [len(row) for row in matrix]
        raise ValueError(f"an accuracy matrix has T + 1 rows of T scores (row 0 the zero-shot base); got rows {shape}")
    return tasks


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def mean_finetune(matrix: Matrix) -> float:
    """MFT: the mean score of each task right after it was learned."""
    tasks = _check(matrix)
    return _mean([matrix[j + 1][j] for j in range(tasks)])


def mean_final(matrix: Matrix) -> float:
    """MFN: the mean score of every task after the last step."""
    tasks = _check(matrix)
    return _mean(list(matrix[tasks]))


def mean_average(matrix: Matrix) -> float:
    """MAA: the mean, over steps, of the mean score of the tasks learned so far."""
    tasks = _check(matrix)
    return _mean([_mean([matrix[s][j] for j in range(s)]) for s in range(1, tasks + 1)])


def backward_transfer(matrix: Matrix) -> float:
    """BWT: the mean change of each earlier task from right after it was learned to the end (NaN for one task)."""
    tasks = _check(matrix)
    return _mean([matrix[tasks][j] - matrix[j + 1][j] for j in range(tasks - 1)])


def forgetting_max(matrix: Matrix) -> float:
    """Chaudhry et al.'s forgetting: the mean drop of each earlier task from its best score before the last step."""
    tasks = _check(matrix)
    return _mean([max(matrix[s][j] for s in range(j + 1, tasks)) - matrix[tasks][j] for j in range(tasks - 1)])


def forgetting_last(matrix: Matrix) -> float:
    """Last-minus-diagonal forgetting: right after learning minus at the end, averaged (= -BWT)."""
    tasks = _check(matrix)
    return _mean([matrix[j + 1][j] - matrix[tasks][j] for j in range(tasks - 1)])


def forward_transfer(matrix: Matrix) -> float:
    """FWT (Lopez-Paz & Ranzato 2017): the mean gain of each later task, just before it is learned, over the
    zero-shot base; NaN for one task.

    It is 0 wherever a task not yet learned scores what the base scores: a method that leaves unseen inputs to the
    base (routing) does so by construction, and so does every method on tasks whose answer format only their own
    training teaches (the base and every model trained on other tasks score 0 on them)."""
    tasks = _check(matrix)
    return _mean([matrix[j][j] - matrix[0][j] for j in range(1, tasks)])


CONTINUAL_METRICS = {
    "MFT": mean_finetune,
    "MFN": mean_final,
    "MAA": mean_average,
    "BWT": backward_transfer,
    "forgetting (max)": forgetting_max,
    "forgetting (last - diagonal)": forgetting_last,
    "forward transfer": forward_transfer,
}
"""Every metric of an accuracy matrix, by the name tables show."""


def summarise(matrix: Matrix) -> dict[str, float]:
    """Every metric of :data:`CONTINUAL_METRICS` for one matrix."""
    return {name: metric(matrix) for name, metric in CONTINUAL_METRICS.items()}


def normalise(scores: Mapping[str, float], references: Mapping[str, float]) -> dict[str, float]:
    """Scores as percentages of each task's reference: ``100 * score / reference``.

    The rule: a bounded metric (accuracy, ANLS...) takes its maximum, 1, as the reference, so it becomes a plain
    percentage; CIDEr, which has no natural maximum, takes a reference that no method under test moves: in a
    stream, the best score any method reached on the task in the run (``StreamResult.references``), so 100 means
    "as good as the best this run saw". Raises for a task with no reference or a reference that is not positive.
    """
    out = {}
    for task, score in scores.items():
        reference = references.get(task)
        if reference is None or not reference > 0:
            raise ValueError(f"task {task}: no positive reference score to normalise by (got {reference!r})")
        out[task] = 100.0 * score / reference
    return out


def retention_change(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Each retention benchmark's change, after minus the zero-shot base (in the scores' own units)."""
    return {name: after[name] - before[name] for name in before}
