"""What the merging baselines share: each LoRA expert's exact weight delta, and a model holding a merged delta.

A LoRA expert changes a linear layer by ``Delta W = s B A`` (d_out, d_in). The merging baselines combine these
dense deltas, not the A and B factors separately (PEFT's ``add_weighted_adapter`` with ``combination_type="linear"``
mixes the factors, which is not the mean of the updates), so that averaging is exactly ``W + mean_i Delta W_i``.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

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
def weights_with(model: nn.Module, deltas: dict[str, torch.Tensor]) -> Iterator[None]:
    """Hold ``model`` with each target's weight plus its delta; the original weights are put back bit for bit
    afterwards (they are copied first, not recomputed by subtracting)."""
    originals: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for target, delta in deltas.items():
                weight = model.get_submodule(target).weight
                originals[target] = weight.detach().clone()
                weight.add_(delta.to(weight.device, weight.dtype))
        yield None
    finally:
        with torch.no_grad():
            for target, original in originals.items():
                model.get_submodule(target).weight.copy_(original)
