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
from dataclasses import dataclass, field

import torch
from torch import nn

from routelora.data.collate import VLMCollator
from routelora.data.samples import Sample, load_split
from routelora.data.task import TaskConfig
from routelora.experts.expert import Expert
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.methods.deltas import held_parameters
from routelora.models.layout import get_layout
from routelora.routing.config import ONE_EXPERT
from routelora.routing.model import attach_router
from routelora.training import TrainConfig, mixed_batches, train

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

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not 0 <= self.replay <= 1:
            raise ValueError(f"replay must be in [0, 1], got {self.replay}")

    def learn(self, model: nn.Module, processor, task: TaskConfig, state: SequentialState | None) -> SequentialState:
        state = state or SequentialState()
        replayed = [sample for buffer in state.buffers for sample in buffer]
        if self.variant == "lora":
            expert, _ = train_expert(
                model, processor, task, self.recipe, progress=False, init=state.expert, extra_samples=replayed
            )
            weights = None
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
        language_model = model.get_submodule(get_layout(model).language_model)
        parameters = dict(language_model.named_parameters())
        with _weights(language_model, state.weights):
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            for parameter in parameters.values():
                parameter.requires_grad_(True)
            try:
                collator = VLMCollator(processor, max_length=self.recipe.max_length)
                samples = load_split(task, "train").samples
                pools = [samples, replayed] if replayed else [samples]
                batches = mixed_batches(pools, collator, self.recipe.batch_size, seed=self.recipe.seed)
                schedule = TrainConfig(
                    steps=self.recipe.total_steps(len(samples)),
                    lr=self.recipe.lr,
                    weight_decay=self.recipe.weight_decay,
                    warmup_ratio=self.recipe.warmup_ratio,
                    seed=self.recipe.seed,
                )
                train(model, list(parameters.values()), batches, schedule, progress=False)
            finally:
                for parameter in model.parameters():
                    parameter.requires_grad_(False)
            return {name: parameter.detach().clone() for name, parameter in parameters.items()}

    def prepared(self, model: nn.Module, state: SequentialState) -> AbstractContextManager:
        if self.variant == "lora":
            return attach_router(model, [state.expert], ONE_EXPERT)
        return _weights(model.get_submodule(get_layout(model).language_model), state.weights)


def _weights(module: nn.Module, weights: dict[str, torch.Tensor] | None) -> AbstractContextManager:
    """Hold ``module`` with ``weights`` (all its parameters; None: as it is), and put its own back bit for bit,
    whatever was trained meanwhile."""
    parameters = dict(module.named_parameters())
    if weights is None:
        return held_parameters(parameters, lambda name, parameter: None)
    return held_parameters(parameters, lambda name, parameter: parameter.copy_(weights[name]))
