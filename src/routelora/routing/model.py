"""Attach a router to a model: every adapter target becomes a routed layer over all loaded experts."""

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from routelora.errors import RouteloraError
from routelora.experts.expert import Expert, check_compatible
from routelora.routing.config import RouterConfig
from routelora.routing.layer import ExpertWeights, RoutedLinear
from routelora.routing.swap import restore_modules, swap_modules


@dataclass
class RoutedModel:
    """Handle on a model whose adapter targets are routed; the model itself is changed in place."""

    model: nn.Module
    experts: list[Expert]
    config: RouterConfig
    layers: dict[str, RoutedLinear]
    """Routed layers by module name, in model order."""
    originals: dict[str, nn.Module] = field(repr=False)

    @property
    def expert_names(self) -> list[str]:
        return [expert.name for expert in self.experts]

    def detach(self) -> nn.Module:
        """Put the original linear layers back; returns the plain model."""
        restore_modules(self.model, self.originals)
        if getattr(self.model, "routelora_router", None) is self:
            del self.model.routelora_router
        return self.model

    def last_choices(self) -> dict[str, torch.Tensor]:
        """Experts chosen by each token in the last forward, per layer: (tokens, k), -1 for the base model."""
        return {name: layer.last_choice for name, layer in self.layers.items() if layer.last_choice is not None}


def attach_router(model: nn.Module, experts: Sequence[Expert], config: RouterConfig | None = None, **options):
    """Route every adapter target of ``model`` between ``experts``.

    Args:
        model: a loaded VLM (see :func:`routelora.load_vlm`).
        experts: loaded experts (:meth:`ExpertLibrary.load`), all trained on this base model.
        config: routing settings; keyword ``options`` (``top_k=2``...) build one when it is not given.

    Returns:
        A :class:`RoutedModel`; also reachable as ``model.routelora_router``.
    """
    config = config or RouterConfig(**options)
    experts = list(experts)
    if not experts:
        raise RouteloraError("no experts to route between")
    if getattr(model, "routelora_router", None) is not None:
        raise RouteloraError("this model already has a router attached; detach() it first")
    for expert in experts:
        check_compatible(expert, model)
        if len(experts) > 1 and not expert.has_gates:
            raise RouteloraError(
                f"expert {expert.name} has no gates; train them with `routelora gate train` before routing"
            )
    names = [name for name in _model_order(model) if any(name in expert.lora_A for expert in experts)]

    def routed(name: str, base: nn.Module) -> RoutedLinear:
        weights = [
            ExpertWeights(e.lora_A[name], e.lora_B[name], e.scaling[name], e.gates.get(name) if e.gates else None)
            if name in e.lora_A
            else None
            for e in experts
        ]
        return RoutedLinear(base, weights, config)

    originals = swap_modules(model, names, routed)
    handle = RoutedModel(model, experts, config, {n: model.get_submodule(n) for n in names}, originals)
    model.routelora_router = handle
    return handle


def _model_order(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
