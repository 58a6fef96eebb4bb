"""LoRA experts on disk (PEFT adapter + gates + prototypes + ``expert.json``) and the expert library.

The names below are imported on first use, so that ``routelora.experts.config`` (the training settings, which
the command line reads to build its flags) comes without torch.
"""

from typing import TYPE_CHECKING

from routelora._lazy import lazy_getattr

if TYPE_CHECKING:
    from routelora.errors import ExpertFormatError
    from routelora.experts.expert import (
        Expert,
        expert_metadata,
        load_expert,
        save_expert,
        save_gates,
        write_expert_json,
    )
    from routelora.experts.fingerprint import IncompatibleExpertError, base_fingerprint, check_compatible
    from routelora.experts.library import ExpertLibrary, LibraryError, expert_from_peft

_LAZY = {
    "Expert": "routelora.experts.expert",
    "ExpertFormatError": "routelora.errors",
    "ExpertLibrary": "routelora.experts.library",
    "IncompatibleExpertError": "routelora.experts.fingerprint",
    "LibraryError": "routelora.experts.library",
    "base_fingerprint": "routelora.experts.fingerprint",
    "check_compatible": "routelora.experts.fingerprint",
    "expert_from_peft": "routelora.experts.library",
    "expert_metadata": "routelora.experts.expert",
    "load_expert": "routelora.experts.expert",
    "save_expert": "routelora.experts.expert",
    "save_gates": "routelora.experts.expert",
    "write_expert_json": "routelora.experts.expert",
}

__all__ = [
    "Expert",
    "ExpertFormatError",
    "ExpertLibrary",
    "IncompatibleExpertError",
    "LibraryError",
    "base_fingerprint",
    "check_compatible",
    "expert_from_peft",
    "expert_metadata",
    "load_expert",
    "save_expert",
    "save_gates",
    "write_expert_json",
]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
