"""The versions and the machine a run was made with, written beside its figures so that a figure can be traced to
its packages and to the CPU that computed it (floating-point results differ between CPUs: vector width, thread
scheduling)."""

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("routelora", "torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors", "numpy", "pillow")
"""The packages whose versions move routelora's numbers (requirements/lock.txt pins them all)."""

VECTOR_PREFIXES = ("sse4", "avx", "fma", "amx", "f16c", "asimd", "sve", "fphp", "bf16", "i8mm")
"""CPU flags that name a vector extension (x86's ``flags`` line, ARM's ``Features``): the ones that change which
kernels torch runs and so the rounding of every sum."""

CPUINFO = Path("/proc/cpuinfo")


def package_versions() -> dict[str, str]:
    """Python's and each of :data:`PACKAGES`' installed version (``missing`` where one is not installed)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    return versions


def cpu_description(cpuinfo: Path | None = None) -> dict[str, object]:
    """The CPU's model name and its vector extensions (a sorted list) from ``cpuinfo`` (default :data:`CPUINFO`);
    the model falls back to :func:`platform.processor` and the extensions to an empty list where the file is
    missing (not Linux)."""
    fields: dict[str, str] = {}
    try:
        for line in (cpuinfo or CPUINFO).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())  # the first core's: every core reports the same
    except OSError:
        pass
    model = fields.get("model name") or fields.get("hardware") or platform.processor() or "unknown"
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    return {"cpu_model": model, "cpu_vector_extensions": sorted(f for f in flags if f.startswith(VECTOR_PREFIXES))}


def run_environment() -> dict[str, object]:
    """What a run's ``results.json`` records of where it ran: :func:`package_versions`, the CPU
    (:func:`cpu_description`), the instruction set torch dispatches to, the cores and torch's thread count."""
    import torch  # here, not at the top: package_versions stays importable without loading torch

    return {
        **package_versions(),
        **cpu_description(),
        "architecture": platform.machine(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
