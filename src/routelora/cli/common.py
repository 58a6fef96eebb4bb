"""Argument groups shared by several commands, and printing helpers."""

import argparse
from typing import Any


def add_model_arguments(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    """MODEL plus the options every command that loads a model takes."""
    if positional:
        parser.add_argument("model", metavar="MODEL", help="local checkpoint directory or hub id")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow the checkpoint's own modelling code (InternVL2)"
    )
    parser.add_argument("--language-model", metavar="PATH", help="module path of the language model, by hand")
    parser.add_argument("--target-pattern", metavar="REGEX", help="regular expression restricting adapter targets")
    parser.add_argument("--dtype", help="float32, bfloat16 or float16 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1... (default: cuda where available)")


def model_load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`routelora.load_vlm` that :func:`add_model_arguments` registered.

    Every command that loads a model passes all of them on, so a model that needs ``--language-model`` to train
    an expert can also be evaluated, routed and prototyped with it.
    """
    names = ("trust_remote_code", "language_model", "target_pattern", "dtype", "device")
    return {name: getattr(args, name) for name in names}


def print_table(rows: list[tuple[str, str]]) -> None:
    """Two aligned columns."""
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def add_router_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of routed inference, the same on every command that runs a routed model: ``--router`` picks a
    preset, and every field of :class:`~routelora.routing.config.RouterConfig` is a flag that, when given,
    overrides that preset's value."""
    from routelora.cli.config_args import add_config_arguments
    from routelora.routing.config import DECIDE_FROM, FEATURES, GRANULARITIES, PRESETS, RULES, VECTORS, RouterConfig

    parser.add_argument(
        "--router",
        choices=sorted(PRESETS),
        default="routelora",
        help="routelora: one decision per sequence from its pooled text and image embeddings by a shared-covariance "
        "discriminant among the experts whose region holds it, else the base model (default); text-prototypes: the "
        "earlier default, nearest mean text embedding; paper: token-level top-1 by PHATGOOSE gates; paper-open: "
        "the same behind the experts' regions",
    )
    choices = {
        "granularity": GRANULARITIES,
        "decide_from": DECIDE_FROM,
        "vectors": VECTORS,
        "rule": RULES,
        "features": FEATURES,
    }
    add_config_arguments(parser, RouterConfig, skip=("trace",), choices=choices, defaults_from="--router")


def router_config(args: argparse.Namespace):
    """The RouterConfig the router options describe: the ``--router`` preset with the given options applied."""
    from routelora.cli.config_args import config_from_arguments
    from routelora.errors import RouteloraError
    from routelora.routing.config import PRESETS, RouterConfig

    try:
        return config_from_arguments(args, RouterConfig, base=PRESETS[args.router])
    except RouteloraError as error:
        raise RouteloraError(f"router {error}") from None
