"""The versions a run was made with, written beside its figures so that a figure can be traced to its packages."""

import platform
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("routelora", "torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors", "numpy", "pillow")
"""The packages whose versions move routelora's numbers (requirements/lock.txt pins them all)."""


def package_versions() -> dict[str, str]:
    """Python's and each of :data:`PACKAGES`' installed version (``missing`` where one is not installed)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    return versions
