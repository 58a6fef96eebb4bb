"""Resolve a loaded VLM into the parts routelora cares about: language model, adapter targets, frozen parts."""

import re
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from routelora.errors import UnknownArchitectureError
from routelora.models.families import TARGET_KINDS, find_family, known_architectures

MANUAL_FAMILY = "manual"

HOW_TO_NAME_BY_HAND = (
    "name the language model by hand: language_model='<module path>' in the API or --language-model PATH on the "
    "command line (the module that holds the decoder layers, e.g. 'model.language_model'), and optionally "
    "target_pattern / --target-pattern, a regular expression matched against the full names of its linear layers"
)


def image_token_id(config) -> int | None:
    """Id of the image placeholder token in a VLM's config, or None for a text-only model.

    Families name it differently (``image_token_id`` in Qwen2-VL and newer LLaVA configs, ``image_token_index`` in
    older ones); an id of 0 is a valid id, so the two are not chained with ``or``.
    """
    for key in ("image_token_id", "image_token_index"):
        value = getattr(config, key, None)
        if value is not None:
            return int(value)
    return None


def text_token_mask(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, image_id: int | None
) -> torch.Tensor:
    """Positions that hold real text: neither padding nor an image placeholder. ``(batch, seq)`` bool.

    Routing pools and prototypes average over these only: image placeholders are the same token in every task,
    and their embeddings say nothing about which task a prompt is.
    """
    real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    return real if image_id is None else real & (input_ids != image_id)


@dataclass
class VLMLayout:
    """Where the parts of one VLM instance are, as module paths from the top-level model."""

    family: str
    """Family name from :mod:`routelora.models.families`, or ``manual`` when named by hand."""
    language_model: str
    """Path of the language model's decoder stack."""
    decoder_layers: str
    """Path of the decoder layers' ``ModuleList``."""
    vision: list[str]
    """Paths of the vision encoder modules (frozen)."""
    projector: list[str]
    """Paths of the projector modules (frozen)."""
    targets: list[str] = field(default_factory=list)
    """Full names of the ``nn.Linear`` modules that get adapters, in module order."""

    @property
    def frozen(self) -> list[str]:
        """Paths of every module that stays frozen in every method (vision encoder and projector)."""
        return self.vision + [path for path in self.projector if not _is_inside_any(path, self.vision)]

    def target_kinds(self) -> Counter:
        """Number of adapter targets per kind (``q``, ``k``, ``mlp.up``...)."""
        return Counter(TARGET_KINDS.get(name.rsplit(".", 1)[-1], name.rsplit(".", 1)[-1]) for name in self.targets)

    def frozen_parameter_names(self, model: nn.Module) -> list[str]:
        """Names of the parameters under the frozen modules."""
        prefixes = tuple(path + "." for path in self.frozen)
        return [name for name, _ in model.named_parameters() if name.startswith(prefixes)]


def _is_inside_any(path: str, parents: list[str]) -> bool:
    return any(path == parent or path.startswith(parent + ".") for parent in parents)


def _first_existing(model: nn.Module, candidates: tuple[str, ...]) -> str | None:
    for path in candidates:
        try:
            model.get_submodule(path)
        except AttributeError:
            continue
        return path
    return None


def _existing(model: nn.Module, candidates: tuple[str, ...]) -> list[str]:
    path = _first_existing(model, candidates)
    return [path] if path else []


def _linear_targets(model: nn.Module, layers_path: str, target_pattern: str | None) -> list[str]:
    prefix = layers_path + "."
    pattern = re.compile(target_pattern) if target_pattern else None
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.startswith(prefix) and (pattern is None or pattern.search(name))
    ]


def _find_decoder_layers(model: nn.Module, language_model: str) -> str:
    """The first ``ModuleList`` under a hand-named language model: every decoder stack in transformers has one."""
    root = model.get_submodule(language_model)
    for name, module in root.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return f"{language_model}.{name}" if name else language_model
    raise UnknownArchitectureError(
        f"no decoder layers (an nn.ModuleList) found under '{language_model}'; {HOW_TO_NAME_BY_HAND}"
    )


def _architecture(model: nn.Module) -> tuple[str, str | None]:
    config = getattr(model, "config", None)
    return type(model).__name__, getattr(config, "model_type", None)


def resolve_layout(
    model: nn.Module,
    language_model: str | None = None,
    target_pattern: str | None = None,
) -> VLMLayout:
    """Find the language model, the adapter targets and the frozen parts of ``model``.

    Args:
        model: a loaded VLM.
        language_model: path of the language model's decoder stack, for architectures routelora does not know
            (or to override the family's default).
        target_pattern: regular expression that the full name of a linear layer inside the decoder layers must
            match to become an adapter target; by default every linear inside the decoder layers is a target.

    Raises:
        UnknownArchitectureError: the architecture is unknown and no ``language_model`` was given, or a named
            path does not exist, or no target matches.
    """
    architecture, model_type = _architecture(model)
    family = find_family(architecture, model_type)
    if language_model is not None:
        try:
            model.get_submodule(language_model)
        except AttributeError:
            raise UnknownArchitectureError(
                f"language model path '{language_model}' does not exist in {architecture}"
            ) from None
        layers = _find_decoder_layers(model, language_model)
        vision = _existing(model, family.vision) if family else []
        projector = _existing(model, family.projector) if family else []
        layout = VLMLayout(MANUAL_FAMILY if family is None else family.name, language_model, layers, vision, projector)
    elif family is None:
        raise UnknownArchitectureError(
            f"unknown VLM architecture {architecture} (model_type {model_type!r}); known: "
            f"{', '.join(known_architectures())}. To use it anyway, {HOW_TO_NAME_BY_HAND}"
        )
    else:
        lm_path = _first_existing(model, family.language_model)
        if lm_path is None:
            raise UnknownArchitectureError(
                f"{architecture} looks like the {family.name} family but none of {list(family.language_model)} "
                f"exists in it; {HOW_TO_NAME_BY_HAND}"
            )
        vision, projector = _existing(model, family.vision), _existing(model, family.projector)
        layout = VLMLayout(family.name, lm_path, f"{lm_path}.{family.decoder_layers}", vision, projector)
    layout.targets = _linear_targets(model, layout.decoder_layers, target_pattern)
    if not layout.targets:
        raise UnknownArchitectureError(
            f"no linear layer under '{layout.decoder_layers}' matches target pattern {target_pattern!r}"
        )
    return layout


def get_layout(model: nn.Module) -> VLMLayout:
    """The layout ``load_vlm`` resolved for ``model`` (with any hand-named paths), else a fresh one."""
    layout = getattr(model, "routelora_layout", None)
    return layout if layout is not None else resolve_layout(model)


def freeze_vision_and_projector(model: nn.Module, layout: VLMLayout | None = None) -> list[str]:
    """Set ``requires_grad=False`` on the vision encoder and projector; returns the frozen parameter names."""
    layout = layout or get_layout(model)
    names = set(layout.frozen_parameter_names(model))
    for name, parameter in model.named_parameters():
        if name in names:
            parameter.requires_grad_(False)
    return sorted(names)
