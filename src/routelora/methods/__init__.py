"""Continual-learning methods, one file each, behind the protocol in :mod:`routelora.methods.base`.

:data:`METHODS` is the registry: a new method is its file plus one line here.
"""

from collections.abc import Callable

from routelora.methods.averaging import ModelAveraging
from routelora.methods.base import Method, method_condition
from routelora.methods.routed import RoutedMethod, RoutedState
from routelora.methods.sequential import SequentialFineTuning
from routelora.methods.task_arithmetic import TaskArithmetic
from routelora.methods.ties import MergingMethod
from routelora.routing.config import PRESETS

METHODS: dict[str, Callable[..., Method]] = {
    "routelora": lambda **options: RoutedMethod(PRESETS["routelora"], name="routelora", **options),
    "text-prototypes": lambda **options: RoutedMethod(PRESETS["text-prototypes"], name="text-prototypes", **options),
    "paper": lambda **options: RoutedMethod(PRESETS["paper"], name="paper", **options),
    "averaging": lambda **options: ModelAveraging(**options),
    "task-arithmetic": lambda **options: TaskArithmetic(**options),
    "sequential-full": lambda **options: SequentialFineTuning("full", name="sequential-full", **options),
    "sequential-lora": lambda **options: SequentialFineTuning("lora", name="sequential-lora", **options),
    "replay": lambda **options: SequentialFineTuning("full", name="replay", **{"replay": 0.2, **options}),
    "ties": lambda **options: MergingMethod("ties", name="ties", **options),
    "dare": lambda **options: MergingMethod("dare", name="dare", **options),
}
"""Method name -> a factory taking the method's options (for routing: ``expert``, ``gates``, ``general``; for the
merges: ``expert``, ``validation`` and ``scales`` for task arithmetic, ``density``, ``weight``, ``seed`` for TIES
and DARE; for sequential fine-tuning and replay: ``recipe``, ``replay``, ``seed``)."""

__all__ = [
    "METHODS",
    "Method",
    "MergingMethod",
    "ModelAveraging",
    "RoutedMethod",
    "RoutedState",
    "SequentialFineTuning",
    "TaskArithmetic",
    "method_condition",
]
