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
from routelora.data.task import EVALUATION_SPLITS
from routelora.errors import RouteloraError
from routelora.routing.config import RouterConfig

if TYPE_CHECKING:
    from routelora.evaluation.evaluate import EvalResult
    from routelora.evaluation.routing_report import RoutingReport


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
        split: ``test``, ``test_reworded`` (held-out instruction wordings, where the task has it),
            ``test_chatter`` (test samples wrapped in conversation, where the task has it) or ``train``.
        limit: evaluate the first N samples of each task only.
        batch_size: samples generated at once.
        skip_bad: skip bad samples (and report how many) instead of stopping at the first.
        out: JSON file for the results (default: none written).
        library: expert library; routed over all its experts unless ``expert`` names one.
        expert: evaluate this expert of ``library`` alone.
        router: routing settings.
        report: also measure routing accuracy per layer, the confusion matrix (task x chosen candidate) and the
            oracle (each task's own expert alone).
        heatmap_dir: write a routing heatmap PNG per task here.
        load_options: keyword arguments of :func:`routelora.load_vlm` (``trust_remote_code``, ``language_model``,
            ``target_pattern``, ``dtype``, ``device``).
    """
    from routelora import io
    from routelora.data.task import load_task
    from routelora.evaluation.suite import (
        base_condition,
        expert_condition,
        oracle_conditions,
        routed_condition,
        score_conditions,
    )
    from routelora.experts import ExpertLibrary
    from routelora.experts.library import load_base_prototypes
    from routelora.models import load_vlm
    from routelora.reports.plots import routing_heatmaps
    from routelora.training.distributed import process_state

    configs = [load_task(path) for path in tasks]  # fail on a bad task file before loading the model
    if expert is not None and library is None:
        raise RouteloraError("--expert needs --library")
    lib = ExpertLibrary(library) if library is not None else None
    if expert is not None and expert not in lib:
        raise RouteloraError(f"no expert {expert!r} in {library}; it has {', '.join(lib.names()) or 'none'}")
    vlm, processor = load_vlm(model, **load_options)
    if lib is None:
        conditions = [base_condition("model")]
    elif expert is not None:
        conditions = [expert_condition("model", lib.load([expert])[0])]
    else:
        experts = lib.load()
        conditions = [routed_condition("model", experts, router or RouterConfig(), load_base_prototypes(library))]
        conditions += oracle_conditions(experts) if report else []
    options = dict(split=split, limit=limit, batch_size=batch_size, skip_bad=skip_bad)
    suite = score_conditions(vlm, processor, conditions, configs, **options)
    results = [suite.results["model"][task.name] for task in configs]
    reports = [suite.routing["model"][task.name] for task in configs] if "model" in suite.routing else []
    for task_report in reports:
        task = task_report.task
        task_report.routed_score = suite.score("model", task)
        task_report.oracle_score = suite.score("oracle", task) if task_report.own_expert else None
    if heatmap_dir is not None and reports:
        routing_heatmaps(suite, "model", heatmap_dir)
    if out is not None and process_state().is_main_process:  # several processes gathered one result
        payload = {"model": str(model), "split": split, "library": str(library) if library else None}
        payload["results"] = [vars(r) for r in results]
        payload["routing"] = [vars(r) for r in reports]
        io.write_json(out, payload, indent=1)
    return results, reports


def _run(args: argparse.Namespace) -> None:
    from routelora.reports.tables import confusion_markdown, regions_markdown, results_rows, routing_rows

    results, reports = evaluate(
        args.model,
        args.task,
        split=args.split,
        limit=args.limit,
        batch_size=args.batch_size,
        skip_bad=args.skip_bad,
        out=args.out,
        library=args.library,
        expert=args.expert,
        router=router_config(args),
        report=args.routing_report,
        heatmap_dir=args.heatmap_dir,
        **model_load_options(args),
    )
    from routelora.training.distributed import process_state

    if not process_state().is_main_process:
        return
    print_table(results_rows(results))
    if reports:
        print("\nrouting (share of tokens sent to the task's own expert, mean over layers):")
        print_table(routing_rows(reports))
        columns = [*reports[0].expert_shares] or ["base"]
        print("\nrouting confusion matrix (rows: true task; columns: chosen candidate):")
        print(confusion_markdown(reports, columns))
        regions = regions_markdown(reports)
        if regions:
            print("\nthe experts' regions (share of each task's sequences each region held):")
            print(regions)
    if args.out:
        print(f"wrote {args.out}")


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``eval`` to the CLI."""
    parser = subcommands.add_parser("eval", help="evaluate a model on tasks (greedy generation + task metric)")
    add_model_arguments(parser, positional=False)
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id")
    parser.add_argument("--task", type=Path, action="append", required=True, help="task YAML file (repeatable)")
    parser.add_argument("--split", default="test", choices=[*EVALUATION_SPLITS, "train"])
    parser.add_argument("--limit", type=int, help="evaluate the first N samples of each task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-bad", action="store_true", help="skip bad samples and report how many")
    parser.add_argument("--out", type=Path, help="write scores and per-sample predictions to this JSON file")
    parser.add_argument("--library", type=Path, help="expert library: route between its experts")
    parser.add_argument("--expert", help="evaluate this expert of the library alone")
    parser.add_argument(
        "--routing-report",
        action="store_true",
        help="routing accuracy per layer, the confusion matrix (task x chosen candidate) and the oracle",
    )
    parser.add_argument("--heatmap-dir", type=Path, help="write a routing heatmap PNG per task here")
    add_router_arguments(parser)
    parser.set_defaults(run=_run)
