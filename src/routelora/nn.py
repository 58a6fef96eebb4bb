"""Small tensor and module helpers shared by gates, routing and the methods: PHATGOOSE standardisation, top-k
mixing weights with base-model candidates, and swapping linear layers for wrapped ones and back."""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5  # PHATGOOSE's standardisation is a LayerNorm without affine, eps 1e-5


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the last dimension, no learned scale or shift."""
    return F.layer_norm(x, x.shape[-1:], eps=EPS)


def top_k_weights(
    scores: torch.Tensor, top_k: int, num_experts: int, fallback_threshold: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense mixing weights (rows, candidates), zero outside the top-k, and the chosen candidates (rows, k).

    scores: (rows, candidates), the first ``num_experts`` columns experts, the rest base-model candidates. A row
    whose best candidate is a base one, or whose best score is below ``fallback_threshold``, gets no expert: all
    its weights are zero. A candidate scored -inf is never chosen. A chosen index of -1 marks the base model.
    """
    k = min(top_k, scores.shape[-1])
    kept, chosen = scores.topk(k, dim=-1)  # (rows, k)
    weights = torch.zeros_like(scores).scatter_(-1, chosen, kept.softmax(dim=-1))  # (rows, candidates)
    unclaimed = (chosen[:, 0] >= num_experts) | (kept[:, 0] == -math.inf)  # (rows,) a base candidate ranks first,
    # or every candidate was ruled out (a score of -inf: outside every expert's region)
    if fallback_threshold is not None:
        unclaimed = unclaimed | (kept[:, 0] < fallback_threshold)
    weights = weights.masked_fill(unclaimed[:, None], 0.0)
    chosen = chosen.masked_fill(unclaimed[:, None] | (chosen >= num_experts) | (kept == -math.inf), -1)
    return weights, chosen


def swap_modules(
    model: nn.Module, names: list[str], make: Callable[[str, nn.Module], nn.Module]
) -> dict[str, nn.Module]:
    """Replace each module in ``names`` with ``make(name, original)``; returns the originals by name."""
    originals = {}
    for name in names:
        original = model.get_submodule(name)
        model.set_submodule(name, make(name, original))
        originals[name] = original
    return originals


def restore_modules(model: nn.Module, originals: dict[str, nn.Module]) -> None:
    """Undo :func:`swap_modules`."""
    for name, original in originals.items():
        model.set_submodule(name, original)
