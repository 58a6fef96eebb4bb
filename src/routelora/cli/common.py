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
