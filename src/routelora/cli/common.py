"""Argument groups shared by several commands, and printing helpers."""

import argparse
from collections.abc import Iterable
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


def given_options(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The options among ``names`` given on the command line, to build a settings dataclass from.

    Options that set a dataclass field are registered with no default (None): the dataclass's own default applies
    to the ones left out, so it is written once, in the dataclass, and registering the option imports nothing.
    """
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def print_table(rows: list[tuple[str, str]]) -> None:
    """Two aligned columns."""
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def add_router_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of routed inference, the same on every command that runs a routed model.

    ``--router`` picks a named recipe; every other option, when given, overrides that recipe's value.
    """
    from routelora.routing.config import DECIDE_FROM, GRANULARITIES, PRESETS, VECTORS

    parser.add_argument(
        "--router",
        choices=sorted(PRESETS),
        default="routelora",
        help="routelora: one decision per sequence by prototypes, base model as a candidate (default); "
        "paper: token-level top-1 by PHATGOOSE gates",
    )
    parser.add_argument("--top-k", type=int, help="experts kept per token or sequence")
    parser.add_argument("--granularity", choices=GRANULARITIES, help="route each token, or each sequence")
    parser.add_argument("--decide-from", choices=DECIDE_FROM, help="where a sequence decision is made")
    parser.add_argument("--vectors", choices=VECTORS, help="routing vectors")
    parser.add_argument(
        "--no-normalise", action="store_const", const=False, dest="normalise", help="score with raw v.u"
    )
    parser.add_argument("--fallback-threshold", type=float, help="below this best score, use the base model")
    parser.add_argument(
        "--base-candidates",
        action=argparse.BooleanOptionalAction,
        help="offer the base model as candidates (needs base prototypes in the library)",
    )


def router_config(args: argparse.Namespace):
    """The RouterConfig the router options describe: the ``--router`` recipe with the given options applied."""
    from dataclasses import asdict

    from routelora.errors import RouteloraError
    from routelora.routing.config import PRESETS, RouterConfig

    fields = asdict(PRESETS[args.router])
    options = ("top_k", "granularity", "decide_from", "vectors", "normalise", "fallback_threshold", "base_candidates")
    for name in options:
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    try:
        return RouterConfig(**fields)
    except ValueError as error:
        raise RouteloraError(f"router options: {error}") from None
