"""LoRA experts on disk (PEFT adapter + gates + ``expert.json``) and the expert library."""

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
