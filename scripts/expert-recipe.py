"""Compare expert recipes on validation data only: each task's expert is trained on its training split less the
last HOLDOUT samples and scored on those (never on a test split), one JSON line per (seed, recipe, task).

    python scripts/expert-recipe.py --out runs/recipes.jsonl --seeds 0 1 2 \
        --recipe '{"lr": 0.004}' --recipe '{"lr": 0.001, "lora_plus_ratio": 16, "steps": 500, "batch_size": 8}'

A recipe is a JSON object of ``ExpertTrainConfig`` fields over the stream's earlier default (rank 8, alpha 16, lr
4e-3, 250 steps of 16); ``"full": true`` in it fine-tunes the whole language model instead (as the stream's
full fine-tuning baselines do, from that recipe's lr, steps and batch size), scored on the same held-out samples.
The base is the cached tiny base unless ``--base`` names another, or ``--text-hidden`` and ``--text-intermediate``
give the width of another tiny base (pretrained and cached on first use with the default pretraining recipe, to
see how the gap between LoRA and full fine-tuning moves with the model's size). docs/demo.md, "The expert recipe",
has the studies this made.
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from routelora import io, load_vlm
from routelora.data.collate import VLMCollator
from routelora.data.task import load_task
from routelora.embedded.cache import cached_base, cached_world
from routelora.embedded.tiny import TinyVLMRecipe
from routelora.experts.config import ExpertTrainConfig
from routelora.experts.train import split_holdout, train_expert
from routelora.experts.validation import check_against_baseline
from routelora.methods.finetune import fine_tune_language_model, language_model_weights

EARLIER = ExpertTrainConfig(rank=8, alpha=16, lr=4e-3, steps=250, batch_size=16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file (appended to)")
    parser.add_argument("--recipe", action="append", required=True, help="JSON object of ExpertTrainConfig fields")
    parser.add_argument("--tasks", nargs="+", default=["caption", "entailment", "meme", "genre"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--holdout", type=int, default=64, help="held-out training samples scored")
    parser.add_argument("--base", help="base model (default: the cached tiny base)")
    parser.add_argument("--text-hidden", type=int, help="width of a tiny base of another size")
    parser.add_argument("--text-intermediate", type=int, help="its MLP width (with --text-hidden)")
    args = parser.parse_args()
    recipes = [json.loads(text) for text in args.recipe]
    world = cached_world()
    if (args.text_hidden is None) != (args.text_intermediate is None):
        parser.error("--text-hidden and --text-intermediate go together")
    if args.text_hidden is not None:
        recipe = TinyVLMRecipe(text_hidden=args.text_hidden, text_intermediate=args.text_intermediate)
        args.base = cached_base(recipe, evaluate_tasks=("mcq", "chart", "doc"), eval_limit=100)
        scores = io.read_json(args.base / "routelora.json")["scores"]
        print(json.dumps({"base": str(args.base), "text_hidden": args.text_hidden, "scores": scores}), flush=True)
    model, processor = load_vlm(args.base or cached_base())
    for seed in args.seeds:
        for fields in recipes:
            settings = {key: value for key, value in fields.items() if key != "full"}
            config = replace(EARLIER, **settings, seed=seed, holdout=args.holdout, check_samples=args.holdout)
            for name in args.tasks:
                start = time.perf_counter()
                task = load_task(world / f"{name}.yaml")
                if fields.get("full"):
                    check, final_loss = _full_fine_tuning(model, processor, task, config)
                else:
                    expert, result = train_expert(model, processor, task, config, False)
                    check, final_loss = expert.metadata["training"]["validation_check"], result.losses[-1]
                row = {"task": name, "recipe": fields, "seed": seed, "score": check["score"]}
                row |= {"baseline": check["baseline"], "final_loss": final_loss}
                row["seconds"] = time.perf_counter() - start
                print(json.dumps(row), flush=True)
                with args.out.open("a") as file:
                    file.write(json.dumps(row) + "\n")


def _full_fine_tuning(model, processor, task, config: ExpertTrainConfig) -> tuple[dict, float | None]:
    """The whole language model fine-tuned on the task's training samples less the held-out ones, then scored
    on those as an expert is; the model is given back as it was."""
    samples, held = split_holdout(task, config)
    held = held[: config.check_samples]
    trained = fine_tune_language_model(model, processor, [samples], config.total_steps(len(samples)), config)
    with language_model_weights(model, trained):
        check = check_against_baseline(model, VLMCollator(processor), task, samples, held)
    return check, None


if __name__ == "__main__":
    main()
