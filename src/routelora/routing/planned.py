"""What a routed layer computes for one shared decision: its weights for the batch, made once at the prefill and
kept for the decoding steps that follow (docs/method.md, section 6).

A decision's plan (:class:`~routelora.routing.context.SequencePlan`) names the experts its sequences chose and each
sequence's weight on them. A uniform batch merges them into the layer's weight; a mixed one stacks W with the
chosen experts' A so that one product gives both, or, when many distinct experts were chosen, gathers each row's
own; (IA)^3 experts become per-sequence scalings of the input or output.
"""

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from routelora.routing.config import RouterConfig
from routelora.routing.context import SequencePlan


class StackedExperts(Protocol):
    """What :func:`planned_weights` reads of a routed layer (:class:`~routelora.routing.layer.RoutedLinear`): its
    base layer and every expert's parameters, stacked. A protocol, so that this module needs nothing of the layer's."""

    base: nn.Linear
    config: RouterConfig
    num_experts: int
    rank: int
    down: torch.Tensor
    """(experts * rank + candidates, d_in) every expert's A, then the gate keys."""
    lora_B: torch.Tensor
    """(experts * rank, d_out) every expert's B, its LoRA scale folded in."""
    available: torch.Tensor
    """(candidates,) bool: the expert has an adapter at this layer."""
    is_lora: torch.Tensor
    is_ia3_in: torch.Tensor
    is_ia3_out: torch.Tensor
    ia3_in: torch.Tensor
    """(experts, d_in) ``l - 1`` of the input-scaling (IA)^3 experts, zeros for the rest."""
    ia3_out: torch.Tensor
    """(experts, d_out) the same for the output-scaling ones."""


@dataclass
class PlannedWeights:
    """A layer's weights for one :class:`SequencePlan`, made at its first forward and kept for the decoding steps
    that follow (a decision's experts are gathered once per generation, not once per step)."""

    merged: torch.Tensor | None = None
    """(d_out, d_in) ``W + sum_i c_i s_i B_i A_i`` where every sequence has the same coefficients c."""
    fused: torch.Tensor | None = None
    """(d_out + u * rank, d_in) the base weight and the chosen experts' A, stacked, so that one product of the
    input gives the base output and every ``A u``; None where no sequence takes an expert at this layer."""
    fused_bias: torch.Tensor | None = None
    """(d_out + u * rank,) the base bias, then zeros; None for a layer without bias."""
    up: torch.Tensor | None = None
    """(u * rank, d_out) the chosen experts' B, the LoRA scale folded in."""
    row_scale: torch.Tensor | None = None
    """(batch, u * rank) each sequence's coefficient on each chosen expert, repeated over its rank."""
    per_row: bool = False
    """So many distinct experts were chosen (more than twice top-k) that computing all of them for every row
    would cost more than gathering each row's own: the layer gathers (:meth:`RoutedLinear._per_sequence_update`)."""
    merged_bias: torch.Tensor | None = None
    """(d_out,) the bias of the merged weight (an output-scaling (IA)^3 vector scales the bias too)."""
    down: torch.Tensor | None = None
    """(u * rank, d_in) the chosen experts' A, where they are not fused with W (a batch with (IA)^3 experts)."""
    in_scale: torch.Tensor | None = None
    """(batch, d_in) each sequence's input scaling ``1 + sum_j c_j (l_j - 1)`` from its (IA)^3 experts."""
    out_scale: torch.Tensor | None = None
    """(batch, d_out) the same for the experts that scale the output."""


def planned_weights(layer: StackedExperts, plan: SequencePlan) -> PlannedWeights:
    """``layer``'s weights under ``plan``."""
    weight = layer.base.weight
    experts = plan.experts.to(layer.down.device)  # (u,)
    coefficients = plan.coefficients.to(layer.down.device)  # (batch, u)
    present = layer.available[experts]  # (u,) an expert without an adapter here adds nothing
    experts, coefficients = experts[present], coefficients[:, present]
    planned = PlannedWeights()
    if not experts.numel():
        return planned
    n, r = layer.num_experts, layer.rank
    c = coefficients.to(weight.dtype)  # (batch, u)
    in_delta = c @ layer.ia3_in[experts] if bool(layer.is_ia3_in[experts].any()) else None  # (batch, d_in)
    out_delta = c @ layer.ia3_out[experts] if bool(layer.is_ia3_out[experts].any()) else None  # (batch, d_out)
    lora = r > 0 and bool(layer.is_lora[experts].any())
    if not lora and in_delta is None and out_delta is None:
        return planned  # the chosen experts adapt nothing here (vectors of ones, or no LoRA)
    down = layer.down[: n * r].view(n, r, -1)[experts].flatten(0, 1) if lora else None  # (u * rank, d_in)
    up = layer.lora_B.view(n, r, -1)[experts].flatten(0, 1) if lora else None  # (u * rank, d_out)
    scale = coefficients.repeat_interleave(r, dim=1).to(weight.dtype) if lora else None  # (batch, u * rank)
    many = lora and experts.numel() > 2 * layer.config.top_k
    if plan.uniform and layer.config.merge:
        merged, bias = weight.float(), layer.base.bias
        if in_delta is not None:
            merged = merged * (1 + in_delta[0].float())[None, :]
        if out_delta is not None:
            merged = merged * (1 + out_delta[0].float())[:, None]
            bias = bias * (1 + out_delta[0]) if bias is not None else None
        if lora:
            merged = merged + (up * scale[0, :, None]).float().T @ down.float()  # (d_out, d_in)
        planned.merged, planned.merged_bias = merged.to(weight.dtype), bias
        return planned
    planned.in_scale = 1 + in_delta if in_delta is not None else None
    planned.out_scale = 1 + out_delta if out_delta is not None else None
    if many:
        planned.per_row = True
    elif lora:
        row_scale = None if bool((scale == 1).all()) else scale
        if planned.in_scale is None and planned.out_scale is None and layer.config.merge:
            # one product gives W u and every A u; it holds a copy of W, so only where copies are allowed
            planned.fused, planned.up, planned.row_scale = torch.cat([weight.detach(), down]), up, row_scale
            bias = layer.base.bias
            if bias is not None:
                planned.fused_bias = torch.cat([bias.detach(), bias.new_zeros(down.shape[0])])
        else:
            planned.down, planned.up, planned.row_scale = down, up, row_scale
    return planned
