"""``routelora export peft``: a library as standard PEFT adapters for a multi-LoRA engine, with the router's
statistics and a manifest."""

import argparse
from pathlib import Path

from routelora.cli.common import add_model_arguments, model_load_options


def _run_peft(args: argparse.Namespace) -> None:
    from routelora.experts.export import ADAPTERS, export_peft
    from routelora.models import load_vlm

    model, _ = load_vlm(args.base, with_processor=False, **model_load_options(args))
    out = export_peft(args.library, model, args.out, overwrite=args.overwrite)
    print(f"wrote {out} (adapters in {out / ADAPTERS}, router statistics, manifest.json)")


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``export`` and its sub-commands to the CLI."""
    parser = subcommands.add_parser("export", help="export a library for another engine")
    kinds = parser.add_subparsers(dest="export_command", metavar="FORMAT", required=True)
    peft = kinds.add_parser(
        "peft",
        help="each expert as a standard PEFT adapter directory (vLLM --lora-modules, SGLang lora_path)",
        description="Write OUT/adapters/<expert>/ (PEFT's adapter_config.json and adapter_model.safetensors, "
        "named for the full VLM and checked against its state dict), OUT/router/ (the routing statistics) and "
        "OUT/manifest.json. The base model is loaded to check every module name.",
    )
    peft.add_argument("--library", type=Path, required=True, help="expert library")
    peft.add_argument("--out", type=Path, required=True, help="export directory (must not exist)")
    peft.add_argument("--base", required=True, help="the base model the experts were trained on")
    peft.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    add_model_arguments(peft, positional=False)
    peft.set_defaults(run=_run_peft)
