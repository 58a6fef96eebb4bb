"""``routelora world ...``: generate the procedural task world and look at it."""

import argparse
from pathlib import Path

from routelora.errors import RouteloraError


def world_generate(
    out: Path, seed: int = 0, size: str | None = None, tasks: list[str] | None = None, sheet: Path | None = None
) -> Path:
    """Write every task of the world as LLaVA-format JSONL + PNG images + a task YAML file.

    Args:
        out: directory to write (an earlier world there is replaced).
        seed: the world's seed; the same seed gives byte-identical files.
        size: a scale of the default sizes (``0.1``), or ``TRAIN,TEST`` samples for every task.
        tasks: restrict to these task names.
        sheet: also write a contact sheet PNG of a few samples per task.
    """
    from routelora.embedded.world import contact_sheet, generate_world

    generate_world(out, seed=seed, sizes=_parse_size(size), tasks=tasks)
    if sheet is not None:
        contact_sheet(out, sheet)
    return out


def _parse_size(size: str | None):
    if size is None:
        return None
    try:
        if "," in size:
            train, test = (int(part) for part in size.split(","))
            return (train, test)
        return float(size)
    except ValueError:
        raise RouteloraError(f"--size must be a scale like 0.5 or TRAIN,TEST like 200,50; got {size!r}") from None


def _run_generate(args: argparse.Namespace) -> None:
    tasks = args.tasks.split(",") if args.tasks else None
    out = world_generate(args.out, args.seed, args.size, tasks, args.sheet)
    print(f"wrote the task world to {out}" + (f"; contact sheet {args.sheet}" if args.sheet else ""))


def _run_sheet(args: argparse.Namespace) -> None:
    from routelora.embedded.world import contact_sheet

    print(f"wrote {contact_sheet(args.world, args.out, per_task=args.per_task)}")


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``world`` and its sub-commands to the CLI."""
    parser = subcommands.add_parser("world", help="the procedural task world (the embedded default data)")
    actions = parser.add_subparsers(dest="world_command", metavar="ACTION", required=True)
    generate = actions.add_parser("generate", help="write every task as JSONL + images + task YAML")
    generate.add_argument("--out", type=Path, required=True, help="directory to write")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--size", help="scale of the default sizes (0.1) or TRAIN,TEST per task (200,50)")
    generate.add_argument("--tasks", help="comma-separated task names (default: all)")
    generate.add_argument("--sheet", type=Path, help="also write a contact sheet PNG")
    generate.set_defaults(run=_run_generate)
    sheet = actions.add_parser("sheet", help="draw a few samples of each task as one PNG")
    sheet.add_argument("--world", type=Path, required=True)
    sheet.add_argument("--out", type=Path, required=True, help="PNG file to write")
    sheet.add_argument("--per-task", type=int, default=4)
    sheet.set_defaults(run=_run_sheet)
