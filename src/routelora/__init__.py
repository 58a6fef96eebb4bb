"""routelora: continual learning for vision-language models by routing between LoRA experts.

The public names below are imported on first use (PEP 562), so ``import routelora`` (and with it the
``routelora`` command's ``--help``) does not pay for torch and transformers.
"""

from typing import TYPE_CHECKING

from routelora._lazy import lazy_getattr
from routelora._version import __version__

if TYPE_CHECKING:
    from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
    from routelora.errors import RouteloraError
    from routelora.experts.library import ExpertLibrary
    from routelora.models import (
        VLMLayout,
        freeze_vision_and_projector,
        get_layout,
        load_vlm,
        resolve_layout,
        summarize,
    )
    from routelora.routing.config import PAPER_ROUTER, RouterConfig
    from routelora.routing.model import attach_router

# public name -> the module it comes from
_LAZY = {
    "ExpertLibrary": "routelora.experts.library",
    "PAPER_ROUTER": "routelora.routing.config",
    "RouteloraError": "routelora.errors",
    "RouterConfig": "routelora.routing.config",
    "TinyVLMRecipe": "routelora.embedded.tiny",
    "VLMLayout": "routelora.models",
    "attach_router": "routelora.routing.model",
    "build_tiny_vlm": "routelora.embedded.tiny",
    "freeze_vision_and_projector": "routelora.models",
    "get_layout": "routelora.models",
    "load_vlm": "routelora.models",
    "resolve_layout": "routelora.models",
    "summarize": "routelora.models",
}

__all__ = [
    "ExpertLibrary",
    "PAPER_ROUTER",
    "RouteloraError",
    "RouterConfig",
    "TinyVLMRecipe",
    "VLMLayout",
    "__version__",
    "attach_router",
    "build_tiny_vlm",
    "freeze_vision_and_projector",
    "get_layout",
    "load_vlm",
    "resolve_layout",
    "summarize",
]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
