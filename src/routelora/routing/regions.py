"""The experts' regions at inference: which experts may take each sequence (routelora's open world).

Every expert brings the statistics of its own task's prompts and the sorted distances of its own held-out prompts
(:mod:`routelora.gates.acceptance`). A sequence is inside an expert's region when some run of its sentences is no
farther from the task than a margin times the chosen quantile of those distances, and what the run leaves out is
inside the task's conversation region (the same quantile of its held-out prompts' left-out parts). The router then
chooses only among the experts whose region holds the sequence, and a sequence that none holds goes to the base
model.
"""

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from routelora.errors import RouteloraError
from routelora.gates.acceptance import (
    CALIBRATION_KEY,
    CONVERSATION_CALIBRATION_KEY,
    CONVERSATION_KEYS,
    SHRINKAGE_KEY,
    best_run_distances,
    conversation_region,
    region,
)
from routelora.gates.features import MEAN_KEY
from routelora.gates.runs import PromptLayout, PromptRuns, image_width


@dataclass
class RegionVerdict:
    """Which experts' regions hold each sequence of a batch, and by how much."""

    inside: torch.Tensor
    """(batch, experts) bool."""
    ratios: torch.Tensor
    """(batch, experts) each sequence's best-run distance over the expert's threshold (inside: at most 1)."""


TOLERANCE = 1e-4
"""Relative slack of a threshold: distances are pooled in float32, in batches of any size."""


class RegionTest(nn.Module):
    """Each expert's region, stacked: ``forward(runs)`` -> (batch, experts) distance over threshold."""

    def __init__(
        self,
        names: list[str],
        prototypes: list[dict[str, torch.Tensor]],
        quantile: float,
        margin: float = 1.0,
        conversation: bool = True,
    ) -> None:
        """
        Args:
            names: the experts' names, for errors.
            prototypes: each expert's prototypes, with its statistics, calibration and prompt layout.
            quantile: where each region ends, as a quantile of its held-out prompts' distances...
            margin: ... times this.
            conversation: test what each run leaves out against the expert's conversation region, where it has one.
        """
        super().__init__()
        for name, found in zip(names, prototypes):
            if MEAN_KEY not in found:
                raise RouteloraError(
                    f"expert {name} has no feature statistics (written by an older routelora); compute them again "
                    "with `routelora gate train`, or route closed-world with --router text-prototypes"
                )
        missing = [name for name, found in zip(names, prototypes) if CALIBRATION_KEY not in found]
        if missing:
            raise RouteloraError(
                f"expert(s) {missing} have no open-world region (written by an older routelora, or gates trained with "
                "calibration_samples=0): `routelora gate train` computes it again; or route closed-world "
                "(--no-open-world, open_world=False)"
            )
        layouts = [PromptLayout.from_tensors(found) for found in prototypes]
        if any(layout is None or not layout.same_as(layouts[0]) for layout in layouts):
            raise RouteloraError(
                f"experts {names} were calibrated with different tokenizers or chat templates; compute their "
                "prototypes again on one base model (`routelora gate train`)"
            )
        self.layout = layouts[0]
        regions = [region(found, float(found[SHRINKAGE_KEY])) for found in prototypes]
        # a prompt at the very distance of a held-out one is inside, whatever the last bits of float32 pooling
        thresholds = [
            (1 + TOLERANCE) * margin * torch.quantile(found[CALIBRATION_KEY].double(), quantile)
            for found in prototypes
        ]
        self.register_buffer("means", torch.stack([mean for mean, _ in regions]).float(), persistent=False)
        self.register_buffer("roots", torch.stack([root for _, root in regions]).float(), persistent=False)
        self.register_buffer("thresholds", torch.stack(thresholds).float(), persistent=False)  # (experts,)
        width = image_width(regions[0][0])  # the text part of (F,)
        for name, found in zip(names, prototypes):
            _check_conversation(name, found, width)
        edges = [
            (1 + TOLERANCE) * torch.quantile(found[CONVERSATION_CALIBRATION_KEY].double(), quantile)
            if conversation and CONVERSATION_CALIBRATION_KEY in found
            else None
            for found in prototypes
        ]
        bare = [name for name, edge in zip(names, edges) if edge is None]
        if conversation and bare and margin > 1.1:
            warnings.warn(
                f"expert(s) {bare} have no conversation region (written before routelora had them, or their "
                f"prompts never leave a sentence out): their regions test any run at margin {margin}, which lets "
                "general questions without their options in (docs/routing.md); `routelora gate train` computes "
                "it where the data has conversation, or route with --acceptance-margin 1.1",
                stacklevel=3,
            )
        # an expert without a conversation region lets a run leave anything out: a mean of zeros, the identity and
        # an infinite threshold
        conversations = [None if e is None else conversation_region(found) for e, found in zip(edges, prototypes)]
        self.register_buffer(
            "conversation_means",
            torch.stack([torch.zeros(width) if c is None else c[0].float() for c in conversations]),
            persistent=False,
        )  # (experts, W)
        self.register_buffer(
            "conversation_roots",
            torch.stack([torch.eye(width) if c is None else c[1].float() for c in conversations]),
            persistent=False,
        )  # (experts, W, W)
        edges = torch.stack([torch.tensor(torch.inf) if edge is None else edge for edge in edges])
        self.register_buffer("conversation_thresholds", edges.float(), persistent=False)  # (experts,)
        self.tests_conversation = bool(torch.isfinite(edges).any())

    @torch.no_grad()
    def forward(self, runs: PromptRuns) -> torch.Tensor:
        """(batch, experts) each sequence's best-run distance to each expert over that expert's threshold: at most
        1 inside the region. Only the runs whose remainder is inside the expert's conversation region count."""
        tail = image_width(runs.features)  # the regions read text-and-image runs (gates.runs.run_features)
        allowed = self.leaves_conversation(runs) if self.tests_conversation else None
        distances = best_run_distances(
            runs.features.float(), runs.valid, self.means, self.roots, shared_tail=tail, allowed=allowed
        )
        return distances / self.thresholds.to(distances.device)

    def leaves_conversation(self, runs: PromptRuns) -> torch.Tensor:
        """(batch, runs, experts) bool: the run leaves nothing out, or only what the expert's conversation region
        holds."""
        # (dropped runs, experts, W) at once, unchunked: a prompt drops at most 77 runs, and W is at most 512
        batch, count = runs.valid.shape
        allowed = runs.valid.new_ones(batch, count, len(self.thresholds))
        left = runs.remainders[runs.dropped].float()  # (left, W)
        if len(left):
            roots = self.conversation_roots.to(left)
            offset = torch.einsum("ew,ewv->ev", self.conversation_means.to(left), roots)  # (experts, W)
            projected = torch.einsum("nw,ewv->nev", left, roots) - offset  # (left, experts, W)
            allowed[runs.dropped] = projected.square().sum(-1) <= self.conversation_thresholds.to(left)
        return allowed


def _check_conversation(name: str, prototypes: dict[str, torch.Tensor], width: int) -> None:
    """A conversation region comes whole (statistics and calibration) and as wide as the features' text part."""
    found = [key in prototypes for key in (*CONVERSATION_KEYS, CONVERSATION_CALIBRATION_KEY)]
    if not any(found):
        return
    if not all(found) or not len(prototypes[CONVERSATION_CALIBRATION_KEY]):
        raise RouteloraError(
            f"expert {name}: its conversation region is incomplete (keys routing.conversation_*); compute its "
            "prototypes again with `routelora gate train`"
        )
    if prototypes[CONVERSATION_KEYS[1]].shape != (width,):
        raise RouteloraError(
            f"expert {name}: its conversation region is {tuple(prototypes[CONVERSATION_KEYS[1]].shape)} wide, its "
            f"features' text part ({width},); compute its prototypes again with `routelora gate train`"
        )
