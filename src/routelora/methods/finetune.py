"""Full fine-tuning of the language model (vision encoder and projector frozen), shared by the sequential and the
multi-task baselines, and the context that holds a model with such weights."""

from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch
from torch import nn

from routelora.data.collate import VLMCollator
from routelora.data.samples import Sample
from routelora.experts.train import ExpertTrainConfig
from routelora.methods.deltas import held_parameters
from routelora.models.layout import get_layout
from routelora.training import TrainConfig, mixed_batches, train


def fine_tune_language_model(
    model: nn.Module,
    processor,
    pools: Sequence[Sequence[Sample]],
    steps: int,
    recipe: ExpertTrainConfig,
    start: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Train every parameter of the language model on batches mixing ``pools`` (in proportion to their sizes) for
    ``steps`` steps, from ``start`` (the language model's parameters by name; None: as loaded). Returns the
    trained parameters; ``model`` is left as it was given."""
    language_model = model.get_submodule(get_layout(model).language_model)
    parameters = dict(language_model.named_parameters())
    with language_model_weights(model, start):
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for parameter in parameters.values():
            parameter.requires_grad_(True)
        try:
            collator = VLMCollator(processor, max_length=recipe.max_length)
            batches = mixed_batches(pools, collator, recipe.batch_size, seed=recipe.seed)
            schedule = TrainConfig(
                steps=steps,
                lr=recipe.lr,
                weight_decay=recipe.weight_decay,
                warmup_ratio=recipe.warmup_ratio,
                grad_accumulation=recipe.grad_accumulation,
                seed=recipe.seed,
            )
            train(model, list(parameters.values()), batches, schedule, progress=False)
        finally:
            for parameter in model.parameters():
                parameter.requires_grad_(False)
        return {name: parameter.detach().clone() for name, parameter in parameters.items()}


def language_model_weights(model: nn.Module, weights: dict[str, torch.Tensor] | None) -> AbstractContextManager:
    """Hold the language model of ``model`` with ``weights`` (all its parameters; None: as it is), and put its own
    back bit for bit, whatever was trained meanwhile."""
    parameters = dict(model.get_submodule(get_layout(model).language_model).named_parameters())
    if weights is None:
        return held_parameters(parameters, lambda name, parameter: None)
    return held_parameters(parameters, lambda name, parameter: parameter.copy_(weights[name]))
