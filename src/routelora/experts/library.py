"""A library of experts: one folder holding one expert directory per expert, the folder name being its name.

The list of experts is derived from the folders (no index file to fall out of step). Experts come in through a
temporary directory inside the library that is renamed into place once complete, and leave by being renamed out
before deletion, so other processes only ever see whole experts. Experts of different ranks live together.
"""

import dataclasses
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from routelora import io
from routelora.errors import ExpertFormatError, RouteloraError
from routelora.experts.expert import (
    EXPERT_JSON,
    Expert,
    expert_metadata,
    load_expert,
    write_expert_files,
    write_expert_json,
)
from routelora.experts.fingerprint import (
    IncompatibleExpertError,
    base_fingerprint,
    check_compatible,
    check_ia3_shapes,
    check_shapes,
)
from routelora.experts.ia3 import is_ia3_config, read_ia3_adapter
from routelora.experts.peft_adapter import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    PEFT_PREFIX,
    lora_scalings,
    module_alphas,
    read_adapter,
)

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""Safe expert names: letters, digits, ``-``, ``_`` and ``.``, not starting with a dot (hidden, ``..``)."""

COPIED_SUFFIXES = (".json", ".safetensors", ".md")
"""Files of an expert directory copied into a library: the expert's own plus logs and PEFT's README."""


class LibraryError(RouteloraError):
    """A bad expert name, a name already taken, or an expert the library does not have."""


def check_name(name: str) -> str:
    """``name`` if it is a safe folder name, else a :class:`LibraryError` saying what is allowed."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise LibraryError(
            f"invalid expert name {name!r}: use 1 to 100 letters, digits, '-', '_' or '.', not starting with '.'"
        )
    return name


class ExpertLibrary:
    """The experts in one directory (created on the first :meth:`add`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"ExpertLibrary({str(self.root)!r}, {len(self)} experts)"

    def names(self) -> list[str]:
        """Names of the experts, sorted; folders without ``expert.json`` and hidden temporary folders are skipped."""
        if not self.root.is_dir():
            return []
        return sorted(
            path.name
            for path in self.root.iterdir()
            if path.is_dir()
            and not path.is_symlink()
            and NAME_PATTERN.fullmatch(path.name)
            and (path / EXPERT_JSON).is_file()
        )

    def __len__(self) -> int:
        return len(self.names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None and name in self.names()

    def path(self, name: str) -> Path:
        """Directory of expert ``name`` (which must exist, and not be a symbolic link: a library keeps its experts'
        files itself, so that no name leads out of it)."""
        if (self.root / check_name(name)).is_symlink():
            raise LibraryError(
                f"library {self.root}: expert {name!r} is a symbolic link (to {(self.root / name).resolve()}), which "
                "is refused; copy the expert in with `routelora library add`"
            )
        if name not in self:
            have = ", ".join(self.names()) or "none"
            raise LibraryError(f"library {self.root} has no expert named {name!r} (it has: {have})")
        return self.root / name

    def show(self, name: str) -> dict:
        """``expert.json`` plus ranks, number of targets, whether gates are trained, parameter counts and sizes."""
        expert = self.load([name])[0]
        files = {path.name: path.stat().st_size for path in sorted(expert.path.iterdir()) if path.is_file()}
        return {
            **expert.metadata,
            "name": name,
            "path": str(expert.path),
            "ranks": sorted(set(expert.ranks.values())),
            "num_targets": len(expert.targets),
            "has_gates": expert.has_gates,
            "kind": expert.kind,
            "adapter_parameters": expert.parameters,
            "gate_parameters": sum(gate.numel() for gate in (expert.gates or {}).values()),
            "files": files,
            "bytes": sum(files.values()),
        }

    def load(self, names: list[str] | None = None) -> list[Expert]:
        """The experts ``names`` (default: all, by name), each named after its folder."""
        experts = []
        for name in self.names() if names is None else names:
            expert = load_expert(self.path(name))
            expert.name = name  # the folder name is the library's key, whatever expert.json says
            experts.append(expert)
        return experts

    def check(self, model: nn.Module) -> list[str]:
        """Check every expert against ``model``; returns their names.

        Raises:
            IncompatibleExpertError: one line per expert that does not fit, joined with "; ".
        """
        fingerprint = base_fingerprint(model)
        problems = []
        for expert in self.load():
            try:
                check_compatible(expert, model, fingerprint)
            except IncompatibleExpertError as error:
                problems.append(str(error))
        if problems:
            raise IncompatibleExpertError("; ".join(problems))
        return self.names()

    def add(self, expert: Expert | str | Path, name: str | None = None, overwrite: bool = False) -> str:
        """Add ``expert`` (in memory, or an expert directory to copy) as ``name`` (default: its own name); returns
        the name. An in-memory expert is written once, straight into the library.

        Raises:
            ExpertFormatError: ``expert`` is a directory that is not a readable expert.
            LibraryError: the name is invalid, or taken and ``overwrite`` is false.
        """
        if isinstance(expert, Expert):
            name = check_name(expert.name if name is None else name)
            renamed = dataclasses.replace(expert, name=name, metadata={**expert.metadata, "name": name})
            self._install(
                name,
                overwrite,
                lambda directory: write_expert_files(renamed, directory),
                expert.metadata.get("base_fingerprint"),
            )
            return name
        source = Path(expert).expanduser()
        loaded = load_expert(source)
        name = check_name(loaded.name if name is None else name)

        def copy(directory: Path) -> None:
            for path in sorted(source.iterdir()):
                if path.is_file() and path.suffix in COPIED_SUFFIXES:
                    shutil.copyfile(path, directory / path.name)
            write_expert_json(directory, {**loaded.metadata, "name": name})

        self._install(name, overwrite, copy, loaded.metadata.get("base_fingerprint"))
        return name

    def add_peft(self, peft_dir: str | Path, name: str, base_model: nn.Module, overwrite: bool = False) -> str:
        """Bring in a LoRA adapter trained elsewhere with PEFT, checked against ``base_model``; returns the name.

        Raises:
            ExpertFormatError: the adapter is missing a file, has a broken one, or is not a plain LoRA.
            IncompatibleExpertError: it adapts modules that are not adapter targets of ``base_model``.
            LibraryError: the name is invalid, or taken and ``overwrite`` is false.
        """
        name = check_name(name)
        if name in self and not overwrite:
            raise self._taken(name)
        expert = expert_from_peft(peft_dir, name, base_model)
        fingerprint = expert.metadata.get("base_fingerprint")
        self._install(name, overwrite, lambda directory: write_expert_files(expert, directory), fingerprint)
        return name

    def remove(self, name: str) -> None:
        """Delete expert ``name``; the others are untouched."""
        path = self.path(name)
        # Renamed out first, so that no reader ever sees a half-deleted expert.
        trash = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.removed-"))
        path.rename(trash / name)
        shutil.rmtree(trash)

    def _taken(self, name: str) -> LibraryError:
        return LibraryError(
            f"library {self.root} already has an expert named {name!r}; choose another name or overwrite it "
            "(CLI: --overwrite)"
        )

    def _fingerprints(self) -> set[str]:
        fingerprints = set()
        for name in self.names():
            try:
                fingerprints.add(
                    str(io.read_json(self.root / name / EXPERT_JSON, ExpertFormatError).get("base_fingerprint"))
                )
            except ExpertFormatError:  # a broken neighbour must not block adding; load() and check() report it
                continue
        return fingerprints

    def _install(self, name: str, overwrite: bool, write: Callable[[Path], None], fingerprint: str | None = None):
        if name in self and not overwrite:
            raise self._taken(name)
        others = self._fingerprints()
        if fingerprint and others - {fingerprint}:
            logger.warning(
                "expert %s was trained on base model %s, other experts in %s on %s: routing needs one base model",
                name,
                fingerprint,
                self.root,
                ", ".join(sorted(str(f) for f in others - {fingerprint})),
            )
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = io.staging_directory(self.root / name)
        try:
            write(temporary)
            load_expert(temporary)  # what lands in the library must read back
            io.publish_directory(temporary, self.root / name, overwrite)
        except FileExistsError:
            raise self._taken(name) from None
        finally:
            if temporary.exists():
                shutil.rmtree(temporary)


def _module_of(key: str) -> str:
    return key[len(PEFT_PREFIX) :].rsplit(".", 2)[0]


def _renamed_for_this_transformers(
    base_model: nn.Module, peft_dir: Path, lora_A: dict[str, torch.Tensor], lora_B: dict[str, torch.Tensor]
) -> dict[str, str]:
    """New -> saved module names through PEFT's transformers v4 -> v5 key conversion (LLaVA's
    ``language_model.model.layers`` became ``model.language_model.layers``); {} unless it renames every module."""
    state = {f"{PEFT_PREFIX}{n}.lora_A.weight": a for n, a in lora_A.items()}
    state |= {f"{PEFT_PREFIX}{n}.lora_B.weight": b for n, b in lora_B.items()}
    try:
        from peft import LoraConfig
        from peft.utils.transformers_weight_conversion import convert_peft_adapter_state_dict_for_transformers

        config = LoraConfig.from_pretrained(str(peft_dir))
        converted = convert_peft_adapter_state_dict_for_transformers(base_model, config, dict(state))
    except Exception as error:  # an internal PEFT helper: whatever fails, the keys are just reported as not found
        logger.debug("PEFT's key conversion failed on %s: %s", peft_dir, error)
        return {}
    saved = {id(tensor): key for key, tensor in state.items()}
    renames = {}
    for key, tensor in converted.items():
        # Identity tells a pure renaming from a conversion that merged or split tensors (MoE), which is refused.
        if id(tensor) not in saved or not key.startswith(PEFT_PREFIX):
            return {}
        renames[_module_of(key)] = _module_of(saved[id(tensor)])
    renamed = len(renames) == len(lora_A) and any(new != old for new, old in renames.items())
    return renames if renamed else {}


def expert_from_peft(peft_dir: str | Path, name: str, base_model: nn.Module) -> Expert:
    """An expert (without gates, not yet written) from a LoRA adapter trained elsewhere with PEFT.

    Keys saved under transformers 4 module names are renamed to this transformers' names where PEFT knows how. The
    returned expert's ``adapter_config`` lists its modules by full name, with explicit rank and alpha patterns.

    Raises:
        ExpertFormatError: a file is missing or broken, or the adapter is not a plain LoRA.
        IncompatibleExpertError: a module (the first is named) is not an adapter target of ``base_model``: it does
            not exist, has other shapes, or lies outside the language model (e.g. in the vision encoder).
    """
    peft_dir = Path(peft_dir).expanduser()
    if is_ia3_config(io.read_json(peft_dir / ADAPTER_CONFIG, ExpertFormatError)) if peft_dir.is_dir() else False:
        return _ia3_expert_from_peft(peft_dir, name, base_model)
    config, lora_A, lora_B = read_adapter(peft_dir)
    modules = [module_name for module_name, _ in base_model.named_modules()]
    renames = {}
    if not set(lora_A) <= set(modules):
        renames = _renamed_for_this_transformers(base_model, peft_dir, lora_A, lora_B)
        if renames:
            lora_A = {new: lora_A[old] for new, old in renames.items()}
            lora_B = {new: lora_B[old] for new, old in renames.items()}
    # Model order, so that a vision-tower module is named before the language model's.
    order = [module for module in modules if module in lora_A] + [m for m in lora_A if m not in modules]
    lora_A, lora_B = {m: lora_A[m] for m in order}, {m: lora_B[m] for m in order}
    check_shapes(base_model, lora_A, lora_B, None, str(peft_dir / ADAPTER_WEIGHTS))
    ranks = {module: a.shape[0] for module, a in lora_A.items()}
    alphas = module_alphas(config, ranks, peft_dir / ADAPTER_CONFIG, renames)
    rank, alpha = config.get("r", 8), config.get("lora_alpha", 8)
    adapter_config = {
        **config,
        "target_modules": order,
        "rank_pattern": {module: r for module, r in ranks.items() if r != rank},
        "alpha_pattern": {module: a for module, a in alphas.items() if a != alpha},
        "layers_to_transform": None,
        "layers_pattern": None,
        "exclude_modules": None,
    }
    training = {
        "source": "peft",
        "path": str(peft_dir.resolve()),
        "base_model_name_or_path": config.get("base_model_name_or_path"),
        "renamed_keys": bool(renames),
    }
    metadata = expert_metadata(name, name, base_fingerprint(base_model), order, max(ranks.values()), alpha, training)
    scaling = lora_scalings(adapter_config, ranks, peft_dir / ADAPTER_CONFIG)
    return Expert(name, None, lora_A, lora_B, scaling, metadata=metadata, adapter_config=adapter_config)


def _ia3_expert_from_peft(peft_dir: Path, name: str, base_model: nn.Module) -> Expert:
    """An (IA)^3 expert from an IA3 adapter trained elsewhere with PEFT (modules by full name, in model order)."""
    config, vectors, inputs = read_ia3_adapter(peft_dir)
    modules = [module_name for module_name, _ in base_model.named_modules()]
    order = [module for module in modules if module in vectors] + [m for m in vectors if m not in modules]
    vectors = {module: vectors[module] for module in order}
    check_ia3_shapes(base_model, vectors, inputs, None, str(peft_dir / ADAPTER_WEIGHTS))
    sizes = {module: base_model.get_submodule(module).in_features for module in order}
    source = config.get("base_model_name_or_path")
    training = {"source": "peft", "path": str(peft_dir.resolve()), "base_model_name_or_path": source}
    metadata = expert_metadata(name, name, base_fingerprint(base_model), order, 0, 0.0, training)
    metadata |= {"kind": "ia3", "input_sizes": sizes, "rank": None, "alpha": None}
    adapter_config = {**config, "target_modules": order, "feedforward_modules": [m for m in order if m in inputs]}
    expert = Expert(name, None, {}, {}, {}, metadata=metadata, adapter_config=adapter_config)
    expert.ia3, expert.ia3_input = vectors, tuple(m for m in order if m in inputs)
    return expert


BASE_DIR = "_base"
"""Folder of the base model's prototypes inside a library; the leading underscore keeps it out of expert names."""


def base_prototypes_path(library_root: str | Path, skill: str) -> Path:
    """Where a library keeps the base model's prototypes of one general skill."""
    return Path(library_root) / BASE_DIR / f"{skill}.safetensors"


def save_base_prototypes(library_root: str | Path, skill: str, prototypes: dict[str, torch.Tensor]) -> Path:
    """Store the base model's prototypes for one general skill in a library, atomically."""
    return io.write_safetensors(base_prototypes_path(library_root, skill), prototypes, {"skill": skill})


def load_base_prototypes(library_root: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Every general skill's base prototypes in a library, by skill name (empty when there are none)."""
    folder = Path(library_root) / BASE_DIR
    return {path.stem: io.read_safetensors(path, LibraryError) for path in sorted(folder.glob("*.safetensors"))}
