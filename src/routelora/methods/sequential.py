"""Sequential fine-tuning: the language model trained on each task in turn, with or without experience replay.

Variants (``variant``):

* ``full``: every parameter of the language model is trained (the paper's baseline); the vision encoder and the
  projector stay frozen. What is kept is the language model's weights after the last task.
* ``lora``: one LoRA, trained on and on: each task starts from the LoRA the earlier tasks left (MCITlib's LoRA-FT
  row). What is kept is that one LoRA.

With ``replay`` > 0, each task's training also draws from a buffer of every earlier task's training data: when a
task is learned, a ``replay`` share of its training samples is drawn uniformly at random without replacement
(seeded by ``seed`` and the task's position in the stream) and kept; later tasks mix the buffers with their own
samples in proportion to their numbers. Recipe: ``recipe`` gives steps, batch size, lr and schedule (AdamW,
cosine) for every task alike.
"""

import math
import random
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from routelora.data.samples import Sample, load_split
from routelora.data.task import TaskConfig
from routelora.experts.expert import Expert
from routelora.experts.fingerprint import base_fingerprint
from routelora.experts.train import ExpertTrainConfig, train_expert, training_samples
from routelora.methods.finetune import fine_tune_language_model, language_model_weights
from routelora.methods.shared import SharedExperts
from routelora.routing.config import ONE_EXPERT
from routelora.routing.model import attach_router

VARIANTS = ("full", "lora")


@dataclass
class SequentialState:
    """What sequential fine-tuning keeps: the language model's trained weights (``full``) or the one LoRA
    (``lora``), the replay buffers, and how many tasks it has seen."""

    weights: dict[str, torch.Tensor] | None = None
    expert: Expert | None = None
    buffers: list[list[Sample]] = field(default_factory=list)
    tasks: int = 0


@dataclass
class SequentialFineTuning:
    """Train the language model (or one LoRA on it) on each task after the other."""

    variant: str = "full"
    name: str = "sequential"
    recipe: ExpertTrainConfig = field(default_factory=lambda: ExpertTrainConfig(lr=5e-4))
    """Steps, batch size, lr and schedule of each task (rank and alpha for the ``lora`` variant)."""
    replay: float = 0.0
    """Share of each earlier task's training samples kept and mixed into later tasks' training (0.2 in the
    replay baseline)."""
    seed: int = 0
    """Seed of the replay buffers' draws."""
    shared: SharedExperts | None = None
    """Store shared with other methods: the first task's training is the same for sequential fine-tuning with and
    without replay (no buffer yet), and for the ``lora`` variant it is that task's expert."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not 0 <= self.replay <= 1:
            raise ValueError(f"replay must be in [0, 1], got {self.replay}")

    def learn(self, model: nn.Module, processor, task: TaskConfig, state: SequentialState | None) -> SequentialState:
        state = state or SequentialState()
        replayed = [sample for buffer in state.buffers for sample in buffer]
        if self.variant == "lora":
            if state.expert is None and self.shared is not None:  # the first task: exactly that task's expert
                expert = self.shared.expert(model, processor, task, self.recipe)
            else:
                expert, _ = train_expert(
                    model, processor, task, self.recipe, progress=False, init=state.expert, extra_samples=replayed
                )
            weights = None
        elif state.weights is None and self.shared is not None:  # the first task, with or without replay alike
            key = ("full fine-tuning", task.name, str(task.source), asdict(self.recipe), base_fingerprint(model))
            expert, weights = (
                None,
                self.shared.reused(key, lambda: self._train_full(model, processor, task, state, [])),
            )
        else:
            expert, weights = None, self._train_full(model, processor, task, state, replayed)
        buffers = [*state.buffers, self._buffer(task, state.tasks)] if self.replay else state.buffers
        return SequentialState(weights, expert, buffers, state.tasks + 1)

    def _buffer(self, task: TaskConfig, position: int) -> list[Sample]:
        samples = load_split(task, "train").samples
        rng = random.Random(self.seed * 1000 + position)
        return rng.sample(samples, math.ceil(self.replay * len(samples)))

    def _train_full(
        self, model: nn.Module, processor, task: TaskConfig, state: SequentialState, replayed: list[Sample]
    ) -> dict[str, torch.Tensor]:
        samples = training_samples(task, self.recipe)
        pools = [samples, replayed] if replayed else [samples]
        steps = self.recipe.total_steps(len(samples))
        return fine_tune_language_model(model, processor, pools, steps, self.recipe, state.weights)

    def prepared(self, model: nn.Module, state: SequentialState) -> AbstractContextManager:
        if self.variant == "lora":
            return attach_router(model, [state.expert], ONE_EXPERT)
        return language_model_weights(model, state.weights)
