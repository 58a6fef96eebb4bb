"""``routelora eval``: score a model on one or more tasks."""

import argparse
from pathlib import Path

from routelora.cli.common import add_model_arguments, print_table
from routelora.data.task import load_task
from routelora.evaluation.evaluate import EvalResult, evaluate_task, write_json_atomic
from routelora.models import load_vlm


def evaluate(
    model: str,
    tasks: list[Path],
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 32,
    skip_bad: bool = False,
    out: Path | None = None,
    trust_remote_code: bool = False,
    dtype: str | None = None,
    device: str | None = None,
) -> list[EvalResult]:
    """Evaluate ``model`` on each task file; write scores and per-sample predictions as JSON to ``out``.

    Args:
        model: checkpoint directory or hub id.
        tasks: task YAML files.
        split: ``test`` or ``train``.
        limit: evaluate the first N samples of each task only.
        batch_size: samples generated at once.
        skip_bad: skip bad samples (and report how many) instead of stopping at the first.
        out: JSON file for the results (default: none written).
        trust_remote_code: allow the checkpoint's own modelling code.
        dtype: weights' dtype.
        device: where to run.
    """
    configs = [load_task(path) for path in tasks]  # fail on a bad task file before loading the model
    vlm, processor = load_vlm(model, trust_remote_code=trust_remote_code, dtype=dtype, device=device)
    results = [
        evaluate_task(vlm, processor, task, split=split, limit=limit, batch_size=batch_size, skip_bad=skip_bad)
        for task in configs
    ]
    if out is not None:
        write_json_atomic(out, {"model": str(model), "split": split, "results": [vars(r) for r in results]})
    return results


def results_table(results: list[EvalResult]) -> list[tuple[str, str]]:
    """One row per task: metric, headline score and the other figures."""
    rows = []
    for result in results:
        others = ", ".join(f"{k} {v:.3f}" for k, v in result.scores.items() if k != "score" and isinstance(v, float))
        skipped = f", {result.skipped} skipped" if result.skipped else ""
        rows.append((result.task, f"{result.metric} {result.score:.3f}  (n={result.samples}{skipped}; {others})"))
    return rows


def _run(args: argparse.Namespace) -> None:
    results = evaluate(
        args.model,
        args.task,
        args.split,
        args.limit,
        args.batch_size,
        args.skip_bad,
        args.out,
        args.trust_remote_code,
        args.dtype,
        args.device,
    )
    print_table(results_table(results))
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
    parser.set_defaults(run=_run)
