"""The one comparison runner: conditions x tasks -> scores, plus routing reports for the routed conditions.

A condition is a label and a way to prepare the model: the plain base, one expert alone, routed over a library
with a router config, and later any method's result (:mod:`routelora.methods`). ``routelora eval``, the demo and
the routing ablation all run their comparisons through :func:`score_conditions`; :mod:`routelora.reports` renders
the result.
"""

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from routelora.data.task import TaskConfig
from routelora.errors import RouteloraError
from routelora.evaluation.evaluate import EvalResult, evaluate_task
from routelora.evaluation.routing_report import RoutingReport, routing_report
from routelora.experts.expert import Expert
from routelora.experts.library import ExpertLibrary
from routelora.routing.config import ONE_EXPERT, RouterConfig
from routelora.routing.model import RoutedModel, attach_router

Prepare = Callable[[nn.Module], AbstractContextManager[RoutedModel | None]]


@dataclass
class Condition:
    """One way to prepare the model for evaluation."""

    label: str
    """Row or column name in the tables; several conditions may share one (each task's own expert: ``oracle``)."""
    prepare: Prepare
    """``prepare(model)``: a context manager that holds the model in this condition while its tasks are evaluated,
    yielding the routed handle when there is one (its routing is then recorded and reported)."""
    tasks: Collection[str] | None = None
    """The task names this condition is evaluated on; None for every task."""

    def applies_to(self, task: TaskConfig) -> bool:
        return self.tasks is None or task.name in self.tasks


def base_condition(label: str = "base") -> Condition:
    """The model as loaded."""
    return Condition(label, lambda model: nullcontext())


def expert_condition(label: str, expert: Expert, tasks: Collection[str] | None = None) -> Condition:
    """One expert alone on every token: the plain LoRA model."""
    return Condition(label, lambda model: _attached(model, [expert], ONE_EXPERT, report=False), tasks)


def oracle_conditions(experts: Sequence[Expert], label: str = "oracle") -> list[Condition]:
    """Each expert alone on its own task (the upper bound that routing aims at)."""
    return [expert_condition(label, expert, {expert.metadata.get("task", expert.name)}) for expert in experts]


def routed_condition(
    label: str,
    experts: Sequence[Expert] | ExpertLibrary | str | Path,
    config: RouterConfig,
    base_prototypes: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Condition:
    """Routed over ``experts`` under ``config``. Given a library, its experts and base prototypes are read each
    time the condition is prepared; to compare several routers over one library, load it once and pass the
    experts and ``load_base_prototypes(library)``."""
    return Condition(label, lambda model: _attached(model, experts, config, base_prototypes))


@contextmanager
def _attached(model: nn.Module, experts, config: RouterConfig, base_prototypes=None, report: bool = True):
    with attach_router(model, experts, config, base_prototypes=base_prototypes) as handle:
        yield handle if report else None


@dataclass
class SuiteResult:
    """Every condition's result on every task it applies to."""

    results: dict[str, dict[str, EvalResult]] = field(default_factory=dict)
    """Condition label -> task name -> result."""
    routing: dict[str, dict[str, RoutingReport]] = field(default_factory=dict)
    """Routed condition label -> task name -> its routing report."""
    counts: dict[str, dict[str, dict[str, torch.Tensor]]] = field(default_factory=dict)
    """Routed condition label -> task name -> per layer (token kinds, experts + 1) top-1 counts, for heatmaps."""
    columns: dict[str, list[str]] = field(default_factory=dict)
    """Routed condition label -> the candidates its counts are over (the experts, then ``base``)."""

    def score(self, label: str, task: str) -> float | None:
        result = self.results.get(label, {}).get(task)
        return None if result is None else result.score

    def by_condition(self) -> dict[str, dict[str, float]]:
        """Condition label -> task name -> headline score."""
        return {label: {task: r.score for task, r in results.items()} for label, results in self.results.items()}

    def shares(self, kind: str = "text") -> dict[str, dict[str, float]]:
        """Routed condition label -> task name -> share of its ``kind`` tokens sent to the task's own candidate."""
        return {label: {task: r.mean_share(kind) for task, r in rs.items()} for label, rs in self.routing.items()}

    def own_shares(self) -> dict[str, dict[str, float]]:
        """Routed condition label -> task name -> share of its inputs sent to the task's own candidate (of its
        sequences, or of its text tokens for a router without one decision per sequence)."""
        return {label: {task: r.own_share for task, r in rs.items()} for label, rs in self.routing.items()}

    def by_task(self) -> dict[str, dict[str, float]]:
        """Task name -> condition label -> headline score."""
        table: dict[str, dict[str, float]] = {}
        for label, results in self.results.items():
            for task, result in results.items():
                table.setdefault(task, {})[label] = result.score
        return table


def score_conditions(
    model: nn.Module,
    processor,
    conditions: Sequence[Condition],
    tasks: Sequence[TaskConfig],
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 32,
    skip_bad: bool = False,
    progress: Callable[[Condition, TaskConfig], bool | str] | None = None,
) -> SuiteResult:
    """Evaluate every condition on every task it applies to, in the order given.

    ``progress(condition, task)`` gives each evaluation's progress bar (False hides it); by default the bar is
    labelled with the task. A routed condition's routing is recorded per task and summarised against the task's
    own expert (the expert whose task it is; the base model for a task with no expert).
    """
    names = [task.name for task in tasks]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RouteloraError(f"tasks must have distinct names; {', '.join(repeated)} is given more than once")
    suite = SuiteResult()
    for condition in conditions:
        chosen = [task for task in tasks if condition.applies_to(task)]
        if not chosen:
            continue
        with condition.prepare(model) as handle:
            for task in chosen:
                if handle is not None:
                    handle.record()
                shown = progress(condition, task) if progress is not None else task.name
                result = evaluate_task(model, processor, task, split, limit, batch_size, skip_bad, shown)
                suite.results.setdefault(condition.label, {})[task.name] = result
                if handle is not None:
                    _report(suite, condition.label, handle, task)
    return suite


def _report(suite: SuiteResult, label: str, handle: RoutedModel, task: TaskConfig) -> None:
    counts, sequences = handle.routing_counts(), handle.sequence_counts()
    handle.record(False)
    names = handle.expert_names
    own = next((e.name for e in handle.experts if e.metadata.get("task", e.name) == task.name), None)
    report = routing_report(task.name, counts, names, own, sequences, handle.region_shares(), handle.thresholds())
    suite.routing.setdefault(label, {})[task.name] = report
    suite.counts.setdefault(label, {})[task.name] = counts
    suite.columns[label] = [*names, "base"]
