"""Where each supported VLM family keeps its language model, vision encoder and projector.

A family is matched by the model's class name (or, failing that, its ``config.model_type``). Paths are attribute
paths from the top-level model object, as ``model.get_submodule`` takes them. Several candidates are listed where
transformers moved a module between releases; the first one that exists wins.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class FamilySpec:
    """How one VLM family is laid out."""

    name: str
    """Short family name shown to users (``llava``, ``qwen2_vl``...)."""
    architectures: tuple[str, ...]
    """Model class names of the family, as in ``config.architectures``."""
    model_types: tuple[str, ...]
    """``config.model_type`` values of the family, used when the class name is not one of ``architectures``."""
    language_model: tuple[str, ...]
    """Candidate paths of the language model's decoder stack (the module that holds ``layers``)."""
    decoder_layers: str
    """Path of the decoder layers' ``ModuleList`` relative to the language model."""
    vision: tuple[str, ...]
    """Candidate paths of the vision encoder (always frozen)."""
    projector: tuple[str, ...]
    """Candidate paths of the vision-to-language projector (always frozen)."""


FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec(
        name="llava",
        architectures=("LlavaForConditionalGeneration",),
        model_types=("llava",),
        language_model=("model.language_model", "language_model.model"),
        decoder_layers="layers",
        vision=("model.vision_tower", "vision_tower"),
        projector=("model.multi_modal_projector", "multi_modal_projector"),
    ),
    FamilySpec(
        name="qwen2_vl",
        architectures=("Qwen2VLForConditionalGeneration",),
        model_types=("qwen2_vl",),
        language_model=("model.language_model", "model"),
        decoder_layers="layers",
        vision=("model.visual", "visual"),
        # The merger is Qwen2-VL's projector; it lives inside ``visual`` and is frozen with it.
        projector=("model.visual.merger", "visual.merger"),
    ),
    FamilySpec(
        name="internvl",
        architectures=("InternVLForConditionalGeneration",),
        model_types=("internvl",),
        language_model=("model.language_model", "language_model.model"),
        decoder_layers="layers",
        vision=("model.vision_tower", "vision_tower"),
        projector=("model.multi_modal_projector", "multi_modal_projector"),
    ),
    FamilySpec(
        name="idefics3",
        architectures=("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration"),
        model_types=("idefics3", "smolvlm"),
        language_model=("model.text_model",),
        decoder_layers="layers",
        vision=("model.vision_model",),
        projector=("model.connector",),
    ),
    # The paper's InternVL2 as its hub repository ships it (remote code): an InternLM2 causal LM under
    # ``language_model`` whose decoder sits at ``language_model.model.layers`` with fused ``attention.wqkv``.
    FamilySpec(
        name="internvl2_remote",
        architectures=("InternVLChatModel",),
        model_types=("internvl_chat",),
        language_model=("language_model.model",),
        decoder_layers="layers",
        vision=("vision_model",),
        projector=("mlp1",),
    ),
)

# Adapter-target kinds by the linear's attribute name, so `routelora info` can count q/k/v/o/mlp targets alike
# across families that name them differently.
TARGET_KINDS: dict[str, str] = {
    "q_proj": "q",
    "k_proj": "k",
    "v_proj": "v",
    "o_proj": "o",
    "qkv_proj": "qkv",
    "wqkv": "qkv",
    "wo": "o",
    "gate_proj": "mlp.gate",
    "up_proj": "mlp.up",
    "down_proj": "mlp.down",
    "w1": "mlp.gate",
    "w3": "mlp.up",
    "w2": "mlp.down",
    "fc1": "mlp.up",
    "fc2": "mlp.down",
}


def find_family(architecture: str, model_type: str | None) -> FamilySpec | None:
    """The family of a model class name, else of its ``model_type``; None when neither is known."""
    for family in FAMILIES:
        if architecture in family.architectures:
            return family
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return None


def known_architectures() -> list[str]:
    """Class names of every supported family, for error messages."""
    return [arch for family in FAMILIES for arch in family.architectures]
