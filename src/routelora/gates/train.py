"""Stage 2: train one gate vector per adapted layer with the base model and the expert frozen."""

from dataclasses import asdict, replace
from pathlib import Path

from torch import nn

from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.data.task import TaskConfig
from routelora.experts.expert import Expert, load_expert, save_routing
from routelora.experts.fingerprint import check_compatible
from routelora.gates.config import GateTrainConfig
from routelora.gates.layer import GatedIA3Linear, GatedLoraLinear
from routelora.gates.prototypes import compute_prototypes
from routelora.nn import restore_modules, swap_modules
from routelora.training import TrainConfig, TrainResult, mixed_batches, train
from routelora.training.checkpoint import Checkpointing


def train_gates(
    model: nn.Module,
    processor,
    expert: Expert | str | Path,
    task: TaskConfig,
    config: GateTrainConfig | None = None,
    progress: bool = True,
    checkpoint: Checkpointing | None = None,
) -> tuple[Expert, TrainResult]:
    """Train the gates of ``expert`` on ``task``'s training data and compute its routing prototypes.

    Returns the expert with its gates, prototypes and ``gate_training`` record. Given an expert directory instead
    of an Expert, it also writes those three into the directory (its adapter files are not touched). The model is
    left as it was: the gated layers are swapped back out afterwards.
    """
    config = config or GateTrainConfig()
    directory = None if isinstance(expert, Expert) else Path(expert)
    expert = load_expert(directory) if directory is not None else expert
    check_compatible(expert, model)
    gated = attach_gates(model, expert)
    try:
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        gate_parameters = [layer.gate for layer in gated.values()]
        for gate in gate_parameters:
            gate.requires_grad_(True)
        samples = load_split(task, "train").samples
        collator = VLMCollator(processor, max_length=config.max_length)
        batches = mixed_batches([samples], collator, config.batch_size, seed=config.seed)
        schedule = TrainConfig(
            steps=config.steps,
            lr=config.lr,
            weight_decay=config.weight_decay,
            warmup_ratio=config.warmup_ratio,
            seed=config.seed,
            max_grad_norm=None,
        )
        if checkpoint is not None:  # a checkpoint of other gate settings, task or expert is refused
            identity = {"gates": asdict(config), "task": str(task.source), "expert": expert.metadata.get("created")}
            checkpoint = replace(checkpoint, identity={**identity, "base": expert.metadata.get("base_fingerprint")})
        shown = f"gates {expert.name}" if progress else False
        result = train(model, gate_parameters, batches, schedule, progress=shown, checkpoint=checkpoint)
        gates = {name: layer.gate.detach().float().cpu().clone() for name, layer in gated.items()}
    finally:
        restore_modules(model, {name: layer.base for name, layer in gated.items()})
    prototypes = expert.prototypes
    if config.prototype_samples:
        described, held_out = statistics_split(samples, config.prototype_samples, config.calibration_samples)
        shown = progress and "prototypes"
        prototypes = compute_prototypes(model, processor, described, expert.targets, progress=shown, held_out=held_out)
    record = {**asdict(config), "task": task.name, "final_loss": result.losses[-1]}
    metadata = {**expert.metadata, "gate_training": record}
    expert = replace(expert, gates=gates, prototypes=prototypes, metadata=metadata)
    if directory is not None:
        save_routing(directory, expert)
    return expert, result


def statistics_split(samples: list, described: int, held_out: int) -> tuple[list, list]:
    """The prompts an expert's statistics describe (the first ``described``) and those that calibrate its region
    (the last ``held_out``), never the same ones: a split too small for both gives the region a third of it."""
    held_out = min(held_out, len(samples) // 3) if held_out else 0
    return samples[: min(described, len(samples) - held_out)], samples[len(samples) - held_out :] if held_out else []


def attach_gates(model: nn.Module, expert: Expert) -> dict[str, GatedLoraLinear | GatedIA3Linear]:
    """Swap every target of ``expert`` for a gated layer of its kind; returns the gated layers by name."""

    def gated(name: str, base: nn.Module) -> nn.Module:
        if expert.ia3 is not None:
            return GatedIA3Linear(base, expert.ia3[name], name in expert.ia3_input)
        return GatedLoraLinear(base, expert.lora_A[name], expert.lora_B[name], expert.scaling[name])

    swap_modules(model, expert.targets, gated)
    return {name: model.get_submodule(name) for name in expert.targets}
