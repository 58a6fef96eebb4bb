"""Zero-shot: the base model as loaded, learning nothing (row 0 of every accuracy matrix, and the retention
reference). Kept: nothing. A stream evaluates it once (:attr:`joint`), since every step would give the same row.
"""

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from torch import nn

from routelora.data.task import TaskConfig


@dataclass
class ZeroShot:
    """The base model, untouched."""

    name: str = "zero-shot"
    joint: bool = True

    def learn(self, model: nn.Module, processor, task: TaskConfig, state: None) -> None:
        return None

    def learn_jointly(self, model: nn.Module, processor, tasks: list[TaskConfig]) -> None:
        return None

    def prepared(self, model: nn.Module, state: None) -> AbstractContextManager:
        return nullcontext()
