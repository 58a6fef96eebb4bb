"""The ``routelora`` command: one sub-command per pipeline step, each a plain function in its own module.

Errors a user can act on (:class:`~routelora.errors.RouteloraError`) print as one line and exit with status 2;
anything else is a bug and exits with status 1; ``--debug`` shows the traceback of either.
"""

import argparse
import logging
import sys
from collections.abc import Sequence

from routelora._version import __version__
from routelora.cli import bench, evaluate, expert, export, info, library, predict, serve, stream, tiny, world
from routelora.errors import RouteloraError

COMMANDS = (info, world, tiny, evaluate, expert, library, predict, serve, export, stream, bench)

EXIT_USER_ERROR = 2
EXIT_BUG = 1


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="routelora",
        description="Continual learning for vision-language models by routing between LoRA experts.",
    )
    parser.add_argument("--version", action="version", version=f"routelora {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(subcommands)
    return parser


def _quiet_libraries(debug: bool) -> None:
    import transformers

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not debug:
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()


def _leave_process_group() -> None:
    """Under ``accelerate launch``, leave the process group before exiting: a gloo group still alive at exit can
    abort the process ("terminate called without an active exception") after its work is done."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries(args.debug)
    try:
        args.run(args)
        _leave_process_group()
    except RouteloraError as error:
        if args.debug:
            raise
        print(f"routelora: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("routelora: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: say so in one line, the traceback is one flag away
        if args.debug:
            raise
        print(
            f"routelora: unexpected error: {type(error).__name__}: {error} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_BUG
    return 0


if __name__ == "__main__":
    sys.exit(main())
