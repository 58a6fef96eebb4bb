"""Routers side by side on one library: routed scores against the oracle and the base, and routing accuracy.

Run with ``python -m routelora.experiments.routing_ablation --library runs/demo/library [--limit N]`` after the
demo has built the library; the world and the base come from the routelora cache, as in the demo. The table it
prints is the evidence in docs/routing.md for the default router.
"""

import argparse
from dataclasses import asdict, replace
from pathlib import Path

import torch

from routelora import io
from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.data.task import load_task
from routelora.embedded.cache import cached_base, cached_world
from routelora.embedded.world import tasks_of_kind
from routelora.evaluation.suite import base_condition, oracle_conditions, routed_condition, score_conditions
from routelora.experts import ExpertLibrary
from routelora.experts.library import load_base_prototypes
from routelora.gates.prototypes import general_prototypes
from routelora.models import load_vlm
from routelora.models.layout import image_token_id, text_token_mask
from routelora.reports.tables import router_markdown
from routelora.routing.config import PAPER_OPEN, PAPER_ROUTER, TEXT_PROTOTYPES, RouterConfig
from routelora.routing.model import attach_router

SPECIALISED = tasks_of_kind("specialised")
RETENTION = tasks_of_kind("retention")

CLOSED = RouterConfig(open_world=False)
"""routelora's router before world v5: the discriminant alone, the retention benchmarks' statistics as base
candidates (every closed-world row below is given them)."""
ROUTERS = {
    "routelora (default: open world, no general data)": RouterConfig(),
    "routelora, closed world": CLOSED,
    "closed world, no base candidates": replace(CLOSED, base_candidates=False),
    "closed world, text features only": replace(CLOSED, features="text"),
    "closed world, nearest mean (text and image)": replace(CLOSED, rule="nearest_mean"),
    "closed world, shrinkage 0.01": replace(CLOSED, shrinkage=0.01),
    "closed world, shrinkage 0.5": replace(CLOSED, shrinkage=0.5),
    "open world, quantile 1.0": RouterConfig(acceptance_quantile=1.0),
    "open world, margin 1.25": RouterConfig(acceptance_margin=1.25),
    "text-prototypes (earlier default)": TEXT_PROTOTYPES,
    "per-layer sequence decisions": replace(TEXT_PROTOTYPES, decide_from="each_layer"),
    "per-layer, gates": replace(TEXT_PROTOTYPES, decide_from="each_layer", vectors="gates", base_candidates=False),
    "token-level prototypes": replace(TEXT_PROTOTYPES, granularity="token"),
    "paper (token gates, top-1)": PAPER_ROUTER,
    "paper behind the regions (paper-open)": PAPER_OPEN,
    "paper, top-2": replace(PAPER_ROUTER, top_k=2),
    "paper, no normalisation": replace(PAPER_ROUTER, normalise=False),
    "paper, fallback 3": replace(PAPER_ROUTER, fallback_threshold=3.0),
    "paper, fallback 5": replace(PAPER_ROUTER, fallback_threshold=5.0),
    "paper, fallback 7": replace(PAPER_ROUTER, fallback_threshold=7.0),
}
"""Every router compared, by the label printed in the table."""


def run_ablation(
    base: Path,
    world: Path,
    library: Path,
    routers: dict[str, RouterConfig],
    limit: int | None,
    split: str = "test",
    experts: list[str] | None = None,
):
    """Scores of the base, of each task's own expert alone and of every router; per router, the share of each
    task's sequences sent to its own candidate (of its text tokens, for routers that decide per token or layer).
    ``experts`` restricts the library to some expert names."""
    model, processor = load_vlm(base)
    experts, base_prototypes = ExpertLibrary(library).load(experts), load_base_prototypes(library)
    tasks = [load_task(world / f"{name}.yaml") for name in SPECIALISED + RETENTION]
    if not base_prototypes:  # the closed-world rows' base candidates: the retention benchmarks' own statistics
        base_prototypes = general_prototypes(model, processor, tasks[len(SPECIALISED) :], progress=False)
    conditions = [base_condition(), *oracle_conditions([e for e in experts if e.name in SPECIALISED])]
    conditions += [
        routed_condition(label, experts, config, None if config.open_world else base_prototypes)
        for label, config in routers.items()
    ]
    suite = score_conditions(model, processor, conditions, tasks, split=split, limit=limit, progress=_bar)
    scores = {
        label: {task: result.score for task, result in results.items()} for label, results in suite.results.items()
    }
    shares = suite.own_shares()
    for label in routers:
        print(f"{label}: " + ", ".join(f"{t} {s:.3f}" for t, s in scores[label].items()), flush=True)
    return scores, shares


def _bar(condition, task) -> bool | str:
    """Progress bars for the routers only, labelled with the router."""
    return condition.label if condition.label not in ("base", "oracle") else False


@torch.no_grad()
def best_gate_scores(base: Path, world: Path, library: Path, samples: int = 32) -> dict[str, list[float]]:
    """Quantiles (5, 25, 50, 75, 95 %) of each prompt text token's best gate score under the paper's router, over
    all layers, per task: where a fallback threshold would have to sit to separate general from specialised data."""
    model, processor = load_vlm(base)
    handle = attach_router(model, library, PAPER_ROUTER)
    best: dict[str, torch.Tensor] = {}

    def keep(name: str):
        return lambda module, inputs, output: best.__setitem__(name, module.scores(inputs[0].flatten(0, -2)))

    hooks = [layer.register_forward_hook(keep(name)) for name, layer in handle.layers.items()]
    collator = VLMCollator(processor)
    quantiles = {}
    for name in SPECIALISED + RETENTION:
        batch = collator(load_split(load_task(world / f"{name}.yaml"), "test", limit=samples).samples, False)
        model(**batch)
        text = text_token_mask(batch["input_ids"], batch["attention_mask"], image_token_id(model.config)).flatten()
        top = torch.stack([scores[text].max(-1).values for scores in best.values()])  # (layers, text tokens)
        quantiles[name] = torch.quantile(top.flatten(), torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])).tolist()
    for hook in hooks:
        hook.remove()
    handle.detach()
    return quantiles


def compare_unrelated(
    base: Path, world: Path, library: Path, task: str, limit: int | None, split: str, out: Path | None
) -> dict[str, dict[str, float]]:
    """The default router over the library without and with the expert of an unrelated ``task``; prints each task's
    score change in points of its metric (x100)."""
    from routelora.experiments.routing_comparison import EXPERT_RECIPE, GATE_RECIPE
    from routelora.experts.train import train_expert
    from routelora.gates.train import train_gates

    lib = ExpertLibrary(library)
    model, processor = load_vlm(base)
    if task not in lib:
        config = load_task(world / f"{task}.yaml")
        expert, _ = train_expert(model, processor, config, EXPERT_RECIPE)
        lib.add(train_gates(model, processor, expert, config, GATE_RECIPE)[0], name=task)
    experts = lib.load()
    others = [expert for expert in experts if expert.name != task]
    # One run of the suite, both routed conditions side by side: the base and the oracles are not needed here.
    conditions = [
        routed_condition("without", others, RouterConfig()),
        routed_condition("with", experts, RouterConfig()),
    ]
    tasks = [load_task(world / f"{name}.yaml") for name in SPECIALISED + RETENTION]
    suite = score_conditions(model, processor, conditions, tasks, split=split, limit=limit, progress=_bar)
    scores = suite.by_condition()
    moved = {name: 100 * (scores["with"][name] - scores["without"][name]) for name in scores["without"]}
    print(f"adding {task}: " + ", ".join(f"{name} {change:+.1f}" for name, change in moved.items()))
    if out:
        shares = suite.own_shares()
        io.write_json(out, {**scores, "moved_points": moved, "to_own": shares}, indent=1)
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", type=Path, default=Path("runs/demo/library"))
    parser.add_argument("--base", type=Path, help="base model (default: the cached embedded base)")
    parser.add_argument("--world", type=Path, help="world directory (default: the cached world)")
    parser.add_argument("--limit", type=int, help="evaluate the first N test samples of each task")
    parser.add_argument("--out", type=Path, help="write the scores and shares here as JSON")
    parser.add_argument("--split", default="test", help="test, or test_reworded (held-out instruction phrasings)")
    parser.add_argument("--routers", help="labels of ROUTERS to run, separated by semicolons (default: all)")
    parser.add_argument("--experts", help="comma-separated expert names to route between (default: the library's)")
    parser.add_argument("--no-gate-scores", action="store_true", help="skip the paper router's gate-score quantiles")
    parser.add_argument(
        "--unrelated",
        help="a world task (e.g. chart_trend): train its expert into the library with the demo's recipe if missing, "
        "then score the default router with and without it and print how much each task moved",
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    base, world = args.base or cached_base(), args.world or cached_world()
    if args.unrelated:
        compare_unrelated(base, world, args.library, args.unrelated, args.limit, args.split, args.out)
        return
    unknown = [label for label in (args.routers or "").split(";") if label and label not in ROUTERS]
    if unknown:
        parser.error(f"--routers: unknown {unknown}; known: {', '.join(ROUTERS)}")
    routers = ROUTERS if not args.routers else {label: ROUTERS[label] for label in args.routers.split(";")}
    experts = args.experts.split(",") if args.experts else None
    scores, shares = run_ablation(base, world, args.library, routers, args.limit, args.split, experts)
    print(router_markdown(scores, shares, SPECIALISED, RETENTION))
    if args.no_gate_scores:
        if args.out:
            result = {
                "routers": {label: asdict(c) for label, c in routers.items()},
                "scores": scores,
                "to_own": shares,
            }
            io.write_json(args.out, {**result, "split": args.split}, indent=1)
        return
    quantiles = best_gate_scores(base, world, args.library)
    print("best gate score of prompt text tokens, paper router (5/25/50/75/95 %):")
    for task, values in quantiles.items():
        print(f"  {task:<11} " + " ".join(f"{v:6.2f}" for v in values))
    if args.out:
        configs = {label: asdict(config) for label, config in routers.items()}
        result = {"routers": configs, "scores": scores, "to_own": shares, "best_gate_score_quantiles": quantiles}
        result["split"] = args.split
        io.write_json(args.out, result, indent=1)


if __name__ == "__main__":
    main()
