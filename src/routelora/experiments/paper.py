"""The paper in miniature, on the embedded world: the continual-learning stream with every baseline (Tables 1, 2
and 6, Figure 2), routing against each specialist (Table 3), experts added one by one (Table 4), cross-modal
transfer on the mixed arithmetic set (Table 5) and routing patterns (Figures 3 and 4), written as a report
(``results.json``, ``report.md``, ``report.html``) that says which of the paper's claims held.

``routelora demo`` runs it; ``--quick`` runs the same with short recipes and few evaluation samples (a smoke run
of the whole pipeline, not a result).
"""

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from routelora import io
from routelora.data.task import TaskConfig, load_task
from routelora.embedded.cache import cached_base, cached_world
from routelora.embedded.world import tasks_of_kind
from routelora.environment import run_environment
from routelora.evaluation.suite import (
    SuiteResult,
    base_condition,
    expert_condition,
    routed_condition,
    score_conditions,
)
from routelora.experiments.paper_claims import CLOSED, NEAREST
from routelora.experiments.paper_report import build_report
from routelora.experts.config import ExpertTrainConfig
from routelora.gates.config import GateTrainConfig
from routelora.gates.prototypes import general_prototypes
from routelora.methods.shared import SharedExperts
from routelora.models import load_vlm
from routelora.routing.config import PAPER_ROUTER, RouterConfig
from routelora.stream import StreamConfig, resolve_tasks, run_stream
from routelora.stream.workers import workers_refusal
from routelora.training.distributed import process_state

ADDITIONS = (("entailment", "caption"), ("meme",), ("genre",), ("chart_trend",), ("text_entailment",))
"""Table 4: the library grown one step at a time; ``chart_trend`` is the unrelated expert, ``text_entailment``
the related text-only one."""
ADDITION_LABELS = ("entailment + caption", "+ meme", "+ genre", "+ chart_trend (unrelated)", "+ text_entailment")
ARITHMETIC = ("arith_text", "arith_image")
"""Table 5's single experts: text-only word problems, and problems counting the image."""
MIXED = "arith_mixed"
GENERAL = tasks_of_kind("general")
"""General benchmarks that no router statistic ever comes from, scored in Table 3."""


@dataclass
class PaperConfig:
    """Everything the paper-in-miniature run does."""

    stream: StreamConfig = field(default_factory=StreamConfig)
    """The stream, its methods and recipes (the defaults: the paper's order, every method)."""
    general_samples: int = 256
    """Prompts per retention benchmark in the closed-world comparison's base statistics (Table 3); the default,
    open-world router uses none."""

    def __post_init__(self) -> None:
        if self.general_samples < 1:
            raise ValueError(f"general_samples must be positive, got {self.general_samples}")


FULL = PaperConfig(StreamConfig(eval_limit=100, workers=2))
"""The paper's stream with every method (``StreamConfig``'s defaults: LoRA 500 steps of 8 samples per task, full
fine-tuning 250 of 16), each task evaluated on the first 100 samples of its test split; learned in two one-thread
worker processes, which also train Tables 4 and 5's experts."""
QUICK = PaperConfig(
    StreamConfig(
        expert=ExpertTrainConfig(lr=1e-3, lora_plus_ratio=16.0, steps=50, batch_size=8, holdout=16),
        full=ExpertTrainConfig(lr=5e-4, steps=25, holdout=16),
        gates=GateTrainConfig(steps=30, prototype_samples=64),
        eval_limit=32,
        workers=2,
    ),
    general_samples=64,
)
"""Short recipes (LoRA 50 steps of 8, full fine-tuning 25 of 16) and 32 samples per task, in two workers: the
whole pipeline in under 3 minutes with the base cached. Its numbers show that everything runs, not what the method
does."""


def run_paper(config: PaperConfig, out: str | Path, progress: bool = True) -> dict:
    """Run every experiment into ``out``; returns what ``results.json`` holds."""
    out = Path(out)
    start = time.perf_counter()
    timings = {}
    torch.manual_seed(0)
    world, base = cached_world(config.stream.world_seed, progress), cached_base(progress=progress)
    timings["world and base"] = time.perf_counter() - start
    model, processor = load_vlm(base)
    stream_config = config.stream
    if stream_config.workers > 1 and workers_refusal(model) is not None:  # under accelerate, on a GPU
        stream_config = replace(stream_config, workers=1)
    tasks = [load_task(path) for path in resolve_tasks(stream_config.tasks, world)]
    retention = [load_task(path) for path in resolve_tasks(stream_config.retention, world)]
    extra = {
        name: load_task(world / f"{name}.yaml")
        for name in ("chart_trend", "text_entailment", *ARITHMETIC, MIXED, *GENERAL)
    }
    later = [extra[name] for name in (*ADDITIONS[3], *ADDITIONS[4], *ARITHMETIC)]  # Tables 4 and 5's experts
    mark = time.perf_counter()
    stream = run_stream(
        stream_config, model, processor, tasks, retention, out / "stream", progress=progress, prefetch=later
    )
    timings["stream"] = time.perf_counter() - mark
    mark = time.perf_counter()
    shared = SharedExperts(out / "stream" / "experts")
    experiments = _experiments(model, processor, stream_config, shared, tasks, retention, extra, config, progress)
    timings["tables 3-5 and figures"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - start
    results = {
        "config": asdict(config),
        "stream": stream.to_json(),
        "experiments": {name: suite.by_condition() for name, suite in experiments.items()},
        "routing": {name: _routing(suite) for name, suite in experiments.items()},
        "seconds": timings,
        "environment": run_environment(),
    }
    report, claims = build_report(stream, experiments, results, out)
    results["claims"] = claims
    if process_state().is_main_process:  # under `accelerate launch`, one process writes the report
        io.write_json(out / "results.json", results, indent=1)
        report.write(out)
    return results


def _experiments(
    model,
    processor,
    stream: StreamConfig,
    shared: SharedExperts,
    tasks: list[TaskConfig],
    retention: list[TaskConfig],
    extra: dict[str, TaskConfig],
    config: PaperConfig,
    progress: bool,
) -> dict[str, SuiteResult]:
    """Tables 3-5 and the routing patterns, over experts from the stream's store (trained there or here)."""
    general = [extra[name] for name in GENERAL]
    by_name = {task.name: task for task in [*tasks, *extra.values()]}

    def expert(name: str):
        return shared.expert(model, processor, by_name[name], stream.expert, stream.gates)

    # the default router is open-world: no general data in its statistics; the closed-world figure beside it in
    # Table 3 is the router before world v5, with the retention benchmarks' own statistics as base candidates
    closed = general_prototypes(model, processor, retention, config.general_samples, progress=False)
    default = RouterConfig()

    def score(conditions, evaluated) -> SuiteResult:
        shown = (lambda c, t: f"{c.label}: {t.name}") if progress else (lambda c, t: False)
        return score_conditions(
            model, processor, conditions, evaluated, stream.split, stream.eval_limit, progress=shown
        )

    specialists = [expert(task.name) for task in tasks]
    table3 = score(
        [expert_condition(f"{task.name} expert", e) for task, e in zip(tasks, specialists)]
        + [
            routed_condition("routelora", specialists, default),
            routed_condition(CLOSED, specialists, replace(default, open_world=False), closed),
        ],
        [*tasks, *retention, *general],
    )
    library, libraries = [], []
    for added, label in zip(ADDITIONS, ADDITION_LABELS):
        library = [*library, *(expert(name) for name in added)]
        libraries.append(routed_condition(label, list(library), default))
    table4 = score(libraries, [*tasks, *retention, extra["chart_trend"], extra["text_entailment"]])
    arithmetic = [expert(name) for name in ARITHMETIC]
    nearest = replace(default, open_world=False, base_candidates=False)
    table5 = score(
        [base_condition("zero-shot")]
        + [expert_condition(f"{e.name} expert", e) for e in arithmetic]
        + [
            routed_condition("routelora", arithmetic, default),
            routed_condition("routelora top-2", arithmetic, replace(default, top_k=2)),
            routed_condition("paper", arithmetic, PAPER_ROUTER),
            # the mixed set is a task no expert was trained on, so the open-world router gives it to the base; with
            # no region test the nearest expert (or the two nearest) takes it: what routing gives when a user
            # says that the input belongs to the library
            routed_condition(NEAREST, arithmetic, nearest),
            routed_condition(f"{NEAREST} top-2", arithmetic, replace(nearest, top_k=2)),
        ],
        [extra[MIXED], *(extra[name] for name in ARITHMETIC)],
    )
    patterns = score(
        [routed_condition("paper", list(library), PAPER_ROUTER)],
        [by_name["entailment"], extra["text_entailment"], retention[0]],
    )
    return {"table3": table3, "table4": table4, "table5": table5, "patterns": patterns}


def _routing(suite: SuiteResult) -> dict[str, dict[str, dict]]:
    return {
        label: {task: vars(report) for task, report in reports.items()} for label, reports in suite.routing.items()
    }
