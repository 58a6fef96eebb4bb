"""Per-forward routing context: which tokens a sequence-level decision pools over, and decisions to reuse.

Sequence-level routing decides once per sequence from its prompt tokens and applies the choice to every token,
image tokens included. Every routed layer sees the whole prompt in the prefill forward, so the decision is made
inside that same forward (no second pass over the prompt) and kept for the decoding steps that follow.
"""

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class RoutingContext:
    """State shared by the routed layers of one model during one ``forward`` or ``generate``."""

    pool_mask: torch.Tensor | None = None
    """(batch, seq) bool: tokens a sequence's decision is pooled over (real text tokens of the prompt)."""
    decoding: bool = False
    """True in a cached decoding step: reuse the decisions of the prefill."""
    decisions: dict[str, torch.Tensor] = field(default_factory=dict)
    """Per layer name: (batch, candidates) mixing weights chosen at prefill."""


def install_context_hook(model: nn.Module, context: RoutingContext, image_token_id: int | None):
    """Fill ``context`` from each top-level forward's inputs; returns the hook handle."""

    def before_forward(module: nn.Module, args: tuple, kwargs: dict) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        attention_mask = kwargs.get("attention_mask")
        cache = kwargs.get("past_key_values")
        cached_tokens = cache.get_seq_length() if cache is not None and hasattr(cache, "get_seq_length") else 0
        context.decoding = cached_tokens > 0
        if context.decoding:
            return
        context.decisions.clear()
        if input_ids is None:
            context.pool_mask = attention_mask.bool() if attention_mask is not None else None
            return
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        if image_token_id is not None:
            mask = mask & (input_ids != image_token_id)
        context.pool_mask = mask

    return model.register_forward_pre_hook(before_forward, with_kwargs=True)
