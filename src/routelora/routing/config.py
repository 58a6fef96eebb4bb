"""Settings of routed inference."""

from dataclasses import dataclass, replace

GRANULARITIES = ("token", "sequence")
VECTORS = ("gates", "prototypes")
DECIDE_FROM = ("embeddings", "each_layer")
RULES = ("shared_covariance", "nearest_mean")
FEATURES = ("text_image", "text")


@dataclass(frozen=True)
class RouterConfig:
    """How each routed layer chooses and mixes experts.

    The defaults are routelora's router: one decision per sequence, before the first layer, from the prompt's pooled
    text and image input embeddings, by a shared-covariance discriminant over every expert's statistics, among the
    experts whose own region holds the prompt; a prompt that no expert's region holds goes to the base model, as
    does one nearest to a general skill where the library has statistics of some (docs/routing.md has the evidence).
    :data:`PAPER_ROUTER` is the paper's recipe, token-level PHATGOOSE gates; :data:`TEXT_PROTOTYPES` is routelora's
    earlier default.
    """

    top_k: int = 1
    """Experts kept per token (the paper uses 1, PHATGOOSE 2)."""
    normalise: bool = True
    """Standardise tokens and gates over the feature dimension before scoring (PHATGOOSE); off gives the
    paper's plain ``v . u``."""
    fallback_threshold: float | None = None
    """Tokens whose best score is below this use the base model alone (no expert); None disables the fallback."""
    granularity: str = "sequence"
    """``token``: every token routes on its own at every layer (the paper). ``sequence``: each sequence decides
    from the mean score of its prompt's text tokens, and that choice applies to all its tokens, image and
    generated ones included."""
    decide_from: str = "embeddings"
    """Where a ``sequence`` decision is made. ``embeddings``: once for the whole model, from the prompt's input
    embeddings before the first layer (one decision shared by every layer; needs prototype vectors).
    ``each_layer``: every routed layer decides on its own from its own input (decisions may differ by layer)."""
    vectors: str = "prototypes"
    """Routing vectors: ``gates`` (trained in stage 2, the paper) or ``prototypes`` (each expert's mean
    standardised activation on its own task's prompts, saved beside its gates)."""
    base_candidates: bool = True
    """Also offer the base model as candidates, with prototypes of general data saved in the library where it has
    some; a token or sequence that picks one gets no expert. Without any, an open-world router sends to the base
    whatever no expert accepts, and a closed-world one refuses to start."""
    open_world: bool = True
    """Each expert accepts only the prompts inside its own region, set from its own task's statistics and held-out
    training prompts alone (:mod:`routelora.gates.acceptance`); a prompt that no expert accepts goes to the base model,
    and a token-level router routes each sequence's tokens among the experts that accepted it. False: the nearest
    candidate always wins (closed world)."""
    acceptance_quantile: float = 0.99
    """Where an expert's region ends, with :attr:`acceptance_margin`: this quantile of the distances of its held-out
    training prompts (1.0: the farthest of them). Its conversation region ends at the same quantile of what those
    prompts' instruction runs leave out."""
    acceptance_margin: float = 1.2
    """An expert's region reaches this many times that quantile (higher: more of a user's own wording accepted, and
    more general questions). Training data cannot place it: every retention training prompt, bare, wrapped or asked
    without its options, stays outside every region at any margin from 1.0 to 1.5, while the own side asks for 1.3.
    1.2 is the largest margin at which every general benchmark of the routing comparison kept 95% of its sequences
    with the base, a choice made on those test splits (docs/routing.md shows 1.1 to 1.3 side by side)."""
    conversation_region: bool = True
    """A run of a prompt's sentences counts for an expert only where what it leaves out lies inside the expert's
    conversation region (what its own training prompts' instruction runs left out). False: any run counts, so a
    general question with its options left out can read like a task's request (with ``acceptance_margin=1.1``, the
    regions of routelora before 2026-12-07; at a wider margin such questions get in, docs/routing.md)."""
    rule: str = "shared_covariance"
    """How a shared (``decide_from="embeddings"``) decision scores candidates. ``shared_covariance``: the linear
    discriminant of :mod:`routelora.routing.discriminant`. ``nearest_mean``: the closest mean; with ``text``
    features this is the earlier default (cosine to each expert's mean standardised text embedding), with
    ``text_image`` the Euclidean nearest mean of the pooled features."""
    features: str = "text_image"
    """What a shared decision reads (:mod:`routelora.gates.features`): ``text_image``, the pooled text and image
    embeddings side by side; ``text``, the text tokens alone. The experts' regions always read both."""
    shrinkage: float = 0.1
    """Share of the identity in the shrunk shared covariance (0: the plain pooled covariance, 1: a multiple of the
    identity, which is the Euclidean nearest mean)."""
    trace: bool = False
    """Record which experts every token chose at every layer (see ``RoutedModel.trace``)."""
    merge: bool = True
    """Where every sequence of a batch took the same experts (always, for one expert alone), add them into each
    layer's weight once for the batch (``W + sum_i w_i s_i B_i A_i``) so that its forwards and decoding steps cost
    exactly the base model's; for a mixed batch, stack W with the chosen experts' A for one product. Either holds
    one copy of each adapted weight until the next decision or ``detach()``. False keeps no copy: the experts'
    products are computed beside the base's."""

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.vectors not in VECTORS:
            raise ValueError(f"vectors must be one of {VECTORS}, got {self.vectors!r}")
        if self.decide_from not in DECIDE_FROM:
            raise ValueError(f"decide_from must be one of {DECIDE_FROM}, got {self.decide_from!r}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        if not 0 < self.acceptance_quantile <= 1:
            raise ValueError(f"acceptance_quantile must be in (0, 1], got {self.acceptance_quantile}")
        if self.acceptance_margin <= 0:
            raise ValueError(f"acceptance_margin must be positive, got {self.acceptance_margin}")
        if not 0 <= self.shrinkage <= 1:
            raise ValueError(f"shrinkage must be in [0, 1], got {self.shrinkage}")
        if self.shared_decision and self.vectors != "prototypes":
            raise ValueError(
                "decide_from='embeddings' routes by the prompt's input embeddings, which only prototypes describe: "
                "use vectors='prototypes', or decide_from='each_layer' with gates"
            )

    @property
    def shared_decision(self) -> bool:
        """One decision per sequence for the whole model, made from the input embeddings."""
        return self.granularity == "sequence" and self.decide_from == "embeddings"

    @property
    def uses_statistics(self) -> bool:
        """The shared decision reads the experts' feature statistics (every rule but the earlier text default)."""
        return self.shared_decision and not (self.rule == "nearest_mean" and self.features == "text")


PAPER_ROUTER = RouterConfig(top_k=1, granularity="token", vectors="gates", base_candidates=False, open_world=False)
"""The paper's recipe (docs/method.md, section 4): every token at every layer picks its top-1 expert by gates, scored
PHATGOOSE-style (tokens and gates standardised; `normalise=False` gives the paper's plain `v . u`). ``open_world=True``
puts the experts' regions in front of it (:data:`PAPER_OPEN`)."""

PAPER_OPEN = replace(PAPER_ROUTER, open_world=True)
"""The paper's token-level gates behind routelora's open-world test: a sequence that no expert's region holds goes to
the base model, and the tokens of one that some hold route among those only."""

ONE_EXPERT = RouterConfig(top_k=1, granularity="token", vectors="gates", base_candidates=False, open_world=False)
"""For a single expert: every token takes it, which is the plain LoRA model (the oracle in evaluations). Written
out on its own rather than as the paper's preset: it equals :data:`PAPER_ROUTER` today only because with one
candidate every router takes it, and a change to the paper's recipe must not change the oracle. Configs are frozen,
so neither can be edited in place."""

TEXT_PROTOTYPES = RouterConfig(rule="nearest_mean", features="text", open_world=False)
"""routelora's default before world v4: each sequence to the expert whose mean standardised text embedding is
closest (cosine). It reads no image, so tasks that share an instruction cannot be told apart."""

PRESETS = {
    "routelora": RouterConfig(),
    "text-prototypes": TEXT_PROTOTYPES,
    "paper": PAPER_ROUTER,
    "paper-open": PAPER_OPEN,
}
"""Named routers of the command line's ``--router``."""
