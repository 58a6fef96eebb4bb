"""Export a library for a multi-LoRA engine: each expert as a standard PEFT adapter directory, the router's
statistics beside them, and a manifest.

An engine loads an adapter by its module names and may skip names it does not find without a word, which leaves
the adapter a no-op; so each adapter is loaded here by PEFT itself onto the full VLM (the names the engine sees:
``base_model.model.<module of the VLM>``), checked to have put every one of the expert's weights where the expert
has them, saved by PEFT's own ``save_pretrained``, and its saved names checked against the VLM's state dict.
"""

import shutil
from pathlib import Path

import torch
from torch import nn

from routelora import io
from routelora._version import __version__
from routelora.errors import ExpertFormatError
from routelora.experts.expert import PROTOTYPES, Expert
from routelora.experts.fingerprint import base_fingerprint, check_compatible
from routelora.experts.library import BASE_DIR, ExpertLibrary
from routelora.experts.peft_adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX, natural_key

MANIFEST = "manifest.json"
ADAPTERS = "adapters"
ROUTER = "router"
EXPORT_FORMAT = 1


def export_peft(
    library: ExpertLibrary | str | Path, model: nn.Module, out: str | Path, overwrite: bool = False
) -> Path:
    """Write ``out/adapters/<expert>/`` (PEFT), ``out/router/`` (statistics) and ``out/manifest.json``, atomically.

    Args:
        library: the library to export.
        model: the full base VLM its experts were trained on (loaded with :func:`routelora.load_vlm`).
        out: the export directory.
        overwrite: replace an existing ``out``.
    """
    library = library if isinstance(library, ExpertLibrary) else ExpertLibrary(library)
    out = Path(out)
    if out.exists() and not overwrite:
        raise ExpertFormatError(f"{out} already exists; choose another --out or pass --overwrite")
    experts = library.load()
    if not experts:
        raise ExpertFormatError(f"library {library.root} holds no experts to export")
    names = set(model.state_dict())
    staging = io.staging_directory(out)
    try:
        entries = [_export_expert(library, expert, model, names, staging) for expert in experts]
        skills = _copy_base_statistics(library.root, staging)
        manifest = {
            "format": EXPORT_FORMAT,
            "routelora": __version__,
            "base_fingerprint": base_fingerprint(model),
            "experts": entries,
            "base_skills": skills,
            "max_lora_rank": max((e["rank"] for e in entries if e["kind"] == "lora"), default=0),
            "module_names": f"PEFT's, on the full VLM: {PEFT_PREFIX}<module>.lora_A.weight",
        }
        io.write_json(staging / MANIFEST, manifest)
        io.publish_directory(staging, out, overwrite)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def _export_expert(library: ExpertLibrary, expert: Expert, model: nn.Module, names: set[str], staging: Path) -> dict:
    from peft import PeftModel

    check_compatible(expert, model)
    missing = [target for target in expert.targets if f"{target}.weight" not in names]
    if missing:
        raise ExpertFormatError(f"expert {expert.name}: module {missing[0]} is not in the base VLM's state dict")
    destination = staging / ADAPTERS / expert.name
    peft_model = PeftModel.from_pretrained(model, library.path(expert.name), is_trainable=False)
    try:
        _check_loaded(peft_model, expert)
        peft_model.save_pretrained(destination)
        (destination / "README.md").unlink(missing_ok=True)  # PEFT's model card: only JSON and safetensors here
    finally:
        peft_model.unload()  # the base layers back in place, for the next expert
    _check_saved_names(destination / ADAPTER_WEIGHTS, names, expert.name)
    _sort_module_lists(destination / ADAPTER_CONFIG)
    entry = {
        "name": expert.name,
        "kind": expert.kind,
        "task": expert.metadata.get("task"),
        "adapter": f"{ADAPTERS}/{expert.name}",
        "rank": expert.rank,
        "modules": len(expert.targets),
    }
    if expert.prototypes is not None:
        statistics = f"{ROUTER}/experts/{expert.name}.safetensors"
        io.write_safetensors(staging / statistics, io.read_safetensors(library.path(expert.name) / PROTOTYPES))
        entry["statistics"] = statistics
    return entry


def _check_loaded(peft_model: nn.Module, expert: Expert) -> None:
    """Every weight of the expert is in the module PEFT put an adapter on, unchanged; no other module has one."""
    inner = peft_model.base_model.model
    found = {name for name, module in inner.named_modules() if hasattr(module, "lora_A") or hasattr(module, "ia3_l")}
    if found != set(expert.targets):
        extra = sorted(found ^ set(expert.targets))
        raise ExpertFormatError(f"expert {expert.name}: PEFT adapted other modules than the expert's ({extra[:3]})")
    for name in expert.targets:
        module = inner.get_submodule(name)
        if expert.kind == "lora":
            same = torch.equal(module.lora_A["default"].weight.cpu(), expert.lora_A[name].to(torch.float32).cpu())
            same = same and torch.equal(module.lora_B["default"].weight.cpu(), expert.lora_B[name].float().cpu())
        else:
            same = torch.equal(module.ia3_l["default"].detach().flatten().cpu(), expert.ia3[name].float().cpu())
        if not same:
            raise ExpertFormatError(f"expert {expert.name}: PEFT loaded other weights for {name} than the expert's")


def _check_saved_names(path: Path, names: set[str], expert: str) -> None:
    for key in io.read_safetensors(path):
        module = key.removeprefix(PEFT_PREFIX).rsplit(".", 2)[0] if ".lora_" in key else key.removeprefix(PEFT_PREFIX)
        module = module.removesuffix(".ia3_l").removesuffix(".weight")
        if not key.startswith(PEFT_PREFIX) or f"{module}.weight" not in names:
            raise ExpertFormatError(f"exported adapter {expert}: {key} names no module of the base VLM")


def _sort_module_lists(path: Path) -> None:
    """PEFT writes its module sets in hash order; in module order, two exports of one library are identical."""
    config = io.read_json(path)
    for key, value in config.items():
        if key.endswith("modules") and isinstance(value, list):
            config[key] = sorted(value, key=natural_key)
    io.write_json(path, config)


def _copy_base_statistics(root: Path, staging: Path) -> list[str]:
    skills = []
    for path in sorted((root / BASE_DIR).glob("*.safetensors")) if (root / BASE_DIR).is_dir() else []:
        io.write_safetensors(staging / ROUTER / "base" / path.name, io.read_safetensors(path))
        skills.append(path.stem)
    return skills
