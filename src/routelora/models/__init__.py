"""Loading VLMs, knowing their layout, and the embedded tiny VLM."""

from routelora.models.layout import VLMLayout, freeze_vision_and_projector, get_layout, resolve_layout
from routelora.models.loading import load_vlm
from routelora.models.summary import ModelSummary, summarize
from routelora.models.tiny import TinyVLMRecipe, build_tiny_vlm, save_checkpoint

__all__ = [
    "ModelSummary",
    "TinyVLMRecipe",
    "VLMLayout",
    "build_tiny_vlm",
    "freeze_vision_and_projector",
    "get_layout",
    "load_vlm",
    "resolve_layout",
    "save_checkpoint",
    "summarize",
]
