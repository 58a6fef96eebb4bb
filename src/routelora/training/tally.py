"""What training cost, counted wherever it happens: every :func:`~routelora.training.train` call adds its seconds,
samples and trainable parameters to each open :func:`tally`.

A continual-learning stream wraps each method's ``learn`` in a tally to fill its cost table without the method
reporting anything; work that was done once and reused (an expert shared by several methods) is added again with
:func:`add_to_tallies`, so each method is charged what it needs, not what happened to be cached.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class TrainingCost:
    """The training runs a piece of work needed, summed."""

    seconds: float = 0.0
    """Wall-clock seconds of the training loops (not of data loading before them or evaluation after)."""
    samples: int = 0
    """Training samples seen (rows of every micro-batch, repeats counted)."""
    steps: int = 0
    """Optimizer steps."""
    runs: int = 0
    """Training runs."""
    trainable: int = 0
    """Trainable parameters of the largest run (a LoRA's A and B, gate vectors, a whole language model)."""

    def add(self, other: "TrainingCost") -> None:
        self.seconds += other.seconds
        self.samples += other.samples
        self.steps += other.steps
        self.runs += other.runs
        self.trainable = max(self.trainable, other.trainable)


_OPEN: ContextVar[tuple[TrainingCost, ...]] = ContextVar("routelora_tallies", default=())


@contextmanager
def tally(isolated: bool = False) -> Iterator[TrainingCost]:
    """Count the training done inside the block (nested tallies each count it, unless this one is ``isolated``:
    then only it does, and its owner charges the cost on as it sees fit)."""
    cost = TrainingCost()
    token = _OPEN.set((cost,) if isolated else (*_OPEN.get(), cost))
    try:
        yield cost
    finally:
        _OPEN.reset(token)


def add_to_tallies(cost: TrainingCost) -> None:
    """Charge ``cost`` to every open tally."""
    for open_cost in _OPEN.get():
        open_cost.add(cost)
