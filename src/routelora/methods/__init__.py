"""Continual-learning methods, one file each, behind the protocol in :mod:`routelora.methods.base`.

:data:`METHODS` is the registry: a new method is its file plus one line here.
"""

from collections.abc import Callable

from routelora.methods.arrow import ArrowRouting
from routelora.methods.averaging import ModelAveraging
from routelora.methods.base import Method, method_condition
from routelora.methods.multitask import MultiTaskLearning
from routelora.methods.routed import RoutedMethod, RoutedState
from routelora.methods.sequential import SequentialFineTuning
from routelora.methods.task_arithmetic import TaskArithmetic
from routelora.methods.ties import MergingMethod
from routelora.methods.zero_shot import ZeroShot
from routelora.routing.config import PRESETS

METHODS: dict[str, Callable[..., Method]] = {
    "zero-shot": lambda **options: ZeroShot(**options),
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
    "multitask-lora": lambda **options: MultiTaskLearning("lora", name="multitask-lora", **options),
    "multitask-full": lambda **options: MultiTaskLearning("full", name="multitask-full", **options),
    "arrow": lambda **options: ArrowRouting(**options),
}
"""Method name -> a factory taking the method's options (for routing: ``expert``, ``gates``, ``general``; for the
merges: ``expert``, ``validation`` and ``scales`` for task arithmetic, ``density``, ``weight``, ``seed`` for TIES
and DARE; for sequential fine-tuning and replay: ``recipe``, ``replay``, ``seed``; for multi-task learning:
``recipe``; for Arrow: ``expert``, ``top_k``, ``seed``; every method that trains per-task experts takes ``shared``,
a store they come from)."""

__all__ = [
    "METHODS",
    "ArrowRouting",
    "MultiTaskLearning",
    "ZeroShot",
    "Method",
    "MergingMethod",
    "ModelAveraging",
    "RoutedMethod",
    "RoutedState",
    "SequentialFineTuning",
    "TaskArithmetic",
    "method_condition",
]
