"""The methods protocol: what every continual-learning method (routing, and later the baselines) provides.

A method learns tasks one after another, keeping whatever state it needs (its experts, a merged delta, fine-tuned
weights, a replay buffer), and prepares a model for evaluation from that state. That is all a comparison or a
continual-learning stream needs of it: :func:`method_condition` turns a method's state into a condition of the
comparison runner (:mod:`routelora.evaluation.suite`).
"""

from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from torch import nn

from routelora.data.task import TaskConfig
from routelora.evaluation.suite import Condition


@runtime_checkable
class Method(Protocol):
    """One continual-learning method."""

    name: str
    """Short identifier (the key in :data:`routelora.methods.METHODS`)."""

    def learn(self, model: nn.Module, processor, task: TaskConfig, state: Any | None) -> Any:
        """Learn ``task`` from its own training data; ``state`` is what the method kept from the earlier tasks
        (None before the first). Returns the new state. ``model`` must be left as it was given."""
        ...

    def prepared(self, model: nn.Module, state: Any) -> AbstractContextManager:
        """A context manager holding ``model`` as the method evaluates it after the tasks that led to ``state``;
        it may yield a routed handle (:class:`~routelora.routing.model.RoutedModel`) whose routing is reported."""
        ...


def method_condition(method: Method, state: Any, label: str | None = None) -> Condition:
    """The comparison-runner condition of ``method`` in ``state``."""
    return Condition(label or method.name, lambda model: method.prepared(model, state))
