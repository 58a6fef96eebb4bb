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
from routelora.models import load_vlm
from routelora.models.layout import image_token_id, text_token_mask
from routelora.reports.tables import router_markdown
from routelora.routing.config import PAPER_ROUTER, RouterConfig
from routelora.routing.model import attach_router

SPECIALISED = tasks_of_kind("specialised")
RETENTION = tasks_of_kind("retention")

ROUTERS = {
    "routelora (default)": RouterConfig(),
    "no base candidates": RouterConfig(base_candidates=False),
    "per-layer sequence decisions": RouterConfig(decide_from="each_layer"),
    "per-layer, gates": RouterConfig(decide_from="each_layer", vectors="gates", base_candidates=False),
    "token-level prototypes": RouterConfig(granularity="token"),
    "paper (token gates, top-1)": PAPER_ROUTER,
    "paper, top-2": replace(PAPER_ROUTER, top_k=2),
    "paper, no normalisation": replace(PAPER_ROUTER, normalise=False),
    "paper, fallback 3": replace(PAPER_ROUTER, fallback_threshold=3.0),
    "paper, fallback 5": replace(PAPER_ROUTER, fallback_threshold=5.0),
    "paper, fallback 7": replace(PAPER_ROUTER, fallback_threshold=7.0),
}
"""Every router compared, by the label printed in the table."""


def run_ablation(base: Path, world: Path, library: Path, routers: dict[str, RouterConfig], limit: int | None):
    """Scores of the base, of each task's own expert alone and of every router; routing shares per router."""
    model, processor = load_vlm(base)
    experts, base_prototypes = ExpertLibrary(library).load(), load_base_prototypes(library)
    tasks = [load_task(world / f"{name}.yaml") for name in SPECIALISED + RETENTION]
    conditions = [base_condition(), *oracle_conditions([e for e in experts if e.name in SPECIALISED])]
    conditions += [routed_condition(label, experts, config, base_prototypes) for label, config in routers.items()]
    suite = score_conditions(model, processor, conditions, tasks, limit=limit, progress=_bar)
    scores = {
        label: {task: result.score for task, result in results.items()} for label, results in suite.results.items()
    }
    shares = {
        label: {task: r.mean_share("text") for task, r in reports.items()} for label, reports in suite.routing.items()
    }
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", type=Path, default=Path("runs/demo/library"))
    parser.add_argument("--base", type=Path, help="base model (default: the cached embedded base)")
    parser.add_argument("--world", type=Path, help="world directory (default: the cached world)")
    parser.add_argument("--limit", type=int, help="evaluate the first N test samples of each task")
    parser.add_argument("--out", type=Path, help="write the scores and shares here as JSON")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    base, world = args.base or cached_base(), args.world or cached_world()
    scores, shares = run_ablation(base, world, args.library, ROUTERS, args.limit)
    print(router_markdown(scores, shares, SPECIALISED, RETENTION))
    quantiles = best_gate_scores(base, world, args.library)
    print("best gate score of prompt text tokens, paper router (5/25/50/75/95 %):")
    for task, values in quantiles.items():
        print(f"  {task:<11} " + " ".join(f"{v:6.2f}" for v in values))
    if args.out:
        routers = {label: asdict(config) for label, config in ROUTERS.items()}
        result = {"routers": routers, "scores": scores, "text_to_own": shares, "best_gate_score_quantiles": quantiles}
        io.write_json(args.out, result, indent=1)


if __name__ == "__main__":
    main()
