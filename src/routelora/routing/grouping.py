"""Offline routed generation at the base model's speed: decide every sample's route first, then generate the
samples of each route together.

Under a shared decision a batch whose sequences all took the same experts merges them into every routed layer's
weight (``RouterConfig.merge``), so it runs exactly as fast as the base model; a mixed batch pays for the experts'
products. When all the prompts are known in advance (an evaluation, a benchmark), ordering them by route makes
every full batch a uniform one. The decision reads only the language model's input embeddings, so it costs the vision
tower and an embedding lookup per sample, not a forward of the language model (LoRAX merges per request in the
same spirit).
"""

from collections.abc import Hashable, Sequence

import torch

from routelora.errors import RouteloraError
from routelora.models.layout import get_layout
from routelora.routing.model import RoutedModel


class _Decided(Exception):
    """Raised by the hook that stops a decision-only forward at the language model's door."""


@torch.no_grad()
def decide_routes(router: RoutedModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """(batch, k) the experts each prompt of a model batch takes (-1: the base model), decided as a prefill would
    decide them, by a forward that stops before the language model's first layer. Records no routing counts."""
    if not router.config.shared_decision:
        raise RouteloraError(
            "routes can only be decided ahead for a router with one decision per sequence made from the input "
            f"embeddings (granularity='sequence', decide_from='embeddings'); this one has granularity="
            f"{router.config.granularity!r}, decide_from={router.config.decide_from!r}"
        )
    context = router.context
    language_model = router.model.get_submodule(get_layout(router.model).language_model)

    def stop(module, args, kwargs) -> None:  # registered after the router's own hook, so it runs after deciding
        raise _Decided

    handle = language_model.register_forward_pre_hook(stop, with_kwargs=True)
    recording, context.recording = context.recording, False
    try:
        router.model(**inputs)
    except _Decided:
        pass
    finally:
        handle.remove()
        context.recording = recording
    if context.shared is None:
        raise RouteloraError("the router made no decision for this batch (no input embeddings reached it)")
    chosen = context.shared[1].clone()
    context.shared = None
    return chosen


def route_batches(routes: Sequence[Hashable], batch_size: int) -> list[list[int]]:
    """Indices of the samples in batches of at most ``batch_size``: every full batch holds one route (in order of
    each route's first sample, and in the samples' own order within it); what is left of each route is packed into
    mixed batches at the end, so there are at most one more batch per route than without grouping, never a
    batch of a few samples per route."""
    groups: dict[Hashable, list[int]] = {}
    for index, route in enumerate(routes):
        groups.setdefault(route, []).append(index)
    batches, rest = [], []
    for group in groups.values():
        whole = len(group) - len(group) % batch_size
        batches += [group[start : start + batch_size] for start in range(0, whole, batch_size)]
        rest += group[whole:]
    return batches + [rest[start : start + batch_size] for start in range(0, len(rest), batch_size)]


def routed_model(model: torch.nn.Module) -> RoutedModel | None:
    """The router attached to ``model`` when grouping by route pays: one decision per sequence from the input
    embeddings, one expert per sequence (at top-k > 1 a route's sequences weigh their experts differently, so its
    batches would not merge); else None."""
    router = getattr(model, "routelora_router", None)
    if router is None or not router.config.shared_decision or router.config.top_k != 1:
        return None
    return router
