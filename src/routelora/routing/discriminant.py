"""routelora's default decision: a shared-covariance (linear discriminant) rule over pooled text and image features.

On frozen features, a rule that accounts for how the features spread beats the nearest mean, and most where tasks
differ by domain (RanPAC and FeCAM report it; docs/method.md has the figures and the derivation). Each candidate c
keeps its own mean m_c and scatter S_c (:mod:`routelora.gates.features`); the shared covariance is their sum,

    Sigma = sum_c S_c / (N - C),   shrunk:  (1 - a) Sigma + a * mean(diag Sigma) * I,

and a sequence with features x scores ``x . Sigma^-1 m_c - m_c . Sigma^-1 m_c / 2`` for every candidate (the log
odds of Gaussians with one covariance, equal priors). Written by hand because neither peft nor transformers routes
between adapters by a discriminant; it is a solve and a product, so a library is refitted whenever it is attached.
"""

import math

import torch
from torch import nn

from routelora.gates.features import COUNT_KEY, MEAN_KEY, SCATTER_KEY
from routelora.nn import top_k_weights


def shared_covariance(
    statistics: list[dict[str, torch.Tensor]], shrinkage: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The candidates' means (candidates, F) and their shrunk shared covariance (F, F), float64.

    statistics: per candidate, its saved count, mean (F,) and scatter (F, F).
    """
    means = torch.stack([s[MEAN_KEY].double() for s in statistics])  # (candidates, F)
    scatter = sum(s[SCATTER_KEY].double() for s in statistics)  # (F, F)
    total = sum(float(s[COUNT_KEY]) for s in statistics)
    covariance = scatter / max(total - len(statistics), 1.0)  # (F, F)
    size = covariance.shape[0]
    ridge = covariance.diagonal().mean().clamp_min(1e-12)
    covariance = (1 - shrinkage) * covariance + shrinkage * ridge * torch.eye(size, dtype=covariance.dtype)
    return means, covariance


def fit_discriminant(statistics: list[dict[str, torch.Tensor]], shrinkage: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (F, candidates) and biases (candidates,) of the shared-covariance rule (:func:`shared_covariance`)."""
    means, covariance = shared_covariance(statistics, shrinkage)
    weights = torch.linalg.solve(covariance, means.T)  # (F, candidates)
    biases = -0.5 * (means * weights.T).sum(-1)  # (candidates,)
    return weights.float(), biases.float()


class DiscriminantDecider(nn.Module):
    """Scores each sequence's pooled features against every candidate by :func:`fit_discriminant`."""

    def __init__(
        self,
        statistics: list[dict[str, torch.Tensor]],
        num_experts: int,
        top_k: int,
        shrinkage: float,
        fallback_threshold: float | None = None,
    ) -> None:
        """
        Args:
            statistics: per candidate (experts first, then the base model's general skills), its statistics.
            num_experts: how many of the candidates are experts.
            top_k: experts kept per sequence.
            shrinkage: weight of the identity in the shrunk covariance (0: none, 1: nearest mean in Euclid).
            fallback_threshold: below this best score a sequence gets no expert.
        """
        super().__init__()
        weights, biases = fit_discriminant(statistics, shrinkage)
        self.register_buffer("weights", weights, persistent=False)  # (F, candidates)
        self.register_buffer("biases", biases, persistent=False)  # (candidates,)
        self.num_experts = num_experts
        self.top_k = top_k
        self.fallback_threshold = fallback_threshold

    @torch.no_grad()
    def forward(
        self, features: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixing weights (batch, candidates) and chosen candidates (batch, k) from features (batch, F); with
        ``allowed`` (batch, experts) bool, among the allowed experts and the base candidates only."""
        scores = features.float() @ self.weights.to(features.device) + self.biases.to(features.device)
        if allowed is not None:
            experts = scores[:, : self.num_experts].masked_fill(~allowed.to(scores.device), -math.inf)
            scores = torch.cat([experts, scores[:, self.num_experts :]], 1)  # (batch, candidates)
        return top_k_weights(scores, self.top_k, self.num_experts, self.fallback_threshold)
