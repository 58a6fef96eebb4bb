"""``routelora tiny ...``: the embedded tiny VLM."""

import argparse
from pathlib import Path

from routelora.models.tiny import TinyVLMRecipe, build_tiny_vlm, save_checkpoint


def tiny_build(out: Path, seed: int = 0) -> Path:
    """Build the untrained tiny VLM and write it as a checkpoint directory.

    Args:
        out: directory to create (must not exist or be empty).
        seed: seed of the weight initialisation.
    """
    recipe = TinyVLMRecipe(seed=seed)
    model, processor = build_tiny_vlm(recipe)
    return save_checkpoint(model, processor, out, extra={"recipe": recipe.__dict__, "trained": False})


def _run_build(args: argparse.Namespace) -> None:
    out = tiny_build(args.out, args.seed)
    print(f"wrote the tiny VLM (untrained) to {out}")


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``tiny`` and its sub-commands to the CLI."""
    parser = subcommands.add_parser("tiny", help="the embedded tiny VLM")
    actions = parser.add_subparsers(dest="tiny_command", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="write the untrained tiny VLM as a checkpoint directory")
    build.add_argument("--out", type=Path, required=True, help="directory to create")
    build.add_argument("--seed", type=int, default=0, help="seed of the weight initialisation")
    build.set_defaults(run=_run_build)
