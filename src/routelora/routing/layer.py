"""A linear layer routed between LoRA experts, all experts stacked so routing costs two matrix products.

Written by hand because neither peft nor transformers has token-level top-k routing over independently trained
LoRA experts with PHATGOOSE gates (peft's Arrow routes by SVD prototypes of the adapters, not by learned gates).
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from routelora.nn import EPS, standardise, top_k_weights
from routelora.routing.config import RouterConfig
from routelora.routing.context import RoutingContext, SequencePlan, plan_decision
from routelora.routing.planned import PlannedWeights, planned_weights


@dataclass
class ExpertWeights:
    """One expert's parameters at one linear layer: a LoRA, or an (IA)^3 vector."""

    lora_A: torch.Tensor | None
    """(rank, d_in); None for an (IA)^3 expert"""
    lora_B: torch.Tensor | None
    """(d_out, rank)"""
    scaling: float
    """LoRA scale s (alpha / rank in PEFT's convention)."""
    gate: torch.Tensor | None = None
    """(d_in,) gate vector; None where the expert was not gate-trained."""
    ia3: torch.Tensor | None = None
    """(IA)^3 scaling vector l: (d_in,) where it scales the input (``ia3_input``), else (d_out,)."""
    ia3_input: bool = False


class RoutedLinear(nn.Module):
    """``y = W u + sum_{i in top-k} w_i s_i B_i A_i u`` with ``w = softmax`` of the kept gate scores.

    Every expert's ``A u`` is computed in one product against the stacked ``A`` (all ranks zero-padded to the
    largest), the routing weights are applied per expert, and one product against the stacked ``B`` gives the
    update: FLOPs ``1 + 2 n r / d`` times the base layer's, whatever ``k`` is.

    (IA)^3 experts mix by their vectors: ``y = o * (W (i * u) + b) + sum_lora``, with ``i = 1 + sum_j w_j (l_j - 1)``
    over the input-scaling experts and ``o`` likewise over the output-scaling ones, which is the weighted mixture
    of the experts' outputs exactly at k = 1, and whenever no token mixes an input- and an output-scaling vector at
    one layer (docs/method.md, section 4).
    """

    def __init__(
        self,
        base: nn.Linear,
        experts: list[ExpertWeights | None],
        config: RouterConfig,
        base_keys: torch.Tensor | None = None,
        context: RoutingContext | None = None,
        name: str = "",
    ) -> None:
        """
        Args:
            base: the frozen linear layer.
            experts: one entry per expert (None where an expert has no LoRA at this layer: never chosen).
            config: routing settings.
            base_keys: (m, d_in) routing vectors of base-model candidates: a token or sequence that picks one of
                them gets no expert update.
            context: shared per-forward state, needed for sequence-level routing.
            name: the layer's module name, to keep its sequence-level decisions apart from other layers'.
        """
        super().__init__()
        if not experts or all(e is None for e in experts):
            raise ValueError("a routed layer needs at least one expert")
        self.base = base
        self.config = config
        self.num_experts = len(experts)
        d_in, d_out = base.in_features, base.out_features
        rank = max((e.lora_A.shape[0] for e in experts if e is not None and e.lora_A is not None), default=0)
        self.rank = rank
        weight = base.weight
        stacked_A = torch.zeros(self.num_experts, rank, d_in, dtype=torch.float32)
        stacked_B = torch.zeros(self.num_experts, rank, d_out, dtype=torch.float32)
        ia3_in = torch.zeros(self.num_experts, d_in, dtype=torch.float32)  # (experts, d_in) l - 1, 0 for the rest
        ia3_out = torch.zeros(self.num_experts, d_out, dtype=torch.float32)
        self.num_base = 0 if base_keys is None else base_keys.shape[0]
        self.context = context
        self.name = name
        gates = torch.zeros(self.num_experts + self.num_base, d_in, dtype=torch.float32)
        available = torch.zeros(self.num_experts + self.num_base, dtype=torch.bool)
        if base_keys is not None:
            gates[self.num_experts :] = base_keys.float()
            available[self.num_experts :] = True
        for index, expert in enumerate(experts):
            if expert is None:
                continue
            if expert.ia3 is not None:
                stack, size = (ia3_in, d_in) if expert.ia3_input else (ia3_out, d_out)
                if tuple(expert.ia3.shape) != (size,):
                    raise ValueError(f"expert {index}: (IA)^3 vector {tuple(expert.ia3.shape)} does not fit {size}")
                stack[index] = expert.ia3.float() - 1
            else:
                r = expert.lora_A.shape[0]
                if expert.lora_A.shape[1] != d_in or expert.lora_B.shape != (d_out, r):
                    raise ValueError(
                        f"expert {index}: LoRA shapes A {tuple(expert.lora_A.shape)}, B "
                        f"{tuple(expert.lora_B.shape)} do not fit a linear of {d_in} -> {d_out}"
                    )
                stacked_A[index, :r] = expert.lora_A.float()
                # The LoRA scale is folded into B once here rather than multiplied on every forward.
                stacked_B[index, :r] = expert.lora_B.float().T * expert.scaling
            if expert.gate is not None:
                gates[index] = expert.gate.float()
            available[index] = True
        self.register_buffer("available", available.to(weight.device), persistent=False)
        kinds = [(e is not None and e.ia3 is not None, e is not None and e.ia3_input) for e in experts]
        is_ia3_in = torch.tensor([ia3 and side for ia3, side in kinds])  # (experts,)
        is_ia3_out = torch.tensor([ia3 and not side for ia3, side in kinds])
        self.register_buffer("is_ia3_in", is_ia3_in.to(weight.device), persistent=False)
        self.register_buffer("is_ia3_out", is_ia3_out.to(weight.device), persistent=False)
        is_lora = torch.tensor([e is not None and e.ia3 is None for e in experts])
        self.register_buffer("is_lora", is_lora.to(weight.device), persistent=False)
        self.has_ia3_in, self.has_ia3_out = bool(is_ia3_in.any()), bool(is_ia3_out.any())
        self.register_buffer("ia3_in", ia3_in.to(weight.device, weight.dtype), persistent=False)
        self.register_buffer("ia3_out", ia3_out.to(weight.device, weight.dtype), persistent=False)
        # One "down" matrix, the stacked A then the gate keys: a single product of the tokens gives every expert's
        # A u and every candidate's raw score, so the input is read once (see scores_from).
        keys = self._gate_keys(gates)  # (candidates, d_in)
        down = torch.cat([stacked_A.reshape(-1, d_in), keys])  # (experts * rank + candidates, d_in)
        self.register_buffer("down", down.to(weight.device, weight.dtype), persistent=False)
        # (experts * rank, d_out), the LoRA scale folded in
        self.register_buffer("lora_B", stacked_B.reshape(-1, d_out).to(weight.device, weight.dtype), persistent=False)
        self.last_choice: torch.Tensor | None = None
        self.last_weights: torch.Tensor | None = None
        self._planned: tuple[SequencePlan | tuple, tuple, PlannedWeights] | None = None
        self._sequence_mode = config.granularity == "sequence" and context is not None
        # One expert and no other candidate: every token takes it with weight 1, whatever the router.
        self._alone = None
        if self.num_candidates == 1 and config.fallback_threshold is None and config.merge and not config.open_world:
            self._alone = plan_decision((torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.long)))

    @property
    def lora_A(self) -> torch.Tensor:
        """(experts * rank, d_in) every expert's A, stacked (a view of :attr:`down`)."""
        return self.down[: self.num_experts * self.rank]

    @property
    def _direct(self) -> bool:
        """A base layer with hooks (accelerate's offloading moves its weight in a hook) is always called as a
        module; one without is applied directly, which skips a module call per layer and decoding step."""
        base = self.base
        return not (hasattr(base, "_hf_hook") or base._forward_hooks or base._forward_pre_hooks)

    def release(self) -> None:
        """Drop the weights kept for the last decision (a merged or stacked copy of this layer's weight)."""
        self._planned = None

    @property
    def num_candidates(self) -> int:
        """Experts plus base-model candidates: the columns of every score."""
        return self.num_experts + self.num_base

    @property
    def gate_keys(self) -> torch.Tensor:
        """(candidates, d_in) gates as scored: standardised (when normalising) and divided by sqrt(d_in)."""
        return self.down[self.num_experts * self.rank :]

    def _gate_keys(self, gates: torch.Tensor) -> torch.Tensor:
        keys = standardise(gates) if self.config.normalise else gates
        return keys / math.sqrt(gates.shape[-1])  # (candidates, d_in)

    def scores_from(self, u: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """Scores (tokens, candidates) from the raw products ``raw = u @ gate_keys.T``.

        Standardising u before the product is the same as dividing the raw product by u's standard deviation,
        because the keys have zero mean: ``(u - mean) . k / std = u . k / std``. So u is never standardised
        in memory, only its variance is taken.
        """
        scores = raw.float()  # (tokens, candidates)
        if self.config.normalise:
            # E[u^2] - E[u]^2 from a norm and a mean: torch.var is ~10x slower than both on CPU
            query = u.float()
            mean_square = torch.linalg.vector_norm(query, dim=-1).square() / query.shape[-1]  # (tokens,)
            variance = (mean_square - query.mean(dim=-1).square()).clamp_min(0.0)  # (tokens,)
            scores = scores * torch.rsqrt(variance + EPS)[:, None]
        return scores.masked_fill(~self.available, float("-inf"))

    def scores(self, u: torch.Tensor) -> torch.Tensor:
        """Affinity of every token with every candidate. u: (tokens, d_in) -> (tokens, candidates)."""
        return self.scores_from(u, u @ self.gate_keys.T)

    def routing_weights(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixing weights and chosen candidates of :func:`top_k_weights` under this layer's settings."""
        return top_k_weights(scores, self.config.top_k, self.num_experts, self.config.fallback_threshold)

    def _sequence_weights(self, x: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This layer's own decision per sequence: scores (tokens, candidates) pooled over the prompt's text
        tokens at prefill, kept for the decoding steps. Returns (batch, candidates) weights, (batch, k) choices."""
        batch, seq = x.shape[0], x.shape[1]
        context = self.context
        if context.decoding and self.name in context.decisions:
            return context.decisions[self.name]
        scores = scores.view(batch, seq, -1)  # (batch, seq, candidates)
        mask = context.pool_mask if context.pool_mask is not None else torch.ones(batch, seq, dtype=torch.bool)
        mask = mask.to(scores.device)[:, -seq:, None]  # (batch, seq, 1)
        # a row with no poolable token (all image or padding) pools over every token instead
        mask = mask | ~mask.any(dim=1, keepdim=True)
        pooled = scores.masked_fill(~mask, 0.0).sum(1) / mask.sum(1)  # (batch, candidates)
        context.decisions[self.name] = self.routing_weights(self._within_regions(pooled, batch))
        return context.decisions[self.name]

    def _per_sequence_update(self, x: torch.Tensor, weights: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """The update when each sequence has its own k experts: only those are computed, ``1 + 2 k r / d`` of
        the base layer's FLOPs whatever the number of experts.

        x: (batch, seq, d_in); weights: (batch, candidates); chosen: (batch, k), -1 for the base model.
        """
        n, r = self.num_experts, self.rank
        if r == 0:  # (IA)^3 experts only: no low-rank update
            return torch.zeros((), dtype=x.dtype, device=x.device)
        index = chosen.clamp(min=0)  # (batch, k)
        kept = torch.where(chosen >= 0, weights.gather(1, index), 0.0).to(x.dtype)  # (batch, k)
        batch, k = index.shape
        down = self.lora_A.view(n, r, -1)[index].reshape(batch, k * r, -1)  # (batch, k * rank, d_in)
        up = self.lora_B.view(n, r, -1)[index] * kept[:, :, None, None]  # (batch, k, rank, d_out)
        hidden = torch.bmm(x, down.transpose(1, 2))  # (batch, seq, k * rank)
        return torch.bmm(hidden, up.reshape(batch, k * r, -1))  # (batch, seq, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``y = W x + update``; x: (..., d_in). The update is made in one of three modes:

        1. Shared sequence decision (the default router): each sequence's experts were chosen once, before the
           first layer, from its prompt's input embeddings (``context.shared``). Only the experts some sequence
           chose are computed, gathered once per decision (:meth:`_planned_forward`); where every sequence chose
           the same ones they are merged into the weight, and the forward costs the base layer's.
        2. Per-layer sequence decision (``decide_from="each_layer"``): score every token against the gate keys,
           pool the scores over the prompt's text tokens at prefill, keep the choice for the decoding steps
           (:meth:`_sequence_weights`), then compute each sequence's own experts (:meth:`_per_sequence_update`).
        3. Token level (the paper): every token keeps its own top-k candidates and mixes the stacked experts'
           updates by their weights (:meth:`_token_level`). Sequence-level settings fall back to this for an
           input that is not (batch, seq, d_in), or in a layer without a routing context.
        """
        if self._alone is not None and self._direct:
            if self._recording():
                ones = torch.ones(x.numel() // x.shape[-1], 1, device=x.device)  # (tokens, 1)
                self._keep_trace(ones, torch.zeros_like(ones, dtype=torch.long))
            return self._planned_forward(x, self._alone)
        if not self._sequence_mode or x.dim() != 3:
            return self._token_level(x)
        shared = self.context.shared
        if shared is not None:
            if self._recording():
                self._keep_sequence_trace(x, *shared)
            plan = self.context.plan
            if plan.coefficients.shape[0] == x.shape[0] and self._direct:
                return self._planned_forward(x, plan)
            return self._scaled_base(x, shared[0]) + self._per_sequence_update(x, *shared)
        u = x.reshape(-1, x.shape[-1])  # (tokens, d_in)
        _, raw = self._down(u)
        weights, chosen = self._sequence_weights(x, self.scores_from(u, raw))  # (batch, candidates), (batch, k)
        if self._recording():
            self._keep_sequence_trace(x, weights, chosen)
        return self._scaled_base(x, weights) + self._per_sequence_update(x, weights, chosen)

    def _planned_forward(self, x: torch.Tensor, plan: SequencePlan) -> torch.Tensor:
        """Mode 1: x (batch, seq, d_in) -> (batch, seq, d_out) under the plan's experts and coefficients."""
        planned = self._weights_for(plan)
        if planned.merged is not None:
            return F.linear(x, planned.merged, planned.merged_bias)
        if planned.fused is None:
            inputs = x * planned.in_scale[:, None, :] if planned.in_scale is not None else x
            result = F.linear(inputs, self.base.weight, self.base.bias)  # (batch, seq, d_out)
            if planned.out_scale is not None:
                result = result * planned.out_scale[:, None, :]
            if planned.per_row:
                return result + self._per_sequence_update(x, *plan.source)
            if planned.down is None:
                return result
            hidden = x @ planned.down.T  # (batch, seq, u * rank)
            if planned.row_scale is not None:
                hidden = hidden * planned.row_scale[:, None, :]
            return result + hidden @ planned.up
        batch, d_out = x.shape[0], self.base.out_features
        both = F.linear(x, planned.fused, planned.fused_bias).view(batch, -1, planned.fused.shape[0])
        result, hidden = both.split([d_out, planned.up.shape[0]], -1)  # (batch, seq, d_out), (batch, seq, u * r)
        if planned.row_scale is not None:
            hidden = hidden * planned.row_scale[:, None, :]
        update = torch.addmm(result.flatten(0, 1), hidden.flatten(0, 1), planned.up)  # (batch * seq, d_out)
        return update.view(*x.shape[:-1], d_out)

    def _weights_for(self, plan: SequencePlan) -> PlannedWeights:
        """This layer's :class:`PlannedWeights` for ``plan``, made once (again if the base weight changed)."""
        weight = self.base.weight
        cached = self._planned
        # a uniform plan is known by its key, so the next batch of the same route reuses the merged weight; the
        # weight's version, storage and dtype tell an in-place change, a move or a cast of the base weight
        identity = plan.key if plan.key is not None and self.config.merge else plan
        state = (weight._version, weight.data_ptr(), weight.dtype)
        if cached is not None and cached[1] == state and (cached[0] is identity or cached[0] == identity):
            return cached[2]
        planned = planned_weights(self, plan)
        self._planned = (identity, state, planned)
        return planned

    def _down(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One product of the tokens u: (tokens, d_in) with :attr:`down`: every expert's ``A u`` (tokens,
        experts * rank) and every candidate's raw score (tokens, candidates)."""
        return (u @ self.down.T).split([self.num_experts * self.rank, self.num_candidates], -1)

    def _recording(self) -> bool:
        return self.config.trace or (self.context is not None and self.context.recording)

    def _keep_sequence_trace(self, x: torch.Tensor, weights: torch.Tensor, chosen: torch.Tensor) -> None:
        """Per-sequence weights (batch, candidates) and choices (batch, k) kept as every token's."""
        batch, seq = x.shape[0], x.shape[1]
        self._keep_trace(
            weights[:, None].expand(batch, seq, -1).flatten(0, 1), chosen[:, None].expand(batch, seq, -1).flatten(0, 1)
        )

    def _token_level(self, x: torch.Tensor) -> torch.Tensor:
        """Each token's top-k experts by its own scores, mixed: x (..., d_in) -> (..., d_out)."""
        u = x.reshape(-1, x.shape[-1])  # (tokens, d_in)
        hidden, raw = self._down(u)  # (tokens, experts * rank), (tokens, candidates)
        scores = self.scores_from(u, raw)
        if x.dim() == 3:
            scores = self._within_regions(scores, x.shape[0])
        weights, chosen = self.routing_weights(scores)  # (tokens, candidates), (tokens, k)
        self._keep_trace(weights, chosen)
        result = self._scaled_base(u, weights)  # (tokens, d_out)
        if self.rank:
            mix = weights[:, : self.num_experts].to(hidden.dtype)  # base candidates contribute no update
            hidden = hidden.view(u.shape[0], self.num_experts, self.rank) * mix[:, :, None]  # (tokens, n, r)
            result = torch.addmm(result, hidden.flatten(1), self.lora_B)  # (tokens, d_out)
        return result.view(*x.shape[:-1], -1)

    def _within_regions(self, scores: torch.Tensor, batch: int) -> torch.Tensor:
        """``scores`` (rows, candidates), the rows ``batch`` sequences' in order, with every expert outside a
        sequence's region (``context.allowed``, the open world) scored -inf; as they are for a closed world."""
        allowed = self.context.allowed if self.context is not None else None
        if allowed is None or allowed.shape[0] != batch or scores.shape[0] % batch:
            return scores
        inside = allowed.to(scores.device).repeat_interleave(scores.shape[0] // batch, 0)  # (rows, experts)
        experts = scores[:, : self.num_experts].masked_fill(~inside, float("-inf"))
        return torch.cat([experts, scores[:, self.num_experts :]], 1)

    def _scaled_base(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The base layer under the (IA)^3 vectors that ``weights`` (rows, candidates) mix, one row per token
        (x: (tokens, d_in)) or per sequence (x: (batch, seq, d_in)); the base layer alone without them."""
        if not (self.has_ia3_in or self.has_ia3_out):
            return self.base(x)
        mix = weights[:, : self.num_experts].to(x.dtype)  # (rows, experts)
        spread = (lambda scale: scale) if x.dim() == 2 else (lambda scale: scale[:, None, :])
        inputs = x * spread(1 + mix @ self.ia3_in) if self.has_ia3_in else x
        result = self.base(inputs)
        return result * spread(1 + mix @ self.ia3_out) if self.has_ia3_out else result

    def _keep_trace(self, weights: torch.Tensor, chosen: torch.Tensor) -> None:
        """Per-token (tokens, candidates) weights and (tokens, k) choices, for traces and routing counts."""
        if self.config.trace:
            self.last_choice, self.last_weights = chosen, weights
        if self.context is not None:
            self.context.record(self.name, chosen)

    def extra_repr(self) -> str:
        return (
            f"experts={self.num_experts}, base_candidates={self.num_base}, rank={self.rank}, top_k={self.config.top_k}"
        )
