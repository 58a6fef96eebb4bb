"""A linear layer routed between LoRA experts, all experts stacked so routing costs two matrix products.

Written by hand because neither peft nor transformers has token-level top-k routing over independently trained
LoRA experts with PHATGOOSE gates (peft's Arrow routes by SVD prototypes of the adapters, not by learned gates).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from routelora.routing.config import RouterConfig

EPS = 1e-5  # PHATGOOSE's standardisation is a LayerNorm without affine, eps 1e-5


@dataclass
class ExpertWeights:
    """One expert's parameters at one linear layer."""

    lora_A: torch.Tensor
    """(rank, d_in)"""
    lora_B: torch.Tensor
    """(d_out, rank)"""
    scaling: float
    """LoRA scale s (alpha / rank in PEFT's convention)."""
    gate: torch.Tensor | None = None
    """(d_in,) gate vector; None where the expert was not gate-trained."""


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the last dimension, no learned scale or shift."""
    return F.layer_norm(x, x.shape[-1:], eps=EPS)


class RoutedLinear(nn.Module):
    """``y = W u + sum_{i in top-k} w_i s_i B_i A_i u`` with ``w = softmax`` of the kept gate scores.

    Every expert's ``A u`` is computed in one product against the stacked ``A`` (all ranks zero-padded to the
    largest), the routing weights are applied per expert, and one product against the stacked ``B`` gives the
    update: FLOPs ``1 + 2 n r / d`` times the base layer's, whatever ``k`` is.
    """

    def __init__(self, base: nn.Linear, experts: list[ExpertWeights | None], config: RouterConfig) -> None:
        super().__init__()
        if not experts or all(e is None for e in experts):
            raise ValueError("a routed layer needs at least one expert")
        self.base = base
        self.config = config
        self.num_experts = len(experts)
        d_in, d_out = base.in_features, base.out_features
        rank = max(e.lora_A.shape[0] for e in experts if e is not None)
        self.rank = rank
        weight = base.weight
        stacked_A = torch.zeros(self.num_experts, rank, d_in, dtype=torch.float32)
        stacked_B = torch.zeros(self.num_experts, rank, d_out, dtype=torch.float32)
        gates = torch.zeros(self.num_experts, d_in, dtype=torch.float32)
        available = torch.zeros(self.num_experts, dtype=torch.bool)
        for index, expert in enumerate(experts):
            if expert is None:
                continue
            r = expert.lora_A.shape[0]
            if expert.lora_A.shape[1] != d_in or expert.lora_B.shape != (d_out, r):
                raise ValueError(
                    f"expert {index}: LoRA shapes A {tuple(expert.lora_A.shape)}, B {tuple(expert.lora_B.shape)} "
                    f"do not fit a linear of {d_in} -> {d_out}"
                )
            stacked_A[index, :r] = expert.lora_A.float()
            # The LoRA scale is folded into B once here rather than multiplied on every forward.
            stacked_B[index, :r] = expert.lora_B.float().T * expert.scaling
            if expert.gate is not None:
                gates[index] = expert.gate.float()
            available[index] = True
        # (experts * rank, d_in) and (experts * rank, d_out): one matmul each for all experts
        self.register_buffer("lora_A", stacked_A.reshape(-1, d_in).to(weight.device, weight.dtype), persistent=False)
        self.register_buffer("lora_B", stacked_B.reshape(-1, d_out).to(weight.device, weight.dtype), persistent=False)
        self.register_buffer("gates", gates.to(weight.device), persistent=False)  # (experts, d_in), float32
        self.register_buffer("available", available.to(weight.device), persistent=False)
        self.register_buffer("gate_keys", self._gate_keys(gates), persistent=False)
        self.last_choice: torch.Tensor | None = None
        self.last_weights: torch.Tensor | None = None

    def _gate_keys(self, gates: torch.Tensor) -> torch.Tensor:
        """Gates as scored against tokens: standardised and divided by sqrt(d_in) once, ahead of time."""
        keys = standardise(gates) if self.config.normalise else gates
        return (keys / math.sqrt(gates.shape[-1])).to(self.base.weight.device)  # (experts, d_in)

    def scores(self, u: torch.Tensor) -> torch.Tensor:
        """Affinity of every token with every expert. u: (tokens, d_in) -> (tokens, experts)."""
        query = standardise(u.float()) if self.config.normalise else u.float()
        scores = query @ self.gate_keys.T  # (tokens, experts)
        return scores.masked_fill(~self.available, float("-inf"))

    def routing_weights(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense mixing weights (tokens, experts), zero outside the top-k, and the chosen experts (tokens, k).

        A chosen index of -1 marks a token that fell back to the base model.
        """
        k = min(self.config.top_k, self.num_experts)
        kept, chosen = scores.topk(k, dim=-1)  # (tokens, k)
        weights = torch.zeros_like(scores).scatter_(-1, chosen, kept.softmax(dim=-1))  # (tokens, experts)
        if self.config.fallback_threshold is not None:
            unclaimed = kept[:, 0] < self.config.fallback_threshold  # (tokens,)
            weights = weights.masked_fill(unclaimed[:, None], 0.0)
            chosen = chosen.masked_fill(unclaimed[:, None], -1)
        return weights, chosen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)  # (..., d_out)
        u = x.reshape(-1, x.shape[-1])  # (tokens, d_in)
        weights, chosen = self.routing_weights(self.scores(u))  # (tokens, experts), (tokens, k)
        if self.config.trace:
            self.last_choice, self.last_weights = chosen, weights
        hidden = (u @ self.lora_A.T).view(u.shape[0], self.num_experts, self.rank)  # (tokens, experts, rank)
        hidden = hidden * weights.to(hidden.dtype)[:, :, None]  # (tokens, experts, rank)
        update = hidden.reshape(u.shape[0], -1) @ self.lora_B  # (tokens, d_out)
        return result + update.view(*x.shape[:-1], -1)

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, rank={self.rank}, top_k={self.config.top_k}"
