"""routelora: continual learning for vision-language models by routing between LoRA experts."""

__version__ = "0.1.0"

from routelora.errors import RouteloraError  # noqa: E402
from routelora.models import (  # noqa: E402
    TinyVLMRecipe,
    VLMLayout,
    build_tiny_vlm,
    freeze_vision_and_projector,
    get_layout,
    load_vlm,
    resolve_layout,
    summarize,
)

__all__ = [
    "RouteloraError",
    "TinyVLMRecipe",
    "VLMLayout",
    "__version__",
    "build_tiny_vlm",
    "freeze_vision_and_projector",
    "get_layout",
    "load_vlm",
    "resolve_layout",
    "summarize",
]
