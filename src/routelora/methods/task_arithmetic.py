"""Task arithmetic (Ilharco et al. 2023) of the task experts' weight deltas: ``W + lambda sum_i s_i B_i A_i``.

Recipe: per task, a LoRA expert trained as routing trains it, except that the last ``validation`` samples of the
task's training split are kept out of its training; they are the validation split. After each task, lambda is
chosen among ``scales`` on the validation splits of every task seen so far: for each candidate, each task's
validation score is divided by that task's best score over the candidates (so that a CIDEr and an accuracy weigh
alike), and the candidate with the highest mean wins (the smaller one on a tie). Trainable: the LoRA A and B;
kept: the experts and those validation samples of every task, which is what this baseline needs and routing does
not.
"""

from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

from torch import nn

from routelora.data.collate import VLMCollator
from routelora.data.samples import Sample, load_split
from routelora.data.task import TaskConfig
from routelora.evaluation.evaluate import generate_answers
from routelora.experts.expert import Expert
from routelora.experts.train import ExpertTrainConfig
from routelora.methods.deltas import deltas_by_target, weights_with
from routelora.methods.shared import SharedExperts, obtain_expert
from routelora.metrics import compute_metric


@dataclass
class TaskArithmeticState:
    """The experts, each task's validation samples, and the scale chosen on them."""

    experts: list[Expert] = field(default_factory=list)
    validation: dict[str, tuple[TaskConfig, list[Sample]]] = field(default_factory=dict)
    scale: float = 1.0
    scores: dict[float, dict[str, float]] = field(default_factory=dict)
    """Candidate scale -> task -> validation score, from the last choice."""


@dataclass
class TaskArithmetic:
    """Train an expert per task; evaluate the sum of their deltas times a scale chosen on validation data."""

    name: str = "task-arithmetic"
    expert: ExpertTrainConfig = field(default_factory=ExpertTrainConfig)
    validation: int = 32
    """Training samples of each task kept out of its expert's training, for choosing the scale."""
    scales: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    """Candidate scales lambda."""
    shared: SharedExperts | None = None
    """Store the experts come from, shared with other methods (None: each is trained here)."""

    def __post_init__(self) -> None:
        if self.validation < 1 or not self.scales or min(self.scales) <= 0:
            raise ValueError("task arithmetic needs validation >= 1 and positive candidate scales")

    def learn(
        self, model: nn.Module, processor, task: TaskConfig, state: TaskArithmeticState | None
    ) -> TaskArithmeticState:
        state = state or TaskArithmeticState()
        recipe = replace(self.expert, holdout=self.validation)
        expert = obtain_expert(self.shared, model, processor, task, recipe)
        held_out = load_split(task, "train").samples[-self.validation :]
        state = TaskArithmeticState([*state.experts, expert], {**state.validation, task.name: (task, held_out)})
        collator = VLMCollator(processor)
        for scale in sorted(self.scales):
            with self._applied(model, state.experts, scale):
                state.scores[scale] = {
                    name: _score(model, collator, seen, samples) for name, (seen, samples) in state.validation.items()
                }
        best = {name: max(scores[name] for scores in state.scores.values()) for name in state.validation}
        relative = {
            scale: sum(s[name] / best[name] if best[name] > 0 else 1.0 for name in best) / len(best)
            for scale, s in state.scores.items()
        }
        state.scale = max(sorted(relative), key=lambda scale: relative[scale])
        return state

    def _applied(self, model: nn.Module, experts: list[Expert], scale: float) -> AbstractContextManager:
        return weights_with(model, {t: scale * sum(d) for t, d in deltas_by_target(experts).items()})

    def prepared(self, model: nn.Module, state: TaskArithmeticState) -> AbstractContextManager:
        return self._applied(model, state.experts, state.scale)


def _score(model: nn.Module, collator: VLMCollator, task: TaskConfig, samples: list[Sample]) -> float:
    answers = generate_answers(model, collator, samples, task.max_new_tokens, progress=False)
    return compute_metric(task.metric, answers, [s.references for s in samples], labels=task.labels)["score"]
