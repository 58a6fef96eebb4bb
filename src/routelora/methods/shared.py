"""Experts trained once and shared: every method that trains the same expert (same task, recipe and base) gets
the same one.

Routing, model averaging, task arithmetic, TIES and DARE all start from one LoRA expert per task, trained on that
task alone. Compared side by side they should combine the very same experts (then the comparison is about the
combination, not about training noise), and a stream should not train them five times. Given a ``root``, the
experts are kept on disk too, so a stream that is run again (or resumed) reads them back. Each method is still
charged the training its experts took (:mod:`routelora.training.tally`), cached or not.
"""

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from routelora import io
from routelora.data.task import TaskConfig
from routelora.experts.expert import Expert, load_expert, save_expert
from routelora.experts.fingerprint import base_fingerprint
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.gates.config import GateTrainConfig
from routelora.gates.train import train_gates
from routelora.training import TrainingCost, add_to_tallies, tally
from routelora.training.distributed import process_state

try:
    import fcntl  # POSIX file locks; where there are none (Windows), one process uses a store at a time
except ImportError:  # pragma: no cover
    fcntl = None

COST_FILE = "training_cost.json"


@dataclass
class SharedExperts:
    """A store of trained experts keyed by task, recipe, gate recipe and base model."""

    root: Path | None = None
    """Folder the experts are kept in (one expert directory per key, with its training cost); None keeps them in
    memory only."""
    _memory: dict[str, tuple[Expert, TrainingCost]] = field(default_factory=dict, repr=False)
    _results: dict[str, tuple[object, TrainingCost]] = field(default_factory=dict, repr=False)

    def expert(
        self,
        model: nn.Module,
        processor,
        task: TaskConfig,
        recipe: ExpertTrainConfig,
        gates: GateTrainConfig | None = None,
    ) -> Expert:
        """The expert of ``task`` under ``recipe`` (with gates and prototypes under ``gates``, if given): trained
        on first request, then reused; its training cost is charged to the open tallies either way."""
        key = _key(task, recipe, None, model)
        with self._claimed(key, task.name):
            expert, cost = self._get(key, task.name) or self._train(key, task, model, processor, recipe)
        if gates is not None:
            gated_key = _key(task, recipe, gates, model)
            with self._claimed(gated_key, task.name):
                found = self._get(gated_key, task.name)
                if found is None:
                    with tally(isolated=True) as gate_cost:
                        gated, _ = train_gates(model, processor, expert, task, gates, progress=False)
                    total = TrainingCost()
                    total.add(cost)
                    total.add(gate_cost)
                    found = self._put(gated_key, task.name, gated, total)
            expert, cost = found
        add_to_tallies(cost)
        return expert

    def has(
        self, model: nn.Module, task: TaskConfig, recipe: ExpertTrainConfig, gates: GateTrainConfig | None = None
    ) -> bool:
        """Whether the store holds ``task``'s expert under ``recipe`` (and ``gates``) already."""
        key = _key(task, recipe, gates, model)
        return key in self._memory or self._stored(key, task.name) is not None

    def reused(self, parts: tuple, compute: Callable[[], object]):
        """``compute()``'s result, computed once per ``parts`` (a key of JSON-able values that names everything
        the result depends on) and kept in memory; its training cost is charged to the open tallies each time."""
        key = _digest(parts)
        if key not in self._results:
            with tally(isolated=True) as cost:
                value = compute()
            self._results[key] = (value, cost)
        value, cost = self._results[key]
        add_to_tallies(cost)
        return value

    @contextmanager
    def _claimed(self, key: str, name: str) -> Iterator[None]:
        """Hold the key's lock file while it is looked up or trained: stream workers (separate processes) that
        ask for the same expert at once train it once, the others wait and read it back."""
        # under `accelerate launch` the processes train each expert together and meet at barriers; a lock would
        # hold one of them out of the barrier
        if self.root is None or fcntl is None or key in self._memory or process_state().num_processes > 1:
            yield
            return
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        handle = os.open(locks / f"{name}-{key}", os.O_CREAT | os.O_RDWR)  # empty: only locked
        try:
            with suppress(OSError):  # a file system without locks: one process at a time is then the user's to keep
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        finally:
            os.close(handle)  # releases the lock

    def _train(self, key: str, task: TaskConfig, model, processor, recipe) -> tuple[Expert, TrainingCost]:
        with tally(isolated=True) as cost:
            expert, _ = train_expert(model, processor, task, recipe, progress=False)
        return self._put(key, task.name, expert, cost)

    def _get(self, key: str, name: str) -> tuple[Expert, TrainingCost] | None:
        if key in self._memory:
            return self._memory[key]
        directory = self._stored(key, name)
        if directory is None:
            return None
        found = load_expert(directory), TrainingCost(**io.read_json(directory / COST_FILE))
        self._memory[key] = found
        return found

    def _stored(self, key: str, name: str) -> Path | None:
        """The key's expert directory, where it was written in full (its cost file is written last)."""
        if self.root is None or not (self.root / f"{name}-{key}" / COST_FILE).is_file():
            return None
        return self.root / f"{name}-{key}"

    def _put(self, key: str, name: str, expert: Expert, cost: TrainingCost) -> tuple[Expert, TrainingCost]:
        state = process_state()
        if self.root is not None and state.is_main_process:  # under `accelerate launch`, one process writes
            directory = self.root / f"{name}-{key}"
            # written last, so a directory without it (a run killed while saving) is trained again
            save_expert(expert, directory, overwrite=True)
            io.write_json(directory / COST_FILE, asdict(cost))
        state.wait_for_everyone()
        self._memory[key] = (expert, cost)
        return expert, cost


def obtain_expert(
    shared: SharedExperts | None,
    model: nn.Module,
    processor,
    task: TaskConfig,
    recipe: ExpertTrainConfig,
    gates: GateTrainConfig | None = None,
) -> Expert:
    """``task``'s expert from ``shared``, or freshly trained when there is no store."""
    if shared is not None:
        return shared.expert(model, processor, task, recipe, gates)
    expert, _ = train_expert(model, processor, task, recipe, progress=False)
    if gates is not None:
        expert, _ = train_gates(model, processor, expert, task, gates, progress=False)
    return expert


def _key(task: TaskConfig, recipe: ExpertTrainConfig, gates: GateTrainConfig | None, model: nn.Module) -> str:
    return _digest(
        [task.name, str(task.source), asdict(recipe), asdict(gates) if gates else None, base_fingerprint(model)]
    )


def _digest(parts) -> str:
    """A short stable key of JSON-able ``parts``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]
