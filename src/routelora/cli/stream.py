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


def demo(
    quick: bool = False,
    out: Path | None = None,
    steps: int | None = None,
    seeds: list[int] | None = None,
    full_steps: int | None = None,
) -> Path:
    """The main job: the paper in miniature on the embedded world, written as a report.

    Generates the world and builds the pretrained tiny base (both cached), runs the continual-learning stream over
    every method, the paper's other tables and figures, and writes ``results.json``, ``report.md`` and
    ``report.html`` into ``out``, with each of the paper's claims marked held or not, and its numbers.

    Args:
        quick: short recipes and 32 samples per task (about 3 minutes with the base cached): a run of the whole
            pipeline, not a result.
        out: report folder (default ``runs/demo``, ``runs/demo-quick`` with ``quick``); a stream of the same
            settings there is resumed, one of other settings refused.
        steps: training steps per task of every LoRA (the experts, the sequential and the multi-task LoRA;
            default 500 of 8 samples); gates keep their 100 steps.
        seeds: run everything once per seed, into ``out/seed-<n>``, and write ``seeds.json`` and ``seeds.html``
            with each claim's figures at every seed (a claim holds only where it held at every seed); the world
            and the pretrained base are shared (default ``runs/demo-seeds``).
        full_steps: training steps per task of full fine-tuning (sequential, replay, multi-task; default 250 of
            16 samples).
    """
    from dataclasses import replace

    from routelora.errors import RouteloraError
    from routelora.experiments.paper import FULL, QUICK, run_paper

    start = time.perf_counter()
    default = "runs/demo-quick" if quick else "runs/demo"
    out = out or Path(f"{default}-seeds" if seeds else default)
    config = QUICK if quick else FULL
    if steps is not None or full_steps is not None:
        stream = config.stream
        try:
            recipes = {
                "expert": replace(stream.expert, steps=stream.expert.steps if steps is None else steps),
                "full": replace(stream.full, steps=stream.full.steps if full_steps is None else full_steps),
            }
            config = replace(config, stream=replace(stream, **recipes))
        except ValueError as error:
            raise RouteloraError(f"--steps/--full-steps: {error}") from None
    from routelora.training.distributed import process_state

    if seeds:
        from routelora.experiments.paper_seeds import run_seeds

        try:
            summary = run_seeds(config, out, seeds)
        except ValueError as error:
            raise RouteloraError(f"--seeds: {error}") from None
        if not process_state().is_main_process:
            return out / "seeds.html"
        for claim in summary["claims"]:
            mark = "held" if claim["held_at_every_seed"] else "NOT held"
            at = ", ".join(f"{seed}: {held}" for seed, held in zip(summary["seeds"], claim["held"]))
            print(f"[{mark} at every seed] {claim['claim']} ({at})")
        print(f"done in {time.perf_counter() - start:.0f} s; summary: {out / 'seeds.html'}")
        return out / "seeds.html"
    results = run_paper(config, out)
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
    parser.add_argument("--steps", type=int, help="training steps per task of every LoRA (500 of 8 samples)")
    parser.add_argument("--full-steps", type=int, help="training steps per task of full fine-tuning (250 of 16)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="run at each seed and report every claim's spread (e.g. --seeds 0 1 2)"
    )
    parser.set_defaults(run=lambda args: demo(args.quick, args.out, args.steps, args.seeds, args.full_steps))
