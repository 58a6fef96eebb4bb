"""Attach a router to a model: every adapter target becomes a routed layer over all loaded experts."""

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from routelora.errors import RouteloraError
from routelora.experts.expert import EMBEDDINGS_KEY, PROTOTYPES, Expert
from routelora.experts.fingerprint import check_compatible
from routelora.experts.library import ExpertLibrary, load_base_prototypes
from routelora.gates.features import MEAN_KEY, select_statistics, sequence_features
from routelora.gates.runs import run_features
from routelora.models.layout import get_layout, image_token_id
from routelora.nn import restore_modules, swap_modules
from routelora.routing.config import RouterConfig
from routelora.routing.context import RoutingContext, install_context_hook, install_feature_hook
from routelora.routing.decision import SequenceDecider
from routelora.routing.discriminant import DiscriminantDecider
from routelora.routing.layer import ExpertWeights, RoutedLinear
from routelora.routing.regions import RegionTest, RegionVerdict


@dataclass
class RoutedModel:
    """Handle on a model whose adapter targets are routed; the model itself is changed in place."""

    model: nn.Module
    experts: list[Expert]
    config: RouterConfig
    layers: dict[str, RoutedLinear]
    """Routed layers by module name, in model order."""
    originals: dict[str, nn.Module] = field(repr=False)
    base_skills: list[str] = field(default_factory=list)
    """General skills offered as base-model candidates."""
    hooks: list = field(default_factory=list, repr=False)
    decide: Callable | None = field(default=None, repr=False)
    """The decision from pooled features, ``decide(embeddings, text_mask, image_mask, segments)`` -> ((weights,
    choices) or None, allowed experts or None), where the router makes one (see
    :mod:`routelora.routing.discriminant` and :mod:`routelora.routing.regions`); None otherwise."""
    regions: RegionTest | None = field(default=None, repr=False)
    """The experts' open-world regions; None for a closed-world router."""

    def __enter__(self) -> "RoutedModel":
        """``with attach_router(...) as router:`` detaches when the block ends, however it ends."""
        return self

    def __exit__(self, *exc_info) -> None:
        self.detach()

    @property
    def expert_names(self) -> list[str]:
        return [expert.name for expert in self.experts]

    def detach(self) -> nn.Module:
        """Put the original linear layers back; returns the plain model."""
        for layer in self.layers.values():
            layer.release()
        restore_modules(self.model, self.originals)
        for hook in self.hooks:
            hook.remove()
        self.model.__dict__.pop("generate", None)
        if getattr(self.model, "routelora_router", None) is self:
            del self.model.routelora_router
        return self.model

    @property
    def context(self) -> RoutingContext:
        return next(iter(self.layers.values())).context

    def record(self, on: bool = True) -> None:
        """Start (or stop) accumulating routing counts; starting clears earlier counts."""
        if on:
            self.context.counts.clear()
            self.context.sequence_counts = self.context.accepted_counts = None
        self.context.recording = on

    def routing_counts(self) -> dict[str, torch.Tensor]:
        """Per layer: (token kinds, experts + 1) counts of top-1 choices since :meth:`record` (last column: base)."""
        return {name: table.clone() for name, table in self.context.counts.items()}

    def thresholds(self) -> dict[str, float]:
        """Each expert's region threshold (a squared distance; empty for a closed-world router)."""
        if self.regions is None:
            return {}
        return dict(zip(self.expert_names, self.regions.thresholds.tolist()))

    def region_shares(self) -> dict[str, float] | None:
        """Share of the sequences since :meth:`record` that each expert's region held, and under ``none`` the share
        that no region held (sent to the base model); None for a closed-world router or before any sequence."""
        counts = self.context.accepted_counts
        if counts is None:
            return None
        total = max(int(counts[-1]), 1)
        return dict(zip([*self.expert_names, "none"], (counts[:-1] / total).tolist()))

    def sequence_counts(self) -> torch.Tensor | None:
        """(experts + 1,) sequences each shared decision sent to each expert since :meth:`record` (last: base);
        None for a router without shared decisions."""
        counts = self.context.sequence_counts
        return None if counts is None else counts.clone()

    def last_choices(self) -> dict[str, torch.Tensor]:
        """Experts chosen by each token in the last forward, per layer: (tokens, k), -1 for the base model."""
        return {name: layer.last_choice for name, layer in self.layers.items() if layer.last_choice is not None}


def _routing_vectors(expert: Expert, config: RouterConfig) -> dict[str, torch.Tensor] | None:
    if config.vectors == "gates":
        return expert.gates
    if expert.prototypes is None:
        raise RouteloraError(
            f"expert {expert.name} has no routing prototypes; `routelora gate train` computes them "
            "(in the API: Expert.prototypes from routelora.gates.prototypes.compute_prototypes)"
        )
    return expert.prototypes


def attach_router(
    model: nn.Module,
    experts: Sequence[Expert] | ExpertLibrary | str | Path,
    config: RouterConfig | None = None,
    base_prototypes: dict[str, dict[str, torch.Tensor]] | None = None,
    **options,
) -> RoutedModel:
    """Route every adapter target of ``model`` between ``experts``.

    Args:
        model: a loaded VLM (see :func:`routelora.load_vlm`).
        experts: loaded experts, or a library (object or directory) whose experts are all loaded.
        config: routing settings (default ``RouterConfig()``); keyword ``options`` (``top_k=2``...) override
            single fields of it.
        base_prototypes: general-skill prototypes of the base model (skill -> layer -> vector), used when
            ``config.base_candidates``; read from the library when ``experts`` is one.

    Returns:
        A :class:`RoutedModel`; also reachable as ``model.routelora_router``.
    """
    config = replace(config, **options) if config is not None else RouterConfig(**options)
    if isinstance(experts, str | Path):
        experts = ExpertLibrary(experts)
    if isinstance(experts, ExpertLibrary):
        if config.base_candidates and base_prototypes is None:
            base_prototypes = load_base_prototypes(experts.root)
        experts = experts.load()
    experts = list(experts)
    if not experts:
        raise RouteloraError(
            "no experts to route between (an empty library?); add experts with `routelora library add`"
        )
    if getattr(model, "routelora_router", None) is not None:
        raise RouteloraError("this model already has a router attached; detach() it first")
    if config.base_candidates and not base_prototypes and not config.open_world:
        raise RouteloraError(
            "a closed-world router offers the base model as a candidate, which needs base prototypes in the library "
            "(`routelora library base-prototypes`); or route open-world (the default: inputs no expert accepts go "
            "to the base model), or without base candidates (`--no-base-candidates`, base_candidates=False)"
        )
    vectors = []
    for expert in experts:
        check_compatible(expert, model)
        routing = _routing_vectors(expert, config)
        if len(experts) > 1 and not routing and not config.base_candidates:
            raise RouteloraError(
                f"expert {expert.name} has no gates; train them with `routelora gate train` before routing"
            )
        vectors.append(routing or {})
    skills = sorted(base_prototypes or {}) if config.base_candidates else []
    candidates = len(experts) + len(skills)
    if config.top_k > candidates:
        raise RouteloraError(
            f"top_k {config.top_k} is more than the {candidates} candidate(s) to route between ({len(experts)} "
            f"expert(s), {len(skills)} base skill(s)); use a top_k (--top-k) of at most {candidates}"
        )
    context = RoutingContext(num_experts=len(experts))
    adapted = [set(expert.targets) for expert in experts]
    names = [name for name in _model_order(model) if any(name in targets for targets in adapted)]

    def routed(name: str, base: nn.Module) -> RoutedLinear:
        weights = [
            _expert_weights(e, name, v.get(name)) if name in t else None for e, v, t in zip(experts, vectors, adapted)
        ]
        base_keys = torch.stack([base_prototypes[s][name] for s in skills]) if skills else None
        return RoutedLinear(base, weights, config, base_keys=base_keys, context=context, name=name)

    text_decider = None
    if config.shared_decision and not config.uses_statistics:
        text_decider = _decider(experts, vectors, base_prototypes, skills, config)
    regions = None
    if config.open_world:
        found = [expert.prototypes or {} for expert in experts]
        regions = RegionTest(
            [expert.name for expert in experts],
            found,
            config.acceptance_quantile,
            config.acceptance_margin,
            config.conversation_region,
        ).to(next(model.parameters()).device)  # its buffers beside the embeddings it reads, once
    feature_decider = _feature_decider(experts, vectors, base_prototypes, skills, config, regions)
    originals = swap_modules(model, names, routed)
    # The hook also labels tokens (image / prompt / generated) for routing traces, so it is always installed.
    layout = regions.layout if regions is not None else None
    hooks = [install_context_hook(model, context, image_token_id(model.config), text_decider, layout)]
    if feature_decider is not None:
        language_model = model.get_submodule(get_layout(model).language_model)
        hooks.append(install_feature_hook(language_model, context, feature_decider))
    if hasattr(model, "generate"):
        _mark_generation(model, context)
    layers = {n: model.get_submodule(n) for n in names}
    handle = RoutedModel(model, experts, config, layers, originals, skills, hooks, feature_decider, regions)
    model.routelora_router = handle
    return handle


def _expert_weights(expert: Expert, name: str, routing: torch.Tensor | None) -> ExpertWeights:
    """What the routed layer ``name`` needs of ``expert``: its LoRA factors or its (IA)^3 vector, and its gate."""
    if expert.ia3 is not None:
        return ExpertWeights(None, None, 1.0, routing, ia3=expert.ia3[name], ia3_input=name in expert.ia3_input)
    return ExpertWeights(expert.lora_A[name], expert.lora_B[name], expert.scaling[name], routing)


def _decider(
    experts: list[Expert],
    vectors: list[dict[str, torch.Tensor]],
    base_prototypes: dict[str, dict[str, torch.Tensor]] | None,
    skills: list[str],
    config: RouterConfig,
) -> SequenceDecider:
    """The whole-model decision from input-embedding prototypes (experts', then the base skills')."""
    for expert, routing in zip(experts, vectors):
        if EMBEDDINGS_KEY not in routing:
            raise RouteloraError(
                f"expert {expert.name}'s {PROTOTYPES} has no input-embedding prototype (written by an older "
                "routelora); `routelora gate train` computes it again"
            )
    missing = [skill for skill in skills if EMBEDDINGS_KEY not in base_prototypes[skill]]
    if missing:
        raise RouteloraError(
            f"base prototypes {missing} have no input-embedding prototype; "
            "run `routelora library base-prototypes` again"
        )
    expert_keys = torch.stack([routing[EMBEDDINGS_KEY] for routing in vectors])  # (experts, d)
    base_keys = torch.stack([base_prototypes[s][EMBEDDINGS_KEY] for s in skills]) if skills else None
    return SequenceDecider(expert_keys, base_keys, config.top_k, config.normalise, config.fallback_threshold)


def _feature_decider(
    experts: list[Expert],
    vectors: list[dict[str, torch.Tensor]],
    base_prototypes: dict[str, dict[str, torch.Tensor]] | None,
    skills: list[str],
    config: RouterConfig,
    regions: RegionTest | None,
):
    """The decision from pooled features, as a function of the language model's input embeddings, token masks and
    sentences: the shared-covariance discriminant (:mod:`routelora.routing.discriminant`) where the router decides
    by statistics, among the experts whose region holds each sequence where it is open-world; None when the router
    does neither."""
    if not config.uses_statistics and regions is None:
        return None
    discriminant = None
    if config.uses_statistics:
        sources = [(f"expert {e.name}", routing) for e, routing in zip(experts, vectors)]
        sources += [(f"base prototypes {skill}", base_prototypes[skill]) for skill in skills]
        for where, routing in sources:
            if MEAN_KEY not in routing:
                raise RouteloraError(
                    f"{where} has no feature statistics (written by an older routelora); compute them again with "
                    "`routelora gate train` (experts) or `routelora library base-prototypes` (base), or route with "
                    "--router text-prototypes"
                )
        statistics = [select_statistics(routing, config.features) for _, routing in sources]
        shrinkage = 1.0 if config.rule == "nearest_mean" else config.shrinkage
        discriminant = DiscriminantDecider(
            statistics, len(experts), config.top_k, shrinkage, config.fallback_threshold
        )

    def decide(embeddings: torch.Tensor, text_mask: torch.Tensor, image_mask: torch.Tensor | None, segments):
        allowed = None
        if regions is not None:
            ratios = regions(run_features(embeddings, segments, image_mask, "text_image"))  # (batch, experts)
            allowed = RegionVerdict(ratios <= 1, ratios)
        if discriminant is None:
            return None, allowed
        features = sequence_features(embeddings, text_mask, image_mask, config.features)  # (batch, F)
        return discriminant(features, None if allowed is None else allowed.inside), allowed

    return decide


def _mark_generation(model: nn.Module, context: RoutingContext) -> None:
    """Wrap the model's own ``generate`` so the routing context knows where a generation starts and ends.

    Its first forward is then the prefill and every later one a decoding step, with or without a KV cache, which
    relies on nothing but the public call. The wrapper is an attribute of this model instance; ``detach`` removes it.
    """
    original = model.generate

    @functools.wraps(original)
    def generate(*args, **kwargs):
        context.begin_generation()
        try:
            return original(*args, **kwargs)
        finally:
            context.end_generation()

    model.generate = generate


def _model_order(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
