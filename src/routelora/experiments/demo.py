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
from routelora.environment import package_versions
from routelora.evaluation.evaluate import evaluate_task
from routelora.evaluation.plots import routing_heatmap
from routelora.evaluation.routing_report import layer_shares, routing_report
from routelora.experts import ExpertLibrary
from routelora.experts.library import save_base_prototypes
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.gates.prototypes import compute_prototypes
from routelora.gates.train import GateTrainConfig, train_gates
from routelora.models import get_layout, load_vlm
from routelora.routing.config import ONE_EXPERT, PAPER_ROUTER, RouterConfig
from routelora.routing.model import attach_router

SPECIALISED = ("caption", "entailment", "meme", "genre")
RETENTION = ("mcq", "chart", "doc")
EXPERT_RECIPE = ExpertTrainConfig(rank=8, alpha=16, lr=2e-3, steps=300, batch_size=16)
GATE_RECIPE = GateTrainConfig()
# What routelora uses by default; see docs/routing.md for the evidence.
DEFAULT_ROUTER = RouterConfig()


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
    targets = get_layout(model).targets
    for name in RETENTION:
        if not (library / "_base" / f"{name}.safetensors").is_file():
            from routelora.data.samples import load_split

            samples = load_split(load_task(world / f"{name}.yaml"), "train", limit=256).samples
            save_base_prototypes(library, name, compute_prototypes(model, processor, samples, targets, progress=name))
    return lib


def evaluate_all(base: Path, world: Path, library: Path, out: Path, router: RouterConfig, limit: int | None = None):
    """Base, oracle (each task's own expert alone) and routed scores on every task, with the routing report.

    Routed scores are taken twice: with ``router`` and with the paper's recipe (:data:`PAPER_ROUTER`).
    """
    model, processor = load_vlm(base)
    lib = ExpertLibrary(library)
    experts = lib.load()
    names = [e.name for e in experts]
    tasks = [load_task(world / f"{name}.yaml") for name in SPECIALISED + RETENTION]
    rows = {task.name: {} for task in tasks}
    for task in tasks:
        rows[task.name]["base"] = evaluate_task(model, processor, task, limit=limit).score
    for expert in experts:
        handle = attach_router(model, [expert], ONE_EXPERT)
        for task in tasks:
            if task.name == expert.name:
                rows[task.name]["oracle"] = evaluate_task(model, processor, task, limit=limit).score
        handle.detach()
    reports = {}
    for label, config in (("routed", router), ("paper", PAPER_ROUTER)):
        handle = attach_router(model, lib, config)
        reports[label] = []
        for task in tasks:
            handle.record()
            rows[task.name][label] = evaluate_task(model, processor, task, limit=limit).score
            counts = handle.routing_counts()
            reports[label].append(routing_report(task.name, counts, names, task.name if task.name in names else None))
            title, png = f"{label} routing on {task.name}", out / f"{label}-routing-{task.name}.png"
            routing_heatmap(layer_shares(counts), list(counts), [*names, "base"], title, png)
        handle.detach()
    return rows, reports


def markdown(rows: dict, reports: dict) -> str:
    """Scores and routing accuracy, the default router and the paper's recipe side by side.

    Shares are of text / image tokens sent to the task's own expert (to the base model for retention tasks),
    averaged over layers.
    """
    lines = [
        "| task | base | own expert | routed (default) | text / image to own | paper recipe | text / image to own |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for default, paper in zip(reports["routed"], reports["paper"]):
        row = rows[default.task]
        oracle = f"{row['oracle']:.3f}" if "oracle" in row else ""
        lines.append(
            f"| {default.task} | {row['base']:.3f} | {oracle} | {row['routed']:.3f} | "
            f"{default.mean_share('text'):.2f} / {default.mean_share('image'):.2f} | {row['paper']:.3f} | "
            f"{paper.mean_share('text'):.2f} / {paper.mean_share('image'):.2f} |"
        )
    return "\n".join(lines)


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
    rows, reports = evaluate_all(base, world, library.root, args.out, router, args.limit)
    table = markdown(rows, reports)
    print(table)
    routing = {label: [vars(r) for r in items] for label, items in reports.items()}
    results = {"router": asdict(router), "scores": rows, "routing": routing, "environment": package_versions()}
    io.write_json(args.out / "results.json", results, indent=1)
    io.atomic_write(args.out / "results.md", (table + "\n").encode())
    print(f"done in {time.perf_counter() - start:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
