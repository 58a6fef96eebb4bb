"""How well routing picks each task's own expert, and what that costs against the oracle expert."""

from dataclasses import dataclass, field

import torch

from routelora.routing.context import GENERATED, IMAGE, KIND_NAMES, PROMPT

REPORTED_KINDS = ("image", "text", "generated")


@dataclass
class RoutingReport:
    """Routing accuracy of one task: shares of its tokens whose top-1 choice was the task's own expert."""

    task: str
    own_expert: str | None
    """The expert trained on this task (None for a task with no expert, such as a retention benchmark)."""
    shares: dict[str, list[float]] = field(default_factory=dict)
    """Per token kind (image, text, generated): per layer, the share sent to ``own_expert`` (or to the base
    model where the task has no expert)."""
    expert_shares: dict[str, float] = field(default_factory=dict)
    """Share of all the task's non-pad tokens, over every layer, that chose each expert (``base``: none)."""
    sequence_shares: dict[str, float] = field(default_factory=dict)
    """Share of the task's sequences whose shared decision chose each candidate first (``base``: none); empty for a
    router that decides per token or per layer."""
    region_shares: dict[str, float] = field(default_factory=dict)
    """Open-world routers: share of the task's sequences that each expert's region held, and under ``none`` the
    share that no region held (they went to the base model); empty for a closed-world router."""
    thresholds: dict[str, float] = field(default_factory=dict)
    """Open-world routers: each expert's region threshold (a squared distance)."""
    routed_score: float | None = None
    oracle_score: float | None = None
    """Score of ``own_expert`` alone (the upper bound routing aims at)."""

    @property
    def own_sequence_share(self) -> float:
        """Share of sequences sent to the task's own candidate (NaN without shared decisions)."""
        return (
            self.sequence_shares.get(self.own_expert or "base", float("nan")) if self.sequence_shares else float("nan")
        )

    @property
    def own_share(self) -> float:
        """Share of the task's inputs sent to its own candidate: of its sequences, or of its text tokens (mean over
        layers) for a router without one decision per sequence."""
        return self.own_sequence_share if self.sequence_shares else self.mean_share("text")

    def candidate_shares(self) -> dict[str, float]:
        """Where the task's inputs went: sequence shares where there are any, else shares of all tokens."""
        return self.sequence_shares or self.expert_shares

    def mean_share(self, kind: str) -> float:
        values = self.shares.get(kind, [])
        return sum(values) / len(values) if values else float("nan")


def routing_report(
    task: str,
    counts: dict[str, torch.Tensor],
    expert_names: list[str],
    own_expert: str | None,
    sequence_counts: torch.Tensor | None = None,
    region_shares: dict[str, float] | None = None,
    thresholds: dict[str, float] | None = None,
) -> RoutingReport:
    """Summarise per-layer counts (token kinds x experts + base) and, for shared decisions, per-sequence counts
    (experts + base,) gathered while evaluating ``task``; for an open-world router, the share of sequences each
    expert's region held (and ``none``) and the regions' thresholds."""
    column = expert_names.index(own_expert) if own_expert in expert_names else len(expert_names)
    report = RoutingReport(task, own_expert if own_expert in expert_names else None)
    for kind in REPORTED_KINDS:
        row = KIND_NAMES.index(kind)
        report.shares[kind] = [
            (table[row, column] / table[row].sum()).item() for table in counts.values() if table[row].sum() > 0
        ]
    total = sum(table[[IMAGE, PROMPT, GENERATED]].sum(0) for table in counts.values())
    if isinstance(total, torch.Tensor) and total.sum() > 0:
        shares = (total / total.sum()).tolist()
        report.expert_shares = dict(zip([*expert_names, "base"], shares))
    if sequence_counts is not None and sequence_counts.sum() > 0:
        shares = (sequence_counts / sequence_counts.sum()).tolist()
        report.sequence_shares = dict(zip([*expert_names, "base"], shares))
    report.region_shares = dict(region_shares or {})
    report.thresholds = dict(thresholds or {})
    return report


def layer_shares(counts: dict[str, torch.Tensor], kinds: tuple[str, ...] = REPORTED_KINDS) -> torch.Tensor:
    """(layers, experts + 1) share of the given token kinds choosing each expert at each layer, for heatmaps."""
    rows = [KIND_NAMES.index(kind) for kind in kinds]
    tables = [table[rows].sum(0).float() for table in counts.values()]
    return torch.stack([t / t.sum().clamp(min=1) for t in tables])
