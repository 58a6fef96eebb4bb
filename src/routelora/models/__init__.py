"""Loading VLMs, knowing their layout, saving checkpoints."""

from routelora.models.checkpoint import save_checkpoint
from routelora.models.layout import VLMLayout, freeze_vision_and_projector, get_layout, resolve_layout
from routelora.models.loading import load_vlm
from routelora.models.summary import ModelSummary, summarize

__all__ = [
    "ModelSummary",
    "VLMLayout",
    "freeze_vision_and_projector",
    "get_layout",
    "load_vlm",
    "resolve_layout",
    "save_checkpoint",
    "summarize",
]
