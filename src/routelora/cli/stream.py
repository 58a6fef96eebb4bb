"""``routelora stream`` (a continual-learning stream of tasks over every method) and ``routelora demo`` (the
paper in miniature on the embedded world: the stream, the paper's tables and figures, and its claims checked)."""

import argparse
import time
from pathlib import Path


def stream(
    config: Path | None = None, out: Path = Path("runs/stream"), base: str | None = None, resume: bool = True
) -> Path:
    """Run a continual-learning stream: every method learns the tasks in order, evaluated after each step.

    Args:
        config: the stream's YAML file (its fields: ``routelora.stream.StreamConfig``); none runs the default,
            the paper's stream on the embedded world.
        out: folder of the rows, states, shared experts and ``stream.json``.
        base: base model (path or hub id); default: the embedded tiny base, pretrained and cached on first use.
        resume: go on from the rows and states already in ``out`` (else start over there).
    """
    import torch

    from routelora.data.task import load_task
    from routelora.embedded.cache import cached_base, cached_world
    from routelora.embedded.world import WORLD_TASKS
    from routelora.models import load_vlm
    from routelora.stream import StreamConfig, load_stream_config, resolve_tasks, run_stream
    from routelora.training.distributed import process_state

    settings = load_stream_config(config) if config is not None else StreamConfig()
    names = [name for name in [*settings.tasks, *settings.retention] if not name.endswith((".yaml", ".yml"))]
    resolve_tasks([name for name in names if name not in WORLD_TASKS], None)  # refused before making the world
    world = cached_world(settings.world_seed) if names else None
    tasks = [load_task(path) for path in resolve_tasks(settings.tasks, world)]
    retention = [load_task(path) for path in resolve_tasks(settings.retention, world)]
    torch.manual_seed(settings.seed)
    model, processor = load_vlm(base or cached_base())
    result = run_stream(settings, model, processor, tasks, retention, out, resume=resume)
    if not process_state().is_main_process:
        return out / "stream.json"
    for name in result.methods:
        summary = result.summary(name)
        print(f"{name:>16}  MFN {summary['MFN']:6.1f}  retention {summary['retention (mean)']:+6.1f}")
    return out / "stream.json"


def demo(quick: bool = False, out: Path | None = None, steps: int | None = None) -> Path:
    """The main job: the paper in miniature on the embedded world, written as a report.

    Generates the world and builds the pretrained tiny base (both cached), runs the continual-learning stream over
    every method, the paper's other tables and figures, and writes ``results.json``, ``report.md`` and
    ``report.html`` into ``out``, with each of the paper's claims marked held or not, and its numbers.

    Args:
        quick: short recipes and 32 samples per task (about 3 minutes with the base cached): a run of the whole
            pipeline, not a result.
        out: report folder (default ``runs/demo``, ``runs/demo-quick`` with ``quick``); a stream of the same
            settings there is resumed, one of other settings refused.
        steps: training steps per task of every expert and fine-tuning (default 250: the budget that keeps the
            demo within 15 minutes on 2 cores; the caption LoRA needs about 500); gates keep their 100 steps.
    """
    from dataclasses import replace

    from routelora.errors import RouteloraError
    from routelora.experiments.paper import FULL, QUICK, run_paper

    start = time.perf_counter()
    out = out or Path("runs/demo-quick" if quick else "runs/demo")
    config = QUICK if quick else FULL
    if steps is not None:
        stream = config.stream
        recipes = {"expert": replace(stream.expert, steps=steps), "full": replace(stream.full, steps=steps)}
        try:
            config = replace(config, stream=replace(stream, **recipes))
        except ValueError as error:
            raise RouteloraError(f"--steps: {error}") from None
    results = run_paper(config, out)
    from routelora.training.distributed import process_state

    if not process_state().is_main_process:
        return out / "report.html"
    for claim in results["claims"]:
        mark = {True: "held", False: "NOT held", None: "not run"}[claim["held"]]
        print(f"[{mark}] {claim['claim']}: {claim['evidence']}")
    print(f"done in {time.perf_counter() - start:.0f} s; report: {out / 'report.html'}")
    return out / "report.html"


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``stream`` and ``demo`` to the CLI."""
    parser = subcommands.add_parser("stream", help="run a continual-learning stream over every method")
    parser.add_argument("--config", type=Path, help="stream YAML file (default: the paper's stream)")
    parser.add_argument("--out", type=Path, default=Path("runs/stream"), help="output folder")
    parser.add_argument("--base", help="base model path or hub id (default: the embedded tiny base)")
    parser.add_argument("--no-resume", dest="resume", action="store_false", help="start over in --out")
    parser.set_defaults(run=lambda args: stream(args.config, args.out, args.base, args.resume))
    parser = subcommands.add_parser("demo", help="the paper in miniature on the embedded world, as a report")
    parser.add_argument("--quick", action="store_true", help="short recipes, few samples: a smoke run in minutes")
    parser.add_argument("--out", type=Path, help="report folder (default runs/demo, or runs/demo-quick)")
    parser.add_argument("--steps", type=int, help="training steps per task of every expert and fine-tuning (250)")
    parser.set_defaults(run=lambda args: demo(args.quick, args.out, args.steps))
