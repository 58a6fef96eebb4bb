"""``routelora info MODEL``: what routelora sees in a model."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TYPE_CHECKING

from routelora.cli.common import add_model_arguments, print_table

if TYPE_CHECKING:
    from routelora.models import ModelSummary


def info(
    model: str,
    trust_remote_code: bool = False,
    language_model: str | None = None,
    target_pattern: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
) -> ModelSummary:
    """Load ``model`` (config and weights; no processor needed) and summarise its layout.

    Args:
        model: local checkpoint directory or hub id.
        trust_remote_code: allow the checkpoint's own modelling code.
        language_model: module path of the language model, for architectures routelora does not know.
        target_pattern: regular expression restricting the adapter targets.
        dtype: weights' dtype.
        device: where to load the model.
    """
    from routelora.models import get_layout, load_vlm, summarize

    vlm, _ = load_vlm(
        model,
        trust_remote_code=trust_remote_code,
        dtype=dtype,
        device=device or "cpu",
        language_model=language_model,
        target_pattern=target_pattern,
        with_processor=False,
    )
    return summarize(vlm, get_layout(vlm))


def _run(args: argparse.Namespace) -> None:
    summary = info(
        args.model, args.trust_remote_code, args.language_model, args.target_pattern, args.dtype, args.device
    )
    if args.json:
        print(json.dumps(asdict(summary), indent=2))
    else:
        print_table([("model", args.model), *summary.as_rows()])


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``info`` to the CLI."""
    parser = subcommands.add_parser("info", help="show a model's family, language model, adapter targets and sizes")
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=_run)
