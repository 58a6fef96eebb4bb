"""Per-forward routing context: which tokens a sequence-level decision pools over, and decisions to reuse.

Sequence-level routing decides once per sequence from its prompt tokens and applies the choice to every token,
image tokens included. Every routed layer sees the whole prompt in the prefill forward, so the decision is made
inside that same forward (no second pass over the prompt) and kept for the decoding steps that follow.

What counts as a decoding step is read from nothing private to ``generate`` (docs/method.md, "Decisions during
generation"): inside a routed model's ``generate`` call (see :func:`routelora.routing.model.attach_router`) the
first forward is the prefill and every later one continues it, with or without a KV cache; outside one, a forward
continues a sequence when any of its arguments is a ``transformers.Cache`` that already holds tokens, whatever
keyword it came under.
"""

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import Cache

from routelora.gates.features import language_model_inputs
from routelora.gates.runs import OUTSIDE, PromptLayout, segment_ids
from routelora.models.layout import text_token_mask

SEEN, PAD, IMAGE, PROMPT, GENERATED = -1, 0, 1, 2, 3
"""Token kinds; :data:`SEEN` marks a position an earlier forward of the same generation already routed."""
KIND_NAMES = ("pad", "image", "text", "generated")


@dataclass(eq=False)
class SequencePlan:
    """What the routed layers compute for one shared decision: only the experts that some sequence chose."""

    source: tuple[torch.Tensor, torch.Tensor]
    """The decision it was made from, (batch, candidates) weights and (batch, k) choices."""
    experts: torch.Tensor
    """(u,) the distinct experts chosen by at least one sequence, ascending (u may be 0)."""
    coefficients: torch.Tensor
    """(batch, u) each sequence's weight on each of them (0 where it did not choose it)."""
    uniform: bool
    """Every sequence has the same coefficients, so a layer may merge them into its weight for the batch."""
    key: tuple | None
    """For a uniform plan, (experts, coefficients) as numbers: equal keys merge into equal weights, so a layer
    reuses its merged weight from one batch to the next of the same route; None otherwise."""


def plan_decision(decision: tuple[torch.Tensor, torch.Tensor]) -> SequencePlan:
    """The :class:`SequencePlan` of a shared decision (one host sync: which experts were chosen)."""
    weights, chosen = decision  # (batch, candidates), (batch, k)
    experts = chosen[chosen >= 0].unique()  # (u,)
    coefficients = weights[:, experts]  # (batch, u)
    uniform = bool((coefficients == coefficients[:1]).all())  # True for no expert at all (an empty comparison)
    key = (tuple(experts.tolist()), tuple(coefficients[:1].flatten().tolist())) if uniform else None
    return SequencePlan(decision, experts, coefficients, uniform, key)


@dataclass
class RoutingContext:
    """State shared by the routed layers of one model during one ``forward`` or ``generate``."""

    pool_mask: torch.Tensor | None = None
    """(batch, seq) bool: tokens a sequence's decision is pooled over (real text tokens of the prompt)."""
    decoding: bool = False
    """True in a forward that continues an earlier one (a decoding step): reuse the decisions of the prefill."""
    decisions: dict[str, torch.Tensor] = field(default_factory=dict)
    """Per layer name: (batch, candidates) mixing weights chosen at prefill."""
    shared: tuple[torch.Tensor, torch.Tensor] | None = None
    """(batch, candidates) weights and (batch, k) choices decided once at prefill for every layer (see
    :mod:`routelora.routing.decision`); None when each layer decides on its own."""
    token_kinds: torch.Tensor | None = None
    """(batch, seq) int: :data:`PAD`, :data:`IMAGE`, :data:`PROMPT`, :data:`GENERATED` or :data:`SEEN`."""
    counts: dict[str, torch.Tensor] = field(default_factory=dict)
    """Per layer name: (token kinds, experts + 1) tokens that chose each expert (last column: the base model),
    accumulated while ``recording``."""
    recording: bool = False
    """Accumulate :attr:`counts` (and :attr:`sequence_counts`) in every routed forward."""
    sequence_counts: torch.Tensor | None = None
    """(experts + 1,) sequences whose shared decision chose each expert first (last: the base model), accumulated
    while ``recording``; None until a shared decision is recorded."""
    num_experts: int = 0
    generating: bool = False
    """Inside a routed model's ``generate`` call."""
    prefilled: bool = False
    """The current ``generate`` call has run its first (prefill) forward."""
    seen: int = 0
    """Positions of the current sequences routed so far (prompt and generated tokens)."""
    plan_cache: SequencePlan | None = field(default=None, repr=False)
    segments: torch.Tensor | None = None
    """(batch, seq) each prompt token's sentence (:func:`routelora.gates.runs.segment_ids`), where the router tests
    the experts' regions; None otherwise."""
    allowed: torch.Tensor | None = None
    """(batch, experts) bool: the experts whose region holds each sequence, decided at prefill and kept for the
    decoding steps; None for a closed-world router."""
    region_ratios: torch.Tensor | None = None
    """(batch, experts) each sequence's best-run distance to each expert over its threshold, with :attr:`allowed`."""
    accepted_counts: torch.Tensor | None = None
    """(experts + 2,) since recording started: sequences each expert's region held, those no region held, and
    every sequence tested."""
    ahead: tuple[torch.Tensor, torch.Tensor] | None = None
    """A shared decision made before the forward (a served request's route, decided once for its batch or forced
    by its ``model``): every prefill applies it and decides nothing, so the regions and the discriminant are not
    computed twice."""

    @property
    def plan(self) -> SequencePlan | None:
        """The :class:`SequencePlan` of the current shared decision (made once per decision, for every layer);
        None without one."""
        if self.shared is None:
            return None
        if self.plan_cache is None or self.plan_cache.source is not self.shared:
            self.plan_cache = plan_decision(self.shared)
        return self.plan_cache

    def begin_generation(self) -> None:
        """Mark the start of a ``generate`` call: its first forward decides, every later one reuses."""
        self.generating, self.prefilled = True, False

    def end_generation(self) -> None:
        self.generating, self.prefilled = False, False

    def decide(self, decision: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Keep a prefill's shared decision, (batch, candidates) weights and (batch, k) choices, for every layer."""
        self.shared = decision
        if self.recording:
            first = decision[1][:, 0].clone()  # (batch,)
            first[first < 0] = self.num_experts
            counts = torch.bincount(first.cpu(), minlength=self.num_experts + 1)
            self.sequence_counts = counts if self.sequence_counts is None else self.sequence_counts + counts

    def restrict(self, allowed: torch.Tensor, ratios: torch.Tensor | None = None) -> None:
        """Keep a prefill's open-world test, (batch, experts) bool (and the distance ratios it came from), for every
        layer and the decoding steps."""
        self.allowed, self.region_ratios = allowed, ratios
        if self.recording:
            tested = torch.tensor([allowed.shape[0]], device=allowed.device)
            held = torch.cat([allowed.sum(0), (~allowed.any(1)).sum()[None], tested]).cpu()  # (experts + 2,)
            self.accepted_counts = held if self.accepted_counts is None else self.accepted_counts + held

    def record(self, layer: str, chosen: torch.Tensor) -> None:
        """Add one forward's top-1 choices (tokens, k) of ``layer`` to :attr:`counts`."""
        if not self.recording or self.token_kinds is None:
            return
        kinds = self.token_kinds.reshape(-1).to(chosen.device)  # (tokens,)
        if kinds.numel() != chosen.shape[0]:
            return
        new = kinds != SEEN  # (tokens,) positions a no-cache decoding step computes again are counted once
        first = chosen[new, 0].clone()  # (new tokens,)
        first[first < 0] = self.num_experts  # the base model's column
        table = self.counts.setdefault(layer, torch.zeros(len(KIND_NAMES), self.num_experts + 1, dtype=torch.long))
        flat = (kinds[new] * (self.num_experts + 1) + first).cpu()
        table += torch.bincount(flat, minlength=table.numel()).view_as(table)


def restricted(
    decision: tuple[torch.Tensor, torch.Tensor], allowed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A decision (weights, choices) with every expert outside ``allowed`` (batch, experts) taken out: a sequence
    whose choices are all outside gets the base model."""
    weights, chosen = decision  # (batch, candidates), (batch, k)
    experts = allowed.shape[1]
    inside = torch.cat([allowed, allowed.new_ones(allowed.shape[0], weights.shape[1] - experts)], 1)
    weights = weights * inside.to(weights.dtype)
    keep = (chosen >= 0) & allowed.gather(1, chosen.clamp(min=0))
    return weights, chosen.masked_fill(~keep, -1)


def find_cache(args: tuple, kwargs: dict) -> Cache | None:
    """The KV cache among a forward's arguments, found by its type rather than by the keyword it is passed under
    (transformers 5.24 renamed ``past_key_values`` to ``cache`` in ``generate``)."""
    return next((value for value in (*args, *kwargs.values()) if isinstance(value, Cache)), None)


def install_context_hook(
    model: nn.Module,
    context: RoutingContext,
    image_token_id: int | None,
    decider: nn.Module | None = None,
    layout: PromptLayout | None = None,
):
    """Fill ``context`` from each top-level forward's inputs; returns the hook handle.

    With a ``decider`` (:class:`~routelora.routing.decision.SequenceDecider`), each prefill also decides every
    sequence's experts from its input embeddings, before the first layer runs. With a prompt ``layout``, each
    prefill also marks its prompts' sentences, for the experts' regions (:mod:`routelora.routing.regions`).
    """

    def before_forward(module: nn.Module, args: tuple, kwargs: dict) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        attention_mask = kwargs.get("attention_mask")
        cache = find_cache(args, kwargs)
        start = cache.get_seq_length() if cache is not None else 0  # positions already in the cache
        context.decoding = (context.generating and context.prefilled) or start > 0
        if context.decoding:
            if not context.recording:  # token kinds only label recorded counts; a decoding step skips them
                context.token_kinds = None
                context.seen = max(context.seen, start + (input_ids.shape[1] if input_ids is not None else 1))
            elif input_ids is None:
                context.token_kinds = None
            else:
                positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)  # (seq,)
                kinds = torch.full_like(input_ids, GENERATED)  # (batch, seq)
                context.token_kinds = kinds.masked_fill(positions < context.seen, SEEN)
                context.seen = max(context.seen, start + input_ids.shape[1])
            return
        context.prefilled = context.generating
        context.decisions.clear()
        context.shared = context.allowed = context.segments = context.region_ratios = None
        if input_ids is None:
            embeddings = kwargs.get("inputs_embeds")
            real = attention_mask.bool() if attention_mask is not None else None
            context.pool_mask, context.token_kinds = real, None
            context.seen = embeddings.shape[1] if embeddings is not None else 0
            if context.ahead is not None:
                context.decide(context.ahead)
            elif decider is not None and embeddings is not None:
                real = real if real is not None else torch.ones(embeddings.shape[:2], dtype=torch.bool)
                context.decide(decider(embeddings, real))
            return
        context.seen = input_ids.shape[1]
        context.pool_mask = text_token_mask(input_ids, attention_mask, image_token_id)
        kinds = torch.full_like(input_ids, PROMPT)
        kinds[~context.pool_mask] = IMAGE
        if attention_mask is not None:
            kinds[~attention_mask.bool()] = PAD
        context.token_kinds = kinds
        if context.ahead is not None:  # decided before this forward: no sentences to mark, nothing to decide
            context.decide(context.ahead)
            return
        if layout is not None:
            context.segments = segment_ids(input_ids, context.pool_mask, layout)
        if decider is not None:
            # image and padding positions are looked up as token 0: they are pooled out anyway
            embeddings = module.get_input_embeddings()(input_ids.masked_fill(~context.pool_mask, 0))
            context.decide(decider(embeddings, context.pool_mask))

    return model.register_forward_pre_hook(before_forward, with_kwargs=True)


def install_feature_hook(language_model: nn.Module, context: RoutingContext, decide) -> object:
    """Decide every sequence's experts at each prefill from the language model's input embeddings (see
    :mod:`routelora.gates.features`); ``decide(embeddings, text_mask, image_mask, segments)`` returns the (weights,
    choices) that every routed layer then applies (None where the layers decide themselves) and the experts'
    :class:`~routelora.routing.regions.RegionVerdict` on each sequence (None for a closed world). Needs the
    top-level hook of :func:`install_context_hook` to have set the token masks of this forward first. Returns the
    hook handle."""

    def before_language_model(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if context.decoding:
            return
        if context.ahead is not None:  # applied by the top-level hook
            return
        embeddings = language_model_inputs(module, args, kwargs)
        if embeddings is None:
            return
        text_mask = context.pool_mask
        if text_mask is None or text_mask.shape != embeddings.shape[:2]:
            text_mask = torch.ones(embeddings.shape[:2], dtype=torch.bool, device=embeddings.device)
        kinds = context.token_kinds
        image_mask = kinds == IMAGE if kinds is not None and kinds.shape == embeddings.shape[:2] else None
        segments = context.segments
        if segments is None or segments.shape != embeddings.shape[:2]:  # no token ids: the prompt is one sentence
            segments = torch.where(text_mask, 0, OUTSIDE).to(embeddings.device)
        decision, verdict = decide(embeddings, text_mask, image_mask, segments.to(embeddings.device))
        if verdict is not None:
            context.restrict(verdict.inside, verdict.ratios)
        if decision is None and verdict is not None and context.shared is not None:
            decision = restricted(context.shared, verdict.inside)  # a decision made before (from text prototypes)
        if decision is not None:
            context.decide(decision)

    return language_model.register_forward_pre_hook(before_language_model, with_kwargs=True)
