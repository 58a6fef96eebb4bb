"""The gate-training layers: a frozen expert (LoRA or (IA)^3) scaled per token by a trainable sigmoid gate."""

import torch
from torch import nn


class GatedLoraLinear(nn.Module):
    """``y = W u + s B A u sigmoid(v . u)`` on the raw input ``u``; only ``v`` is trainable.

    ``v`` starts at zero, so the gate starts at 0.5 (docs/method.md, section 3).
    """

    def __init__(self, base: nn.Linear, lora_A: torch.Tensor, lora_B: torch.Tensor, scaling: float) -> None:
        super().__init__()
        self.base = base
        weight = base.weight
        self.register_buffer("lora_A", lora_A.detach().to(weight.device, weight.dtype), persistent=False)  # (r, d_in)
        self.register_buffer("lora_B", lora_B.detach().to(weight.device, weight.dtype), persistent=False)  # (d_out, r)
        self.scaling = scaling
        self.gate = nn.Parameter(torch.zeros(base.in_features, device=weight.device, dtype=torch.float32))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(u.float() @ self.gate).unsqueeze(-1).to(u.dtype)  # (..., 1)
        update = (u @ self.lora_A.T) @ self.lora_B.T  # (..., d_out)
        return self.base(u) + self.scaling * update * gate


class GatedIA3Linear(nn.Module):
    """The (IA)^3 form of the gated layer: the token's gate ``g = sigmoid(v . u)`` moves the scaling from 1 (the
    base) to ``l`` (the expert): ``y = (1 + g (l - 1)) * (W u + b)`` where ``l`` scales the output, and
    ``y = W ((1 + g (l - 1)) * u) + b`` where it scales the input. At ``g = 1`` this is the expert, at ``g = 0``
    the base, as ``W u + g s B A u`` is for LoRA (docs/method.md, section 3)."""

    def __init__(self, base: nn.Linear, vector: torch.Tensor, scales_input: bool) -> None:
        super().__init__()
        self.base = base
        weight = base.weight
        self.register_buffer("delta", (vector.detach() - 1).to(weight.device, weight.dtype), persistent=False)
        self.scales_input = scales_input
        self.gate = nn.Parameter(torch.zeros(base.in_features, device=weight.device, dtype=torch.float32))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(u.float() @ self.gate).unsqueeze(-1).to(u.dtype)  # (..., 1)
        scale = 1 + gate * self.delta  # (..., d_in) or (..., d_out)
        if self.scales_input:
            return self.base(u * scale)
        return self.base(u) * scale
