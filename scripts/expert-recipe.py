"""Compare expert recipes on validation data only: each task's expert is trained on its training split less the
last HOLDOUT samples and scored on those (never on a test split), one JSON line per (seed, recipe, task).

    python scripts/expert-recipe.py --out runs/recipes.jsonl --seeds 0 1 2 \
        --recipe '{"lr": 0.004}' --recipe '{"lr": 0.001, "lora_plus_ratio": 16, "steps": 500, "batch_size": 8}'

A recipe is a JSON object of ``ExpertTrainConfig`` fields over the stream's earlier default (rank 8, alpha 16, lr
4e-3, 250 steps of 16). The base is the cached tiny base unless ``--base`` names another (docs/demo.md, "The expert
recipe", has the study this made).
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from routelora import load_vlm
from routelora.data.task import load_task
from routelora.embedded.cache import cached_base, cached_world
from routelora.experts.config import ExpertTrainConfig
from routelora.experts.train import train_expert

EARLIER = ExpertTrainConfig(rank=8, alpha=16, lr=4e-3, steps=250, batch_size=16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file (appended to)")
    parser.add_argument("--recipe", action="append", required=True, help="JSON object of ExpertTrainConfig fields")
    parser.add_argument("--tasks", nargs="+", default=["caption", "entailment", "meme", "genre"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--holdout", type=int, default=64, help="held-out training samples scored")
    parser.add_argument("--base", help="base model (default: the cached tiny base)")
    args = parser.parse_args()
    recipes = [json.loads(text) for text in args.recipe]
    world = cached_world()
    model, processor = load_vlm(args.base or cached_base())
    for seed in args.seeds:
        for fields in recipes:
            config = replace(EARLIER, **fields, seed=seed, holdout=args.holdout, check_samples=args.holdout)
            for name in args.tasks:
                start = time.perf_counter()
                expert, result = train_expert(model, processor, load_task(world / f"{name}.yaml"), config, False)
                check = expert.metadata["training"]["validation_check"]
                row = {"task": name, "recipe": fields, "seed": seed, "score": check["score"]}
                row |= {"baseline": check["baseline"], "final_loss": result.losses[-1]}
                row["seconds"] = time.perf_counter() - start
                print(json.dumps(row), flush=True)
                with args.out.open("a") as file:
                    file.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
