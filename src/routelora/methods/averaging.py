"""Model averaging of the task experts' weight deltas: ``W + (1/n) sum_i s_i B_i A_i``.

Recipe: per task, a LoRA expert trained on that task's data alone, exactly as routing trains it
(``ExpertTrainConfig``); at evaluation every expert learned so far is averaged into the weights. Trainable: the
LoRA A and B; kept: the experts. No task id, no data of earlier tasks.
"""

from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from torch import nn

from routelora.data.task import TaskConfig
from routelora.experts.expert import Expert
from routelora.experts.train import ExpertTrainConfig
from routelora.methods.deltas import deltas_by_target, weights_with
from routelora.methods.shared import SharedExperts, obtain_expert


@dataclass
class ModelAveraging:
    """Train an expert per task; evaluate the mean of their deltas."""

    name: str = "averaging"
    expert: ExpertTrainConfig = field(default_factory=ExpertTrainConfig)
    shared: SharedExperts | None = None
    """Store the experts come from, shared with other methods (None: each is trained here)."""

    def learn(self, model: nn.Module, processor, task: TaskConfig, state: list[Expert] | None) -> list[Expert]:
        expert = obtain_expert(self.shared, model, processor, task, self.expert)
        return [*(state or []), expert]

    def prepared(self, model: nn.Module, state: list[Expert]) -> AbstractContextManager:
        merged = {target: sum(deltas) / len(deltas) for target, deltas in deltas_by_target(state).items()}
        return weights_with(model, merged)
