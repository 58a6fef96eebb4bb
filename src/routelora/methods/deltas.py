"""What the baselines share: each LoRA expert's exact weight delta, and parameters held changed for an evaluation
(a merged delta, or sequentially fine-tuned weights) and put back bit for bit afterwards.

A LoRA expert changes a linear layer by ``Delta W = s B A`` (d_out, d_in). The merging baselines combine these
dense deltas, not the A and B factors separately (PEFT's ``add_weighted_adapter`` with ``combination_type="linear"``
mixes the factors, which is not the mean of the updates), so that averaging is exactly ``W + mean_i Delta W_i``.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

import torch
from torch import nn

from routelora.errors import RouteloraError
from routelora.experts.expert import Expert


def lora_delta(expert: Expert, target: str) -> torch.Tensor:
    """``s B A`` of ``expert`` at ``target``, float32 (d_out, d_in)."""
    return expert.scaling[target] * expert.lora_B[target].float() @ expert.lora_A[target].float()


def deltas_by_target(experts: Sequence[Expert]) -> dict[str, list[torch.Tensor]]:
    """Every adapted target -> each expert's delta there, in expert order (zeros where an expert does not adapt
    it). LoRA experts only: an (IA)^3 vector is not an additive delta."""
    for expert in experts:
        if expert.kind != "lora":
            raise RouteloraError(f"expert {expert.name} is {expert.kind}; weight merging takes LoRA experts")
    targets = list(dict.fromkeys(name for expert in experts for name in expert.targets))
    out = {}
    for target in targets:
        present = [lora_delta(e, target) if target in e.lora_A else None for e in experts]
        shape = next(delta.shape for delta in present if delta is not None)
        out[target] = [delta if delta is not None else torch.zeros(shape) for delta in present]
    return out


@contextmanager
def held_parameters(
    parameters: dict[str, nn.Parameter], change: Callable[[str, nn.Parameter], None]
) -> Iterator[None]:
    """Hold ``parameters`` as ``change(name, parameter)`` leaves them (changed in place, without gradients); the
    originals are put back bit for bit afterwards (they are copied first, not recomputed by undoing the change)."""
    originals = {name: parameter.detach().clone() for name, parameter in parameters.items()}
    try:
        with torch.no_grad():
            for name, parameter in parameters.items():
                change(name, parameter)
        yield None
    finally:
        with torch.no_grad():
            for name, parameter in parameters.items():
                parameter.copy_(originals[name])


def weights_with(model: nn.Module, deltas: dict[str, torch.Tensor]) -> AbstractContextManager:
    """Hold ``model`` with each target's weight plus its delta, then put the weights back bit for bit."""
    weights = {target: model.get_submodule(target).weight for target in deltas}
    return held_parameters(weights, lambda target, weight: weight.add_(deltas[target].to(weight.device, weight.dtype)))
