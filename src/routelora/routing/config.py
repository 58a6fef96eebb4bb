"""Settings of routed inference."""

from dataclasses import dataclass

GRANULARITIES = ("token", "sequence")
VECTORS = ("gates", "prototypes")


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
    granularity: str = "token"
    """``token``: every token routes on its own at every layer (the paper). ``sequence``: each sequence decides
    once per layer from the mean score of its prompt's text tokens, and that choice applies to all its tokens."""
    vectors: str = "gates"
    """Routing vectors: ``gates`` (trained in stage 2, the paper) or ``prototypes`` (each expert's mean
    standardised activation on its own task's prompts, saved beside its gates)."""
    base_candidates: bool = False
    """Also offer the base model as candidates, with prototypes of general data saved in the library; a token
    or sequence that picks one gets no expert."""
    trace: bool = False
    """Record which experts every token chose at every layer (see ``RoutedModel.trace``)."""

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.vectors not in VECTORS:
            raise ValueError(f"vectors must be one of {VECTORS}, got {self.vectors!r}")
