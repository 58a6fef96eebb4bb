"""``routelora serve``: an OpenAI-compatible server over a library (routed, engine mode, or front end)."""

import argparse
from pathlib import Path

from routelora.cli.common import add_model_arguments, add_router_arguments, model_load_options, router_config
from routelora.cli.config_args import add_config_arguments, config_from_arguments


def _run(args: argparse.Namespace) -> None:
    from routelora.serving.config import ServeConfig
    from routelora.serving.server import load_served, run

    config = config_from_arguments(args, ServeConfig)
    if args.library is None and (config.plain or config.engine):
        from routelora.errors import RouteloraError

        raise RouteloraError("engine and front-end modes serve a library: give --library DIR")
    served = load_served(args.base, args.library, config, router_config(args), **model_load_options(args))
    run(served)


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the CLI."""
    from routelora.serving.config import ServeConfig

    parser = subcommands.add_parser(
        "serve",
        help="an OpenAI-compatible HTTP server that routes each request to an expert or the base",
        description="POST /v1/chat/completions, GET /v1/models and GET /health on 127.0.0.1 unless --host says "
        "otherwise. model 'routelora' routes each request; the base's or an expert's name forces it. --plain "
        "serves the experts by name only (an engine); --engine URL decides here and forwards to an engine.",
    )
    parser.add_argument("--base", required=True, help="base model directory or hub id")
    parser.add_argument("--library", type=Path, help="expert library (omit to serve the base model alone)")
    add_config_arguments(parser, ServeConfig)
    add_model_arguments(parser, positional=False)
    add_router_arguments(parser)
    parser.set_defaults(run=_run)
