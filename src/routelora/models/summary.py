"""What `routelora info` says of a model: family, language model, adapter targets, parameter counts."""

from dataclasses import dataclass

from torch import nn

from routelora.models.layout import VLMLayout


@dataclass
class ModelSummary:
    """Facts about a loaded VLM, in the order ``routelora info`` prints them."""

    architecture: str
    """Model class name."""
    family: str
    """routelora family name, or ``manual``."""
    language_model: str
    """Path of the language model's decoder stack."""
    decoder_layers: int
    """Number of decoder layers."""
    targets_by_kind: dict[str, int]
    """Adapter targets per kind (q, k, v, o, mlp.up...)."""
    target_count: int
    """All adapter targets."""
    parameters_total: int
    """Every parameter of the model (tied weights counted once)."""
    parameters_language_model: int
    """Parameters of the decoder stack (embeddings and norms included, ``lm_head`` not)."""
    parameters_vision: int
    """Parameters of the vision encoder (projector excluded where it sits inside it)."""
    parameters_projector: int
    """Parameters of the projector."""
    frozen: list[str]
    """Modules that stay frozen in every method."""

    def as_rows(self) -> list[tuple[str, str]]:
        """Label/value rows for a two-column table."""
        kinds = ", ".join(
            f"{kind} {count}" for kind, count in self.targets_by_kind.items()
        )  # module order: q, k, v, o, mlp
        return [
            ("architecture", self.architecture),
            ("family", self.family),
            ("language model", f"{self.language_model} ({self.decoder_layers} decoder layers)"),
            ("adapter targets", f"{self.target_count} ({kinds})"),
            ("parameters", f"{self.parameters_total:,}"),
            ("  language model", f"{self.parameters_language_model:,}"),
            ("  vision encoder", f"{self.parameters_vision:,}"),
            ("  projector", f"{self.parameters_projector:,}"),
            ("always frozen", ", ".join(self.frozen) or "(none found)"),
        ]


def _count(model: nn.Module, prefixes: list[str], exclude: list[str] = ()) -> int:
    starts = tuple(p + "." for p in prefixes)
    skips = tuple(p + "." for p in exclude)
    # named_parameters() yields each tied tensor once, so shared embeddings are not counted twice.
    return sum(
        p.numel() for name, p in model.named_parameters() if name.startswith(starts) and not name.startswith(skips)
    )


def summarize(model: nn.Module, layout: VLMLayout) -> ModelSummary:
    """Summarise ``model`` as laid out by ``layout``."""
    layers = model.get_submodule(layout.decoder_layers)
    return ModelSummary(
        architecture=type(model).__name__,
        family=layout.family,
        language_model=layout.language_model,
        decoder_layers=len(layers),
        targets_by_kind=dict(layout.target_kinds()),
        target_count=len(layout.targets),
        parameters_total=sum(p.numel() for p in model.parameters()),
        parameters_language_model=_count(model, [layout.language_model]),
        parameters_vision=_count(model, layout.vision, exclude=layout.projector),
        parameters_projector=_count(model, layout.projector),
        frozen=layout.frozen,
    )
