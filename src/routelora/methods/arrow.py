"""PEFT's Arrow routing (Ostapenko et al. 2024) over the task experts: the training-free router a user would
otherwise pick, built with peft's own ``create_arrow_model``.

Arrow routes every token at every adapted layer: each expert's prototype is the top right singular vector of its
``B A``, and a token goes to the ``top_k`` experts whose prototypes it aligns with most (absolute cosine), weighted
by a softmax over those scores. It needs no gates, no statistics and no data, only the experts, all of one rank.
Recipe: the experts exactly as routing trains them (they can come from the same store); ``top_k`` 3, peft's
default, capped at the number of experts. Base-model fallback: none (Arrow always applies experts).
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from peft import ArrowConfig, LoraConfig, PeftModel
from peft.tuners.lora.arrow import TASK_ADAPTER_PREFIX
from torch import nn

from routelora.data.task import TaskConfig
from routelora.errors import RouteloraError
from routelora.experts.expert import Expert, save_expert
from routelora.experts.train import ExpertTrainConfig
from routelora.methods.shared import SharedExperts, obtain_expert


@dataclass
class ArrowRouting:
    """Train an expert per task; route tokens between them with PEFT's Arrow at evaluation."""

    name: str = "arrow"
    expert: ExpertTrainConfig = field(default_factory=ExpertTrainConfig)
    top_k: int = 3
    """Experts per token (capped at the number of experts)."""
    seed: int = 0
    """Arrow's ``rng_seed``."""
    shared: SharedExperts | None = None
    """Store the experts come from, shared with other methods (None: each is trained here)."""

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")

    def learn(self, model: nn.Module, processor, task: TaskConfig, state: list[Expert] | None) -> list[Expert]:
        expert = obtain_expert(self.shared, model, processor, task, self.expert)
        return [*(state or []), expert]

    def prepared(self, model: nn.Module, state: list[Expert]) -> Iterator[None]:
        return arrow_model(model, state, self.top_k, self.seed)


@contextmanager
def arrow_model(model: nn.Module, experts: list[Expert], top_k: int = 3, seed: int = 0) -> Iterator[None]:
    """Hold ``model`` with Arrow routing over ``experts`` (injected by peft into the model itself, so ``model``'s
    own ``generate`` routes); the Arrow layers are unloaded again on exit."""
    kinds = {expert.kind for expert in experts}
    if kinds != {"lora"}:
        raise RouteloraError(f"Arrow routes LoRA experts only; got {', '.join(sorted(kinds))} experts")
    ranks = {a.shape[0] for expert in experts for a in expert.lora_A.values()}
    if len(ranks) != 1:
        raise RouteloraError(f"Arrow needs every expert at one rank; these have ranks {sorted(ranks)}")
    # The steps of peft's create_arrow_model, with one change: it targets the router at the adapters' bare module
    # names (``q_proj``), which in a VLM also match the vision tower's layers, where no expert lives and Arrow
    # fails; here the router targets exactly the experts' modules, by their full names.
    targets = sorted({name for expert in experts for name in expert.targets})
    names = [f"{TASK_ADAPTER_PREFIX}{i}" for i in range(len(experts))]
    with tempfile.TemporaryDirectory(prefix="routelora-arrow-") as folder:
        paths = [str(save_expert(expert, Path(folder) / name)) for name, expert in zip(names, experts)]
        peft_model = PeftModel.from_pretrained(model, paths[0], adapter_name=names[0])
        try:  # from here on the model holds peft's layers: unload them whatever happens
            for name, path in zip(names[1:], paths[1:]):
                peft_model.load_adapter(path, adapter_name=name)
            config = ArrowConfig(top_k=min(top_k, len(experts)), rng_seed=seed)
            config.task_adapter_names, config.gks_adapter_names = names, []
            router = LoraConfig(arrow_config=config, target_modules=targets, r=ranks.pop())
            peft_model.add_adapter("arrow_router", router)
            peft_model.set_adapter("arrow_router")
        except BaseException:
            peft_model.unload()
            raise
    try:
        yield None
    finally:
        peft_model.unload()
