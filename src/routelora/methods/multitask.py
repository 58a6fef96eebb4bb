"""Multi-task learning: one model trained on every task's data at once (the upper bound a continual method is
measured against, which needs all the data together and retrains as tasks arrive).

Variants (``variant``): ``lora``, one LoRA on the language model's linear layers; ``full``, every parameter of
the language model (vision encoder and projector frozen). Recipe: ``recipe`` as for one task, with the steps of
every task added up (the budget of training each task's expert), batches mixing the tasks' training samples in
proportion to their numbers, from the base model each time a task arrives. What is kept: every task's training
data, and the trained weights.

A stream evaluates it once, after the last task (:attr:`joint`): its rows after earlier steps would each need a
training run of their own, and the paper reports it as a bound, not as a continual method.
"""

from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from routelora.data.task import TaskConfig
from routelora.experts.expert import Expert
from routelora.experts.train import ExpertTrainConfig, train_expert, training_samples
from routelora.methods.finetune import fine_tune_language_model, language_model_weights
from routelora.routing.config import ONE_EXPERT
from routelora.routing.model import attach_router

VARIANTS = ("lora", "full")


@dataclass
class MultiTaskState:
    """The tasks trained on together, and the weights trained on them."""

    tasks: list[TaskConfig] = field(default_factory=list)
    weights: dict[str, torch.Tensor] | None = None
    expert: Expert | None = None


@dataclass
class MultiTaskLearning:
    """Train on the union of every task seen so far, from the base model."""

    variant: str = "lora"
    name: str = "multitask-lora"
    recipe: ExpertTrainConfig = field(default_factory=ExpertTrainConfig)
    """Steps per task (added up over the tasks), batch size, lr, schedule; rank and alpha for ``lora``."""
    joint: bool = True
    """Evaluated only after every task has arrived (a stream skips its earlier steps)."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")

    def learn(self, model: nn.Module, processor, task: TaskConfig, state: MultiTaskState | None) -> MultiTaskState:
        return self.learn_jointly(model, processor, [*(state.tasks if state else []), task])

    def learn_jointly(self, model: nn.Module, processor, tasks: list[TaskConfig]) -> MultiTaskState:
        """Train on ``tasks`` together."""
        pools = [training_samples(task, self.recipe) for task in tasks]
        steps = sum(self.recipe.total_steps(len(pool)) for pool in pools)
        if self.variant == "full":
            weights = fine_tune_language_model(model, processor, pools, steps, self.recipe)
            return MultiTaskState(list(tasks), weights=weights)
        recipe = replace(self.recipe, steps=steps, epochs=None)
        others = [sample for pool in pools[1:] for sample in pool]
        expert, _ = train_expert(model, processor, tasks[0], recipe, progress=False, extra_samples=others)
        expert = replace(expert, name=self.name, metadata={**expert.metadata, "tasks": [t.name for t in tasks]})
        return MultiTaskState(list(tasks), expert=expert)

    def prepared(self, model: nn.Module, state: MultiTaskState) -> AbstractContextManager:
        if self.variant == "lora":
            return attach_router(model, [state.expert], ONE_EXPERT)
        return language_model_weights(model, state.weights)
