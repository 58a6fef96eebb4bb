"""``routelora tiny ...``: the embedded tiny VLM (build, pretrain, find the cached pretrained base)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from routelora.cli.checkpoints import add_checkpoint_arguments, checkpointing, finished
from routelora.cli.common import print_table

if TYPE_CHECKING:
    from routelora.embedded.pretrain import PretrainReport


def tiny_build(out: Path, seed: int = 0) -> Path:
    """Build the untrained tiny VLM and write it as a checkpoint directory.

    Args:
        out: directory to create (must not exist or be empty).
        seed: seed of the weight initialisation.
    """
    from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
    from routelora.models.checkpoint import save_checkpoint

    recipe = TinyVLMRecipe(seed=seed)
    model, processor = build_tiny_vlm(recipe)
    return save_checkpoint(model, processor, out, extra={"recipe": asdict(recipe), "trained": False})


def tiny_pretrain(world: Path, out: Path, steps: int | None = None, seed: int = 0, checkpoint=None) -> PretrainReport:
    """Pretrain the tiny VLM on a world's retention benchmarks and write the checkpoint.

    Args:
        world: a generated task world (``routelora world generate``).
        out: checkpoint directory to create.
        steps: optimizer steps (default: the recipe's).
        seed: seed of the weight initialisation and of batch sampling.
        checkpoint: a ``Checkpointing`` (save every N steps, resume a killed run), or None.
    """
    from routelora.embedded.pretrain import PretrainRecipe, pretrain_tiny
    from routelora.embedded.tiny import TinyVLMRecipe

    recipe = PretrainRecipe(seed=seed) if steps is None else PretrainRecipe(seed=seed, steps=steps)
    report = pretrain_tiny(world, out, TinyVLMRecipe(seed=seed), recipe, checkpoint=checkpoint)
    finished(checkpoint)
    return report


def tiny_path() -> Path:
    """Where the cached pretrained tiny base is, pretraining it first if needed (a few minutes)."""
    from routelora.embedded.cache import cached_base

    return cached_base()


def _run_build(args: argparse.Namespace) -> None:
    print(f"wrote the tiny VLM (untrained) to {tiny_build(args.out, args.seed)}")


def _run_pretrain(args: argparse.Namespace) -> None:
    checkpoint = checkpointing(args, Path(f"{args.out}.checkpoint"))
    report = tiny_pretrain(args.world, args.out, args.steps, args.seed, checkpoint)
    print(f"pretrained in {report.seconds:.0f} s, final loss {report.final_loss:.3f}; wrote {args.out}")
    print_table([(task, f"{score:.3f}") for task, score in report.scores.items()])


def _run_path(args: argparse.Namespace) -> None:
    path = tiny_path()
    if args.json:
        print(json.dumps({"path": str(path), **json.loads((path / "routelora.json").read_text())}, indent=1))
    else:
        print(path)


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``tiny`` and its sub-commands to the CLI."""
    parser = subcommands.add_parser("tiny", help="the embedded tiny VLM")
    actions = parser.add_subparsers(dest="tiny_command", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="write the untrained tiny VLM as a checkpoint directory")
    build.add_argument("--out", type=Path, required=True, help="directory to create")
    build.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation")
    build.set_defaults(run=_run_build)
    pretrain = actions.add_parser("pretrain", help="pretrain the tiny VLM on a world's retention benchmarks")
    pretrain.add_argument("--world", type=Path, required=True, help="a generated task world")
    pretrain.add_argument("--out", type=Path, required=True, help="checkpoint directory to create")
    pretrain.add_argument("--steps", type=int, help="optimizer steps (default: the recipe's)")
    pretrain.add_argument("--seed", type=int, default=0)
    add_checkpoint_arguments(pretrain)
    pretrain.set_defaults(run=_run_pretrain)
    path = actions.add_parser("path", help="print where the cached pretrained base is (pretraining it if needed)")
    path.add_argument("--json", action="store_true", help="also print its recipe and scores")
    path.set_defaults(run=_run_path)
