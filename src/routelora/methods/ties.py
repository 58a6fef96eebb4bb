"""TIES and DARE merging of the task experts' weight deltas, by peft's own ``merge_utils`` (not rewritten here).

TIES (Yadav et al. 2023) keeps each delta's largest ``density`` share of entries, elects a sign per entry by total
mass, and averages the entries that agree with it; DARE (Yu et al. 2024) drops entries at random with probability
``1 - density``, rescales the rest by ``1 / density`` and sums them weighted. Both act on the dense deltas
``s B A`` of each layer (:mod:`routelora.methods.deltas`). Recipe: experts as routing trains them; each expert
weighs ``weight`` (1.0 by default, as in TIES's paper with lambda = 1); DARE's random drops are seeded.
"""

from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from peft.utils.merge_utils import dare_linear, ties
from torch import nn

from routelora.data.task import TaskConfig
from routelora.experts.expert import Expert
from routelora.experts.train import ExpertTrainConfig
from routelora.methods.deltas import deltas_by_target, weights_with
from routelora.methods.shared import SharedExperts, obtain_expert


@dataclass
class MergingMethod:
    """Train an expert per task; evaluate the deltas merged by ``merge`` (``ties`` or ``dare``)."""

    merge: str = "ties"
    name: str = "ties"
    expert: ExpertTrainConfig = field(default_factory=ExpertTrainConfig)
    density: float = 0.2
    """Share of each delta's entries kept (TIES: by magnitude; DARE: at random)."""
    weight: float = 1.0
    """Weight of every expert's delta in the merge."""
    seed: int = 0
    """Seed of DARE's random drops."""
    shared: SharedExperts | None = None
    """Store the experts come from, shared with other methods (None: each is trained here)."""

    def __post_init__(self) -> None:
        if self.merge not in ("ties", "dare"):
            raise ValueError(f"merge must be 'ties' or 'dare', got {self.merge!r}")
        if not 0 < self.density <= 1:
            raise ValueError(f"density must be in (0, 1], got {self.density}")

    def learn(self, model: nn.Module, processor, task: TaskConfig, state: list[Expert] | None) -> list[Expert]:
        expert = obtain_expert(self.shared, model, processor, task, self.expert)
        return [*(state or []), expert]

    def merged_deltas(self, state: list[Expert]) -> dict[str, torch.Tensor]:
        """Each target's merged delta (d_out, d_in)."""
        torch.manual_seed(self.seed)  # DARE's drops use torch's global generator
        merged = {}
        for target, deltas in deltas_by_target(state).items():
            weights = torch.full((len(deltas),), self.weight)
            if self.merge == "ties":
                merged[target] = ties(deltas, weights, self.density)
            else:
                merged[target] = dare_linear(deltas, weights, self.density)
        return merged

    def prepared(self, model: nn.Module, state: list[Expert]) -> AbstractContextManager:
        return weights_with(model, self.merged_deltas(state))
