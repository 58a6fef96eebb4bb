"""Argument groups shared by several commands, and printing helpers."""

import argparse


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


def print_table(rows: list[tuple[str, str]]) -> None:
    """Two aligned columns."""
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def add_router_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of routed inference, the same on every command that runs a routed model."""
    from routelora.routing.config import GRANULARITIES, VECTORS, RouterConfig

    defaults = RouterConfig()
    parser.add_argument("--top-k", type=int, default=defaults.top_k, help="experts kept per token")
    parser.add_argument("--granularity", choices=GRANULARITIES, default=defaults.granularity)
    parser.add_argument("--vectors", choices=VECTORS, default=defaults.vectors, help="routing vectors")
    parser.add_argument("--no-normalise", action="store_true", help="score with raw v.u (the paper's formula)")
    parser.add_argument("--fallback-threshold", type=float, help="below this best score, use the base model")
    parser.add_argument("--base-candidates", action="store_true", help="offer the base model as candidates")


def router_config(args: argparse.Namespace):
    """The RouterConfig the router options describe."""
    from routelora.routing.config import RouterConfig

    return RouterConfig(
        top_k=args.top_k,
        normalise=not args.no_normalise,
        fallback_threshold=args.fallback_threshold,
        granularity=args.granularity,
        vectors=args.vectors,
        base_candidates=args.base_candidates,
    )
