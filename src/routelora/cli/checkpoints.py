"""``--checkpoint-every`` and ``--resume``, the same on every training command."""

import argparse
import shutil
from pathlib import Path

from routelora.errors import RouteloraError


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="save a checkpoint (weights, optimiser, scheduler, random states, data position) every N steps",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint a killed run of this command left"
    )


def checkpointing(args: argparse.Namespace, folder: Path):
    """The :class:`~routelora.training.checkpoint.Checkpointing` the flags ask for (None: no checkpoints)."""
    from routelora.training.checkpoint import Checkpointing

    folder = Path(folder)
    if folder.exists() and not args.resume:
        raise RouteloraError(
            f"{folder} holds a checkpoint of an earlier run of this command; pass --resume to continue it, or "
            "remove the folder to start over"
        )
    if args.checkpoint_every is None and not args.resume:
        return None
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise RouteloraError(f"--checkpoint-every must be at least 1, got {args.checkpoint_every}")
    return Checkpointing(folder, every=args.checkpoint_every or 100, resume=args.resume)


def finished(checkpoint) -> None:
    """The run's result is written: its checkpoint is no longer needed."""
    if checkpoint is not None:
        shutil.rmtree(checkpoint.folder, ignore_errors=True)
