"""The main job on the embedded default: world -> pretrained base -> 4 experts + gates -> routed evaluation.

Run with ``python -m routelora.experiments.demo --out runs/demo``. Every step is cached or resumable: the world
and the base live in the routelora cache, and experts already in the library are not trained again.
"""

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import torch

from routelora import io
from routelora.data.task import load_task
from routelora.embedded.cache import cached_base, cached_world
from routelora.embedded.world import tasks_of_kind
from routelora.environment import package_versions
from routelora.evaluation.suite import base_condition, oracle_conditions, routed_condition, score_conditions
from routelora.experts import ExpertLibrary
from routelora.experts.library import load_base_prototypes
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.gates.prototypes import store_base_prototypes
from routelora.gates.train import GateTrainConfig, train_gates
from routelora.models import load_vlm
from routelora.reports.plots import routing_heatmaps
from routelora.reports.tables import comparison_markdown
from routelora.routing.config import PAPER_ROUTER, RouterConfig

SPECIALISED = tasks_of_kind("specialised")
RETENTION = tasks_of_kind("retention")
EXPERT_RECIPE = ExpertTrainConfig(rank=8, alpha=16, lr=2e-3, steps=300, batch_size=16)
GATE_RECIPE = GateTrainConfig()
# What routelora uses by default; see docs/routing.md for the evidence.
DEFAULT_ROUTER = RouterConfig()
ROUTED = {"routed": "routed (default)", "paper": "paper recipe"}
"""The routed conditions compared, by label, with their column headings."""


def build_library(base: Path, world: Path, library: Path, limit_steps: int | None = None) -> ExpertLibrary:
    """Train an expert and its gates for each specialised task (skipping those already in the library)."""
    lib = ExpertLibrary(library)
    model, processor = load_vlm(base)
    recipe = (
        EXPERT_RECIPE if limit_steps is None else ExpertTrainConfig(**{**asdict(EXPERT_RECIPE), "steps": limit_steps})
    )
    for name in SPECIALISED:
        if name in lib:
            continue
        task = load_task(world / f"{name}.yaml")
        expert, _ = train_expert(model, processor, task, recipe)
        expert, _ = train_gates(model, processor, expert, task, GATE_RECIPE)
        lib.add(expert, name=name)
    general = [load_task(world / f"{name}.yaml") for name in RETENTION]
    store_base_prototypes(library, model, processor, general, samples=256, skip_existing=True)
    return lib


def evaluate_all(base: Path, world: Path, library: Path, out: Path, router: RouterConfig, limit: int | None = None):
    """Base, oracle (each task's own expert alone) and routed scores on every task, with the routing report.

    Routed scores are taken twice: with ``router`` and with the paper's recipe (:data:`PAPER_ROUTER`). Writes a
    routing heatmap per routed condition and task into ``out``.
    """
    model, processor = load_vlm(base)
    experts, base_prototypes = ExpertLibrary(library).load(), load_base_prototypes(library)
    tasks = [load_task(world / f"{name}.yaml") for name in SPECIALISED + RETENTION]
    conditions = [base_condition(), *oracle_conditions(experts)]
    conditions += [routed_condition("routed", experts, router, base_prototypes)]
    conditions += [routed_condition("paper", experts, PAPER_ROUTER, base_prototypes)]
    suite = score_conditions(model, processor, conditions, tasks, limit=limit)
    for label in ROUTED:
        routing_heatmaps(suite, label, out, prefix=f"{label}-", title=f"{label} routing on {{task}}")
    return suite


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--limit", type=int, help="evaluate the first N test samples of each task")
    parser.add_argument("--expert-steps", type=int, help="override the expert training steps")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    world = cached_world()
    base = cached_base()
    print(f"world {world}\nbase {base}")
    library = build_library(base, world, args.out / "library", args.expert_steps)
    router = DEFAULT_ROUTER
    suite = evaluate_all(base, world, library.root, args.out, router, args.limit)
    names = SPECIALISED + RETENTION
    table = comparison_markdown(suite, names, ROUTED)
    print(table)
    routing = {label: [vars(suite.routing[label][name]) for name in names] for label in ROUTED}
    scores = suite.by_task()
    results = {"router": asdict(router), "scores": scores, "routing": routing, "environment": package_versions()}
    io.write_json(args.out / "results.json", results, indent=1)
    io.atomic_write(args.out / "results.md", (table + "\n").encode())
    print(f"done in {time.perf_counter() - start:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
