"""Routing between experts (the paper's method and routelora's default router): per task, a LoRA expert and its
gates and prototypes are trained on that task's data alone; at evaluation every expert is loaded and routed.

Recipe: the expert is a PEFT LoRA on the language model's linear layers (``ExpertTrainConfig``: rank 8, alpha 16,
AdamW, cosine schedule); then gates, 100 steps at lr 5e-3 with the expert frozen, and prototypes from 256 of the
task's own prompts (``GateTrainConfig``), and its open-world region from 128 more. Trainable: the LoRA A and B, then
the gate vectors; nothing else. The default router needs no general data (what no expert's region holds goes to the
base model); base candidates (``RouterConfig.base_candidates``) take prototypes of the base model's general data,
``general``, where some are given, and a closed-world router needs them.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from routelora.data.task import TaskConfig
from routelora.experts.expert import Expert
from routelora.experts.train import ExpertTrainConfig
from routelora.gates.prototypes import general_prototypes
from routelora.gates.train import GateTrainConfig
from routelora.methods.shared import SharedExperts, obtain_expert
from routelora.routing.config import RouterConfig
from routelora.routing.model import RoutedModel, attach_router


@dataclass
class RoutedState:
    """What routing keeps: one expert per task learned so far, and the base model's general prototypes."""

    experts: list[Expert] = field(default_factory=list)
    base_prototypes: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


@dataclass
class RoutedMethod:
    """Train an expert per task; route between all of them at evaluation."""

    router: RouterConfig
    name: str = "routelora"
    expert: ExpertTrainConfig = field(default_factory=ExpertTrainConfig)
    gates: GateTrainConfig = field(default_factory=GateTrainConfig)
    general: Sequence[TaskConfig] = ()
    """General-data tasks of the base model whose prototypes are its candidates (none: the open world's default;
    a closed-world router with base candidates needs some)."""
    general_samples: int = 256
    shared: SharedExperts | None = None
    """Store the experts come from, shared with other methods (None: each is trained here)."""

    def __post_init__(self) -> None:
        if self.router.base_candidates and not self.router.open_world and not self.general:
            raise ValueError(
                "a closed-world router with base candidates needs the base model's general data: pass "
                "general=[task, ...] (tasks of general skills, such as the retention benchmarks), route open-world, "
                "or route with base_candidates=False"
            )

    def learn(self, model: nn.Module, processor, task: TaskConfig, state: RoutedState | None) -> RoutedState:
        state = state or RoutedState()
        if self.router.base_candidates and self.general and not state.base_prototypes:
            state.base_prototypes = general_prototypes(model, processor, self.general, self.general_samples, False)
        expert = obtain_expert(self.shared, model, processor, task, self.expert, self.gates)
        return RoutedState([*state.experts, expert], state.base_prototypes)

    def prepared(self, model: nn.Module, state: RoutedState) -> RoutedModel:
        """The model routed over every expert learned so far (a context manager that detaches on exit)."""
        base = (state.base_prototypes or None) if self.router.base_candidates else None
        return attach_router(model, state.experts, self.router, base_prototypes=base)
