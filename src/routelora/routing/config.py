"""Settings of routed inference."""

from dataclasses import dataclass

GRANULARITIES = ("token", "sequence")


@dataclass
class RouterConfig:
    """How each routed layer chooses and mixes experts."""

    top_k: int = 1
    """Experts kept per token (the paper uses 1, PHATGOOSE 2)."""
    normalise: bool = True
    """Standardise tokens and gates over the feature dimension before scoring (PHATGOOSE); off gives the
    paper's plain ``v . u``."""
    fallback_threshold: float | None = None
    """Tokens whose best score is below this use the base model alone (no expert); None disables the fallback."""
    trace: bool = False
    """Record which experts every token chose at every layer (see ``RoutedModel.trace``)."""

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
