"""One routing decision per sequence, made from the prompt's input embeddings and shared by every routed layer.

Why before the first layer: on the embedded world the mean standardised input embedding of a prompt's text tokens
(in effect its bag of words) told every task apart, while deeper layers' inputs, shaped by the base model's own
training, did so far less reliably (docs/routing.md). Deciding there also costs no second pass over the prompt:
the embeddings are a table lookup, and every layer then applies the same choice to all tokens of the sequence.
"""

import math

import torch
from torch import nn

from routelora.nn import standardise, top_k_weights


class SequenceDecider(nn.Module):
    """Scores each sequence's pooled prompt embedding against every candidate's embedding prototype."""

    def __init__(
        self,
        expert_keys: torch.Tensor,
        base_keys: torch.Tensor | None,
        top_k: int,
        normalise: bool = True,
        fallback_threshold: float | None = None,
    ) -> None:
        """
        Args:
            expert_keys: (experts, d) embedding prototypes of the experts.
            base_keys: (skills, d) embedding prototypes of the base model's general skills, or None.
            top_k: experts kept per sequence.
            normalise: standardise pooled embeddings and prototypes before scoring, as the layers do.
            fallback_threshold: below this best score a sequence gets no expert.
        """
        super().__init__()
        keys = expert_keys if base_keys is None else torch.cat([expert_keys, base_keys])  # (candidates, d)
        keys = keys.float()
        keys = standardise(keys) if normalise else keys
        self.register_buffer("keys", keys / math.sqrt(keys.shape[-1]), persistent=False)  # (candidates, d)
        self.num_experts = expert_keys.shape[0]
        self.top_k = top_k
        self.normalise = normalise
        self.fallback_threshold = fallback_threshold

    @torch.no_grad()
    def forward(self, embeddings: torch.Tensor, pool_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixing weights (batch, candidates) and chosen candidates (batch, k) of each sequence.

        embeddings: (batch, seq, d) input embeddings; pool_mask: (batch, seq) bool, the prompt's text tokens (a row
        with none pools over all its tokens).
        """
        query = embeddings.float()
        query = standardise(query) if self.normalise else query  # (batch, seq, d)
        mask = pool_mask.to(query.device)
        mask = (mask | ~mask.any(dim=1, keepdim=True)).to(query.dtype)[..., None]  # (batch, seq, 1)
        pooled = (query * mask).sum(1) / mask.sum(1)  # (batch, d)
        scores = pooled @ self.keys.to(query.device).T  # (batch, candidates)
        return top_k_weights(scores, self.top_k, self.num_experts, self.fallback_threshold)
