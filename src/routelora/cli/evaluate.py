"""``routelora eval``: score a model (plain, one expert, or routed over a library) on one or more tasks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from routelora.cli.common import (
    add_model_arguments,
    add_router_arguments,
    model_load_options,
    print_table,
    router_config,
)
from routelora.errors import RouteloraError
from routelora.routing.config import ONE_EXPERT, RouterConfig

if TYPE_CHECKING:
    from routelora.data.task import TaskConfig
    from routelora.evaluation.evaluate import EvalResult
    from routelora.evaluation.routing_report import RoutingReport
    from routelora.experts import ExpertLibrary


def evaluate(
    model: str,
    tasks: list[Path],
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 32,
    skip_bad: bool = False,
    out: Path | None = None,
    library: Path | None = None,
    expert: str | None = None,
    router: RouterConfig | None = None,
    report: bool = False,
    heatmap_dir: Path | None = None,
    **load_options,
) -> tuple[list[EvalResult], list[RoutingReport]]:
    """Evaluate ``model`` on each task file, plain, with one expert of ``library``, or routed over all of it.

    Args:
        model: checkpoint directory or hub id.
        tasks: task YAML files.
        split: ``test`` or ``train``.
        limit: evaluate the first N samples of each task only.
        batch_size: samples generated at once.
        skip_bad: skip bad samples (and report how many) instead of stopping at the first.
        out: JSON file for the results (default: none written).
        library: expert library; routed over all its experts unless ``expert`` names one.
        expert: evaluate this expert of ``library`` alone.
        router: routing settings.
        report: also measure routing accuracy per layer and the oracle (each task's own expert alone).
        heatmap_dir: write a routing heatmap PNG per task here.
        load_options: keyword arguments of :func:`routelora.load_vlm` (``trust_remote_code``, ``language_model``,
            ``target_pattern``, ``dtype``, ``device``).
    """
    from routelora import io
    from routelora.data.task import load_task
    from routelora.experts import ExpertLibrary
    from routelora.models import load_vlm
    from routelora.routing.model import attach_router

    configs = [load_task(path) for path in tasks]  # fail on a bad task file before loading the model
    if expert is not None and library is None:
        raise RouteloraError("--expert needs --library")
    vlm, processor = load_vlm(model, **load_options)
    run = _Runner(vlm, processor, split, limit, batch_size, skip_bad)
    reports: list[RoutingReport] = []
    if library is None:
        results = [run(task) for task in configs]
    else:
        lib = ExpertLibrary(library)
        if expert is not None:
            if expert not in lib:
                raise RouteloraError(f"no expert {expert!r} in {library}; it has {', '.join(lib.names()) or 'none'}")
            handle = attach_router(vlm, lib.load([expert]), ONE_EXPERT)
            results = [run(task) for task in configs]
            handle.detach()
        else:
            results, reports = _routed(run, vlm, lib, configs, router or RouterConfig(), report, heatmap_dir)
    if out is not None:
        payload = {"model": str(model), "split": split, "library": str(library) if library else None}
        payload["results"] = [vars(r) for r in results]
        payload["routing"] = [vars(r) for r in reports]
        io.write_json(out, payload, indent=1)
    return results, reports


class _Runner:
    def __init__(self, model, processor, split, limit, batch_size, skip_bad) -> None:
        self.model, self.processor = model, processor
        self.options = dict(split=split, limit=limit, batch_size=batch_size, skip_bad=skip_bad)

    def __call__(self, task: TaskConfig) -> EvalResult:
        from routelora.evaluation.evaluate import evaluate_task

        return evaluate_task(self.model, self.processor, task, **self.options)


def _routed(run, model, library: ExpertLibrary, tasks, config, report, heatmap_dir):
    from routelora.evaluation.plots import routing_heatmap
    from routelora.evaluation.routing_report import layer_shares, routing_report
    from routelora.routing.model import attach_router

    experts = library.load()
    names = [e.name for e in experts]
    own = {e.metadata.get("task", e.name): e for e in experts}
    handle = attach_router(model, library, config)
    results, reports = [], []
    for task in tasks:
        handle.record()
        results.append(run(task))
        counts = handle.routing_counts()
        handle.record(False)
        own_expert = own.get(task.name)
        task_report = routing_report(task.name, counts, names, own_expert.name if own_expert else None)
        task_report.routed_score = results[-1].score
        if heatmap_dir is not None:
            columns = [*names, "base"]
            routing_heatmap(
                layer_shares(counts),
                list(counts),
                columns,
                f"routing on {task.name}",
                Path(heatmap_dir) / f"routing-{task.name}.png",
            )
        reports.append(task_report)
    if report:
        handle.detach()
        for task, task_report in zip(tasks, reports):
            if task_report.own_expert is not None:
                single = attach_router(model, [own[task.name]], ONE_EXPERT)
                task_report.oracle_score = run(task).score
                single.detach()
        handle = attach_router(model, library, config)
    handle.detach()
    return results, reports


def results_table(results: list[EvalResult]) -> list[tuple[str, str]]:
    """One row per task: metric, headline score and the other figures."""
    rows = []
    for result in results:
        others = ", ".join(f"{k} {v:.3f}" for k, v in result.scores.items() if k != "score" and isinstance(v, float))
        skipped = f", {result.skipped} skipped" if result.skipped else ""
        rows.append((result.task, f"{result.metric} {result.score:.3f}  (n={result.samples}{skipped}; {others})"))
    return rows


def report_table(reports: list[RoutingReport]) -> list[tuple[str, str]]:
    """One row per task: own-expert share of image/text/generated tokens (mean over layers), routed vs oracle."""
    rows = []
    for r in reports:
        target = r.own_expert or "base"
        shares = ", ".join(f"{kind} {r.mean_share(kind):.2f}" for kind in ("image", "text", "generated"))
        oracle = f"; routed {r.routed_score:.3f} vs oracle {r.oracle_score:.3f}" if r.oracle_score is not None else ""
        rows.append((r.task, f"to {target}: {shares}{oracle}"))
    return rows


def _run(args: argparse.Namespace) -> None:
    results, reports = evaluate(
        args.model,
        args.task,
        args.split,
        args.limit,
        args.batch_size,
        args.skip_bad,
        args.out,
        args.library,
        args.expert,
        router_config(args),
        args.routing_report,
        args.heatmap_dir,
        **model_load_options(args),
    )
    print_table(results_table(results))
    if reports:
        print("\nrouting (share of tokens sent to the task's own expert, mean over layers):")
        print_table(report_table(reports))
    if args.out:
        print(f"wrote {args.out}")


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``eval`` to the CLI."""
    parser = subcommands.add_parser("eval", help="evaluate a model on tasks (greedy generation + task metric)")
    add_model_arguments(parser, positional=False)
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id")
    parser.add_argument("--task", type=Path, action="append", required=True, help="task YAML file (repeatable)")
    parser.add_argument("--split", default="test", choices=["test", "train"])
    parser.add_argument("--limit", type=int, help="evaluate the first N samples of each task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-bad", action="store_true", help="skip bad samples and report how many")
    parser.add_argument("--out", type=Path, help="write scores and per-sample predictions to this JSON file")
    parser.add_argument("--library", type=Path, help="expert library: route between its experts")
    parser.add_argument("--expert", help="evaluate this expert of the library alone")
    parser.add_argument("--routing-report", action="store_true", help="routing accuracy per layer and the oracle")
    parser.add_argument("--heatmap-dir", type=Path, help="write a routing heatmap PNG per task here")
    add_router_arguments(parser)
    parser.set_defaults(run=_run)
