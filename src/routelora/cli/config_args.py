"""Command-line flags built from a settings dataclass: one ``--field-name`` per field, typed by its annotation and
documented by the field's own docstring, so that flags and fields cannot drift apart.

Written by hand rather than with jsonargparse or typer: those build the parser from the command's signature, which
means importing the modules that define it, and the command line must start without importing torch. The settings
dataclasses live in torch-free ``config.py`` modules for this reason.
"""

import argparse
import ast
import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields, is_dataclass
from typing import Any

from routelora.errors import RouteloraError

SCALARS = (int, float, str)


@functools.cache
def field_docs(config: type) -> dict[str, str]:
    """Each field's docstring (the string literal right after its annotation), on one line."""
    tree = ast.parse(inspect.getsource(config))
    body = tree.body[0].body
    docs = {}
    for statement, following in zip(body, body[1:]):
        is_doc = isinstance(following, ast.Expr) and isinstance(getattr(following, "value", None), ast.Constant)
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) and is_doc:
            text = " ".join(str(following.value.value).split())
            docs[statement.target.id] = text.rstrip(".").replace("``", "")
    return docs


def comma_separated(kind: type) -> Callable[[str], tuple]:
    """An argparse type for ``tuple[kind, ...]`` fields: ``"1,2,4"`` -> ``(1, 2, 4)``; a typo is a usage error."""

    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one {kind.__name__}")
        return values

    parse.__name__ = f"{kind.__name__}_list"
    return parse


def _scalar(annotation: Any) -> type | Callable[[str], tuple]:
    """``int``, ``float | None``, ``tuple[int, ...]`` and the like -> the flag's type; anything else is not a flag."""
    if annotation in (*SCALARS, bool):
        return annotation
    arguments = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and len(arguments) == 2 and arguments[1] is Ellipsis:
        return comma_separated(arguments[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
        if len(kinds) == 1 and kinds[0] in SCALARS:
            return kinds[0]
    raise TypeError(f"no command-line flag for a field of type {annotation!r}")


def add_config_arguments(
    parser: argparse.ArgumentParser,
    config: type,
    skip: tuple[str, ...] = (),
    choices: dict[str, tuple] | None = None,
    defaults_from: str = "",
) -> None:
    """Register ``--field-name`` for every field of the dataclass ``config`` (but ``skip``), with no argparse
    default: a flag left out keeps the dataclass's own default (shown in the help), or the value of the preset
    named by ``defaults_from`` (an option given beside it). ``choices`` limits string fields to named values."""
    assert is_dataclass(config)
    docs = field_docs(config)
    hints = typing.get_type_hints(config)
    for field in fields(config):
        if field.name in skip:
            continue
        kind = _scalar(hints[field.name])
        default = field.default if field.default is not MISSING else "required"
        source = f"default: from {defaults_from}" if defaults_from else f"default: {default}"
        text = f"{docs.get(field.name, field.name)} ({source})".replace("%", "%%")  # argparse formats help with %
        flag = "--" + field.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, help=text)
        else:
            allowed = (choices or {}).get(field.name)
            metavar = "|".join(allowed) if allowed else kind.__name__.upper().replace("_LIST", ",...")
            parser.add_argument(flag, dest=field.name, type=kind, choices=allowed, help=text, metavar=metavar)


def config_from_arguments(args: argparse.Namespace, config: type, base: Any = None):
    """The dataclass ``config`` built from the flags given; the rest keep their defaults, or ``base``'s values
    (an instance of ``config``, such as a preset)."""
    given = {f.name: getattr(args, f.name) for f in fields(config) if getattr(args, f.name, None) is not None}
    try:
        return dataclasses.replace(base, **given) if base is not None else config(**given)
    except ValueError as error:
        flags = ", ".join("--" + name.replace("_", "-") for name in given) or "the defaults"
        raise RouteloraError(f"options ({flags}): {error}") from None
