"""What each request runs with, and the ``routing`` object that tells a client why.

:func:`describe_routes` is the one place that reads a router's decision for the server; a router whose decision
carries more (per-candidate scores, a rejection to the base) changes this function only.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from routelora.models.layout import get_layout
from routelora.routing.grouping import decide_routes
from routelora.routing.model import RoutedModel

BASE = -1
"""The index of the base model among a route's choices (as in the router's own choices)."""


@dataclass(frozen=True)
class Route:
    """The experts one request takes and their weights; requests of equal routes are generated together."""

    chosen: tuple[int, ...]
    """Expert indices in the router's order; :data:`BASE` for the base model."""
    weights: tuple[float, ...]
    """The weight of each chosen expert (0 for the base)."""

    @property
    def expert(self) -> int:
        """The first choice (top-1 routers have only this one)."""
        return self.chosen[0]


def candidate_names(router: RoutedModel) -> list[str]:
    """The decision's columns: every expert, then each general skill of the base model as ``base:<skill>``."""
    return [*router.expert_names, *(f"base:{skill}" for skill in router.base_skills)]


def describe_routes(router: RoutedModel, inputs: dict[str, torch.Tensor]) -> list[dict]:
    """The router's decision for each prompt of a model batch, as ``routing`` objects of a response.

    Each holds ``decided_by`` ("router"), ``chosen`` (each chosen candidate's ``name``, ``kind`` "expert" or
    "base", ``index`` and ``weight``) and ``scores`` (every candidate's weight in the decision); for an open-world
    router also ``regions`` (per expert: the prompt's distance over its region's threshold, whether it is inside,
    the threshold) and ``outside_every_region`` (True: no expert accepted it, so the base model answers). Decided as a
    prefill decides, by :func:`~routelora.routing.grouping.decide_routes` (a forward that stops before the language
    model's first layer); the weights are read from ``router.context.shared`` as the decision left them.
    """
    captured = {}
    language_model = router.model.get_submodule(get_layout(router.model).language_model)

    def keep(module, args, kwargs) -> None:  # runs after the router's own hook has decided, before decide_routes'
        captured["shared"] = router.context.shared
        captured["ratios"] = router.context.region_ratios

    handle = language_model.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        chosen = decide_routes(router, inputs)  # (batch, k)
    finally:
        handle.remove()
    weights = captured["shared"][0].float().cpu()  # (batch, candidates)
    ratios = captured["ratios"]  # (batch, experts) or None for a closed-world router
    names = candidate_names(router)
    thresholds = router.thresholds()
    described = []
    for number, (row, picks) in enumerate(zip(weights.tolist(), chosen.tolist())):
        routing = {
            "decided_by": "router",
            "chosen": [_candidate(router, index, row[index] if index >= 0 else 0.0) for index in picks],
            "scores": dict(zip(names, row)),
        }
        if ratios is not None:  # each expert's region: the prompt's distance over its threshold, inside at <= 1
            found = ratios[number].tolist()
            routing["regions"] = {
                name: {"distance_over_threshold": ratio, "inside": ratio <= 1, "threshold": thresholds[name]}
                for name, ratio in zip(router.expert_names, found)
            }
            routing["outside_every_region"] = all(ratio > 1 for ratio in found)
        described.append(routing)
    return described


def forced(router: RoutedModel | None, name: str, index: int) -> dict:
    """The ``routing`` object of a request whose ``model`` named an expert (``index``) or the base (-1)."""
    chosen = [_candidate(router, index, 1.0 if index >= 0 else 0.0)] if router else [_base()]
    return {"decided_by": "request", "model": name, "chosen": chosen, "scores": None}


def route_of(routing: dict) -> Route:
    """The :class:`Route` a ``routing`` object describes."""
    picks = [(pick["index"], pick["weight"]) for pick in routing["chosen"]]
    return Route(tuple(index for index, _ in picks), tuple(weight for _, weight in picks))


def _candidate(router: RoutedModel | None, index: int, weight: float) -> dict:
    if index < 0:
        return _base()
    return {"name": router.expert_names[index], "kind": "expert", "index": index, "weight": weight}


def _base() -> dict:
    return {"name": "base", "kind": "base", "index": BASE, "weight": 0.0}


@contextmanager
def applied(router: RoutedModel, routes: list[Route]) -> Iterator[None]:
    """Inside the block, every prefill of ``len(routes)`` sequences gives row i ``routes[i]`` and decides nothing
    (:attr:`~routelora.routing.context.RoutingContext.ahead`): the decision already made, or forced by the
    request's ``model``, is the one the layers apply."""
    context = router.context
    candidates = len(router.experts) + len(router.base_skills)
    k = max(len(route.chosen) for route in routes)
    weights = torch.zeros(len(routes), candidates)  # (batch, candidates)
    chosen = torch.full((len(routes), k), BASE)  # (batch, k)
    for row, route in enumerate(routes):
        chosen[row, : len(route.chosen)] = torch.tensor(route.chosen)
        for index, weight in zip(route.chosen, route.weights):
            if index >= 0:
                weights[row, index] = weight
    device = next(router.model.parameters()).device
    context.ahead = (weights.to(device), chosen.to(device))
    try:
        yield
    finally:
        context.ahead = None
