"""Continual-learning methods, one file each, behind the protocol in :mod:`routelora.methods.base`.

:data:`METHODS` is the registry: a new method is its file plus one line here.
"""

from collections.abc import Callable

from routelora.methods.base import Method, method_condition
from routelora.methods.routed import RoutedMethod, RoutedState
from routelora.routing.config import PRESETS

METHODS: dict[str, Callable[..., Method]] = {
    "routelora": lambda **options: RoutedMethod(PRESETS["routelora"], name="routelora", **options),
    "text-prototypes": lambda **options: RoutedMethod(PRESETS["text-prototypes"], name="text-prototypes", **options),
    "paper": lambda **options: RoutedMethod(PRESETS["paper"], name="paper", **options),
}
"""Method name -> a factory taking the method's options (for routing: ``expert``, ``gates``, ``general``)."""

__all__ = ["METHODS", "Method", "RoutedMethod", "RoutedState", "method_condition"]
