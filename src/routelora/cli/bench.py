"""``routelora bench routing``: what routing costs against the base layer, a per-expert loop and PEFT's Arrow;
``routelora bench decision``: what the routers add to a whole prefill, decision included; ``routelora bench
generate``: generation throughput against the base and PEFT.

Prints figures and checks them against the targets in words; it never fails on a slow figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routelora.cli.config_args import add_config_arguments, config_from_arguments

if TYPE_CHECKING:
    from routelora.bench.config import (
        DecisionBenchConfig,
        GenerateBenchConfig,
        RoutingBenchConfig,
        ServeBenchConfig,
    )


def _environment() -> dict[str, Any]:
    import peft
    import torch

    return {
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],  # other processes' share of the cores skews every figure
        "torch": torch.__version__,
        "peft": peft.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "python": platform.python_version(),
    }


def bench_routing(config: RoutingBenchConfig, markdown: bool = False, json_path: Path | None = None) -> str:
    """Run the routing benchmark and return the report to print (table, then one line per target).

    Args:
        config: sizes, expert counts, top-k values, repeats and threads to measure.
        markdown: give the table as Markdown (for the README) instead of aligned text.
        json_path: also write the configuration, environment, rows and target lines there as JSON.
    """
    from routelora.bench.routing import format_table, markdown_table, run_routing_bench, target_summary

    load_before = os.getloadavg()[0]
    rows = run_routing_bench(config, progress=lambda step: print(f"timing {step}", file=sys.stderr, flush=True))
    environment = {**_environment(), "load_average_1min_before": load_before}
    if config.threads is not None:
        environment["threads"] = config.threads
    summary = target_summary(rows)
    _save_report(json_path, config, environment, rows, summary)
    header = (
        f"float32, CPU, torch {environment['torch']}, peft {environment['peft']}, {environment['threads']} threads; "
        f"{config.tokens} tokens, rank {config.rank}; median of {config.repeats} after {config.warmup} warm-up; "
        f"load average {load_before:.1f} before, {environment['load_average_1min']:.1f} after, "
        f"on {environment['cpus']} CPUs"
    )
    if markdown:
        return "\n".join([header, "", markdown_table(rows), "", *(f"- {line}" for line in summary)])
    return "\n".join([header, "", format_table(rows), "", *summary])


def _run_routing(args: argparse.Namespace) -> None:
    from routelora.bench.config import RoutingBenchConfig

    config = config_from_arguments(args, RoutingBenchConfig)
    print(bench_routing(config, markdown=args.markdown, json_path=args.json))
    if args.json is not None:
        print(f"wrote {args.json}")


def bench_decision(config: DecisionBenchConfig) -> str:
    """Run the decision benchmark and return its Markdown table with a line per target."""
    import torch

    from routelora.bench.decision import bench_shape
    from routelora.routing.config import PRESETS

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    load_before = os.getloadavg()[0]
    rows = []
    for shape in config.shapes:
        print(f"timing {shape}", file=sys.stderr, flush=True)
        rows.append(
            bench_shape(shape, config.experts, config.rank, config.batch, config.words, config.repeats, config.warmup)
        )
    environment = _environment()
    head = ["shape", "prompt tokens", "base prefill", *(f"{name} / base" for name in PRESETS), "decision / base"]
    head.append("decision, any run / base")
    lines = [
        f"float32, CPU, torch {environment['torch']}, {environment['threads']} threads; {config.experts} random "
        f"experts of rank {config.rank} and 3 base candidates; median of {config.repeats}; load average "
        f"{load_before:.1f} before, {environment['load_average_1min']:.1f} after",
        "",
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
    ]
    for row in rows:
        cells = [row["shape"], str(row["tokens"]), f"{1000 * row['base_s']:.1f} ms"]
        cells += [f"{row[f'{name}_ratio']:.3f}" for name in PRESETS]
        cells += [f"{row['decision_share']:.4f}", f"{row['decision_any_run_share']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for row in rows:
        overhead = row["routelora_ratio"] - 1
        met = "met" if overhead <= 0.10 else "NOT met"
        lines.append(
            f"- {row['shape']}: default router prefill overhead {100 * overhead:+.1f}% (target <= 10%: {met})"
        )
    return "\n".join(lines)


def _run_decision(args: argparse.Namespace) -> None:
    from routelora.bench.config import DecisionBenchConfig

    print(bench_decision(config_from_arguments(args, DecisionBenchConfig)))


def bench_generate(config: GenerateBenchConfig, json_path: Path | None = None) -> str:
    """Run the generation benchmark and return its Markdown tables with a line per target and check.

    Args:
        config: shapes, workload and repeats to measure.
        json_path: also write the configuration, environment and every figure there as JSON.
    """
    import torch

    from routelora.bench.generate import bench_shape, format_shape
    from routelora.embedded.cache import cached_world

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    load_before = os.getloadavg()[0]
    world = cached_world(progress=False)
    rows = []
    for shape in config.shapes:
        prompts = config.prompts if shape == "tiny" else config.realistic_prompts
        row = bench_shape(
            shape,
            world,
            prompts=prompts,
            batch=config.batch,
            new_tokens=config.new_tokens,
            experts=config.experts,
            large_library=config.large_library,
            rank=config.rank,
            repeats=config.repeats,
            warmup=config.warmup,
            progress=lambda step: print(step, file=sys.stderr, flush=True),
        )
        rows.append(row)
    environment = {**_environment(), "load_average_1min_before": load_before}
    _save_report(json_path, config, environment, rows)
    head = (
        f"float32, CPU, torch {environment['torch']}, peft {environment['peft']}, {environment['threads']} threads; "
        f"greedy, batch {config.batch}, exactly {config.new_tokens} new tokens; median of {config.repeats} after "
        f"{config.warmup} warm-up; load average {load_before:.1f} before, {environment['load_average_1min']:.1f} after"
    )
    return "\n\n".join([head, *(format_shape(row) for row in rows)])


def _run_generate(args: argparse.Namespace) -> None:
    from routelora.bench.config import GenerateBenchConfig

    print(bench_generate(config_from_arguments(args, GenerateBenchConfig), json_path=args.json))
    if args.json is not None:
        print(f"wrote {args.json}")


def bench_serve(config: ServeBenchConfig, json_path: Path | None = None) -> str:
    """Run the serving load test and return its Markdown table with a line per target.

    Args:
        config: requests, clients, tokens and the servers' batching to measure.
        json_path: also write the configuration, environment and every figure there as JSON.
    """
    from routelora.bench.serve import markdown_table, run_serve_bench, target_lines
    from routelora.embedded.cache import cached_world

    load_before = os.getloadavg()[0]
    rows = run_serve_bench(config, cached_world(progress=False), lambda step: print(step, file=sys.stderr, flush=True))
    environment = {**_environment(), "load_average_1min_before": load_before}
    targets = target_lines(rows, config.concurrency)
    _save_report(json_path, config, environment, rows, targets)
    head = (
        f"routelora serve on loopback, tiny base (random weights), float32, CPU, torch {environment['torch']}; "
        f"{config.requests} requests per round (caption and mcq taking turns, one image each), exactly "
        f"{config.new_tokens} new tokens each; --max-batch {config.max_batch}, "
        f"--threads {config.threads or 'default'}; "
        f"median of {config.rounds} rounds; load average {load_before:.1f} "
        f"before, {environment['load_average_1min']:.1f} after, on {environment['cpus']} CPUs"
    )
    return "\n".join([head, "", markdown_table(rows), "", *(f"- {line}" for line in targets)])


def _run_serve(args: argparse.Namespace) -> None:
    from routelora.bench.config import ServeBenchConfig

    print(bench_serve(config_from_arguments(args, ServeBenchConfig), json_path=args.json))
    if args.json is not None:
        print(f"wrote {args.json}")


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``bench`` and its sub-commands to the CLI.

    Its measurement flags are the fields of RoutingBenchConfig (:mod:`routelora.cli.config_args`).
    """
    parser = subcommands.add_parser("bench", help="measure speed and memory (prints figures, asserts none)")
    benches = parser.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    routing = benches.add_parser(
        "routing",
        help="RoutedLinear against the base layer, a per-expert loop and PEFT's Arrow (float32, CPU)",
        description="Time the base nn.Linear, RoutedLinear, a per-expert Python loop and PEFT's Arrow router on "
        "every combination of size, expert count and top-k; print ratios, the FLOP bound, speed-ups and the "
        "routed layer's memory per expert.",
    )
    from routelora.bench.config import DecisionBenchConfig, GenerateBenchConfig, RoutingBenchConfig, ServeBenchConfig

    add_config_arguments(routing, RoutingBenchConfig)
    routing.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    routing.add_argument("--markdown", action="store_true", help="print the table as Markdown, for the README")
    routing.set_defaults(run=_run_routing)
    decision = benches.add_parser(
        "decision",
        help="prefill of the base against every router preset, decision included (random models, float32, CPU)",
        description="Time whole prefills of a random tiny base and of a random 24-layer, 2048-wide language model, "
        "plain and under every router preset, and the default router's decision alone.",
    )
    add_config_arguments(decision, DecisionBenchConfig)
    decision.set_defaults(run=_run_decision)
    generate = benches.add_parser(
        "generate",
        help="generation throughput: base, every router, one expert, PEFT one adapter and mixed batches (CPU)",
        description="Greedy generation of mixed caption and mcq prompts at fixed lengths on a random tiny base and "
        "a random 1024-wide, 8-layer language model: tokens/s, ratio to base, prefill and decode seconds of the "
        "base, every router preset, the default router grouped by route, a 64-expert library, one expert, and "
        "PEFT with one adapter and with every adapter in a mixed batch; checks that the routed tokens equal PEFT's.",
    )
    add_config_arguments(generate, GenerateBenchConfig)
    generate.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    generate.set_defaults(run=_run_generate)
    serve = benches.add_parser(
        "serve",
        help="load test of routelora serve on loopback: req/s, tokens/s, p50/p99, failures (tiny base, CPU)",
        description="Start routelora serve over a random tiny base and library, and the base alone, each in a "
        "process of its own on 127.0.0.1; send both the same mixed caption and mcq requests one at a time and "
        "from --concurrency clients at once; print requests and tokens per second, p50 and p99 latency and failures.",
    )
    add_config_arguments(serve, ServeBenchConfig)
    serve.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    serve.set_defaults(run=_run_serve)


def _save_report(json_path: Path | None, config, environment: dict, rows: list, targets=None) -> None:
    """A bench's JSON report: its settings, the machine, every row and (where it has them) its targets."""
    if json_path is None:
        return
    from routelora import io

    report = {"config": asdict(config), "environment": environment, "rows": rows}
    io.write_json(json_path, report if targets is None else {**report, "targets": targets}, indent=1)
