"""One expert on disk: a PEFT LoRA adapter directory plus routelora's gates and ``expert.json``.

Layout of an expert directory::

    adapter_config.json         as PEFT writes it (PeftModel.save_pretrained)
    adapter_model.safetensors   base_model.model.<module>.lora_A.weight (r, d_in) / .lora_B.weight (d_out, r)
    gates.safetensors           optional until gates are trained: <module> -> float32 (d_in,)
    prototypes.safetensors      optional, written with the gates: <module> and input_embeddings -> float32 (d,)
    expert.json                 name, task, base_fingerprint, rank, alpha, targets, training, gate_training, ...

Only safetensors and JSON are ever read: nothing is unpickled. Every write goes to a temporary file or directory
first and is moved into place with ``os.replace``, so a crash never leaves a half-written expert behind.
"""

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from routelora import __version__
from routelora.errors import RouteloraError

# Re-exported: callers check an expert where they load it.
from routelora.experts.fingerprint import IncompatibleExpertError, check_compatible  # noqa: F401

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
GATES = "gates.safetensors"
PROTOTYPES = "prototypes.safetensors"
EXPERT_JSON = "expert.json"

PEFT_PREFIX = "base_model.model."
LORA_SUFFIXES = {".lora_A.weight": "A", ".lora_B.weight": "B"}
REQUIRED_METADATA = ("name", "base_fingerprint", "targets")

# Fields of adapter_config.json that make an adapter something other than y = W u + s * B A u on linears.
UNSUPPORTED_FIELDS = {
    "use_dora": "DoRA adds a magnitude vector",
    "lora_bias": "LoRA biases add a bias to lora_B",
    "modules_to_save": "fully trained copies of whole modules",
    "trainable_token_indices": "trained embedding rows",
    "target_parameters": "LoRA on raw parameters (MoE experts)",
    "layer_replication": "replicated layers",
    "fan_in_fan_out": "transposed (Conv1D) weights",
    "use_qalora": "QA-LoRA pooling",
    "use_bdlora": "block-diagonal LoRA",
    "alora_invocation_tokens": "activated LoRA",
    "arrow_config": "Arrow routing",
    "kasa_config": "KaSA",
    "monteclora_config": "MonteCLoRA",
    "megatron_config": "Megatron parallel layers",
}
# Initialisations that rewrite the base weights: the adapter is only valid on top of the rewritten base.
BASE_MODIFYING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")


class ExpertFormatError(RouteloraError):
    """An expert or PEFT adapter directory is missing a file, has a broken one, or holds an unsupported adapter."""


@dataclass
class Expert:
    """One LoRA expert in memory, with its gates when trained."""

    name: str
    """Name of the expert (its folder name inside a library)."""
    path: Path | None
    """Directory it was loaded from; None for an expert built in memory."""
    lora_A: dict[str, torch.Tensor]
    """Full module name in the base model -> down-projection ``A`` of shape (r, d_in), in module order."""
    lora_B: dict[str, torch.Tensor]
    """Full module name -> up-projection ``B`` of shape (d_out, r)."""
    scaling: dict[str, float]
    """Full module name -> ``s`` of ``y = W u + s * B A u``: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    gates: dict[str, torch.Tensor] | None = None
    """Full module name -> float32 gate vector ``v`` of shape (d_in,); None until gates are trained."""
    prototypes: dict[str, torch.Tensor] | None = None
    """Routing prototypes: full module name (and ``input_embeddings``) -> float32 mean standardised input of
    shape (d,), over the expert's own task prompts; None until computed (see :mod:`routelora.gates.prototypes`)."""
    metadata: dict = field(default_factory=dict)
    """Contents of ``expert.json``."""
    adapter_config: dict | None = None
    """``adapter_config.json`` as read, written back unchanged by :func:`save_expert`; None builds a minimal one."""

    @property
    def targets(self) -> list[str]:
        """Full names of the adapted modules, in module order."""
        return list(self.lora_A)

    @property
    def ranks(self) -> dict[str, int]:
        """Rank of each adapted module (PEFT's rank_pattern lets them differ)."""
        return {name: a.shape[0] for name, a in self.lora_A.items()}

    @property
    def rank(self) -> int:
        """Largest rank over the adapted modules."""
        return max(self.ranks.values(), default=0)

    @property
    def has_gates(self) -> bool:
        """Whether gate vectors are present."""
        return self.gates is not None


def natural_key(name: str) -> list:
    """Sort key putting ``layers.2`` before ``layers.10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_json(path: Path) -> dict:
    """A JSON object from ``path``, with an error naming the file when it is missing or broken."""
    if not path.is_file():
        raise ExpertFormatError(f"{path} is missing")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExpertFormatError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ExpertFormatError(f"{path} must hold a JSON object, not {type(value).__name__}")
    return value


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on CPU, with an error naming the file when it is missing or broken."""
    if not path.is_file():
        raise ExpertFormatError(f"{path} is missing")
    try:
        return load_file(path, device="cpu")
    except Exception as error:  # safetensors raises its own error types, OSError, or ValueError on a bad header
        raise ExpertFormatError(f"{path} is not a readable safetensors file ({error})") from None


def check_plain_lora(config: dict, path: Path) -> None:
    """Refuse any adapter_config.json that is not a plain LoRA routelora can route."""
    if config.get("peft_type") != "LORA":
        raise ExpertFormatError(f"{path}: peft_type is {config.get('peft_type')!r}; routelora needs a LoRA adapter")
    if config.get("bias", "none") != "none":
        raise ExpertFormatError(
            f"{path}: bias is {config['bias']!r}; routelora needs bias 'none' (this adapter trains biases)"
        )
    for key, what in UNSUPPORTED_FIELDS.items():
        if config.get(key):
            raise ExpertFormatError(f"{path}: {key} is set ({what}); routelora only routes plain LoRA adapters")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.startswith(BASE_MODIFYING_INITS):
        raise ExpertFormatError(
            f"{path}: init_lora_weights is {init!r}, which rewrites the base weights; convert the adapter to a plain "
            "LoRA first (PEFT: save_pretrained(..., path_initial_model_for_weight_conversion=...))"
        )


def split_lora_tensors(
    tensors: dict[str, torch.Tensor], path: Path
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """PEFT's flat keys -> (module -> A, module -> B), refusing any other tensor (DoRA magnitudes, biases...)."""
    parts: dict[str, dict[str, torch.Tensor]] = {"A": {}, "B": {}}
    for key, tensor in tensors.items():
        suffix = next((s for s in LORA_SUFFIXES if key.endswith(s)), None)
        if suffix is None or not key.startswith(PEFT_PREFIX):
            raise ExpertFormatError(f"{path}: unexpected tensor {key}; only LoRA lora_A/lora_B weights are supported")
        if tensor.dim() != 2:
            raise ExpertFormatError(f"{path}: {key} has shape {tuple(tensor.shape)}, expected a matrix")
        parts[LORA_SUFFIXES[suffix]][key[len(PEFT_PREFIX) : -len(suffix)]] = tensor
    lora_A, lora_B = parts["A"], parts["B"]
    if not lora_A:
        raise ExpertFormatError(f"{path} holds no LoRA weights")
    for name in sorted(set(lora_A) ^ set(lora_B)):
        missing = "lora_B" if name in lora_A else "lora_A"
        raise ExpertFormatError(f"{path}: module {name} has no {missing} weight")
    for name, a in lora_A.items():
        if lora_B[name].shape[1] != a.shape[0]:
            raise ExpertFormatError(
                f"{path}: module {name} has lora_A {tuple(a.shape)} and lora_B {tuple(lora_B[name].shape)}, "
                "whose ranks differ"
            )
    order = sorted(lora_A, key=natural_key)
    return {n: lora_A[n] for n in order}, {n: lora_B[n] for n in order}


def _pattern_value(patterns: dict, name: str, default: float) -> float:
    # PEFT's own rule (peft.utils.other.get_pattern_key): the first key that matches the end of the name wins.
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def module_alphas(config: dict, ranks: dict[str, int], path: Path, names: dict[str, str] | None = None) -> dict:
    """Module -> alpha from ``lora_alpha`` / ``alpha_pattern``, checking each rank against ``r`` / ``rank_pattern``.

    ``names`` maps a module to the name the config's patterns were written for, when the keys were renamed.
    """
    alphas = {}
    for module, rank in ranks.items():
        name = (names or {}).get(module, module)
        try:
            configured = _pattern_value(config.get("rank_pattern"), name, config.get("r", 8))
            alphas[module] = _pattern_value(config.get("alpha_pattern"), name, config.get("lora_alpha", 8))
        except re.error as error:
            raise ExpertFormatError(
                f"{path}: a rank_pattern / alpha_pattern key is not a valid regex ({error})"
            ) from None
        if configured != rank:
            raise ExpertFormatError(
                f"{path}: r / rank_pattern give rank {configured} for {module}, but its lora_A has rank {rank}"
            )
    return alphas


def lora_scalings(config: dict, ranks: dict[str, int], path: Path, names: dict[str, str] | None = None) -> dict:
    """Module -> PEFT's scaling: alpha / r, or alpha / sqrt(r) with ``use_rslora``."""
    alphas = module_alphas(config, ranks, path, names)
    root = math.sqrt if config.get("use_rslora") else float
    return {module: alphas[module] / root(rank) for module, rank in ranks.items()}


def read_adapter(directory: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(adapter config, module -> A, module -> B) of a PEFT LoRA directory, refusing anything but plain LoRA."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ExpertFormatError(f"{directory} is not a directory (expected an adapter or expert directory)")
    config_path = directory / ADAPTER_CONFIG
    config = read_json(config_path)
    check_plain_lora(config, config_path)
    lora_A, lora_B = split_lora_tensors(read_safetensors(directory / ADAPTER_WEIGHTS), directory / ADAPTER_WEIGHTS)
    return config, lora_A, lora_B


def _read_gates(path: Path, lora_A: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    gates = read_safetensors(path)
    check_gates(gates, lora_A, path)
    return {name: gates[name].to(torch.float32) for name in lora_A}


def check_gates(gates: dict[str, torch.Tensor], lora_A: dict[str, torch.Tensor], where: Path | str) -> None:
    """Exactly one (d_in,) gate per adapted module."""
    for name in gates:
        if name not in lora_A:
            raise ExpertFormatError(f"{where}: gate for {name}, which the adapter does not adapt")
    for name, a in lora_A.items():
        if name not in gates:
            raise ExpertFormatError(f"{where}: no gate for adapted module {name}")
        if tuple(gates[name].shape) != (a.shape[1],):
            raise ExpertFormatError(
                f"{where}: gate for {name} has shape {tuple(gates[name].shape)}, expected ({a.shape[1]},) (its d_in)"
            )


def load_expert(path: str | Path) -> Expert:
    """Read an expert directory (safetensors and JSON only).

    Raises:
        ExpertFormatError: a file is missing or broken (the message names it), the adapter is not a plain LoRA
            (DoRA, biases... the message names the field), or expert.json disagrees with the adapter.
    """
    path = Path(path)
    config, lora_A, lora_B = read_adapter(path)
    metadata_path = path / EXPERT_JSON
    metadata = read_json(metadata_path)
    for key in REQUIRED_METADATA:
        if key not in metadata:
            raise ExpertFormatError(f"{metadata_path} has no {key!r}")
    targets = metadata["targets"]
    if not isinstance(targets, list) or len(set(targets)) != len(targets):
        raise ExpertFormatError(f"{metadata_path}: targets must be a list of distinct module names")
    for name in sorted(set(lora_A).symmetric_difference(targets), key=natural_key):
        where = f"in targets but not in {ADAPTER_WEIGHTS}" if name in targets else f"in {ADAPTER_WEIGHTS} only"
        raise ExpertFormatError(f"{metadata_path}: targets disagree with the adapter: {name} is {where}")
    lora_A = {name: lora_A[name] for name in targets}
    lora_B = {name: lora_B[name] for name in targets}
    scaling = lora_scalings(config, {n: a.shape[0] for n, a in lora_A.items()}, path / ADAPTER_CONFIG)
    gates = _read_gates(path / GATES, lora_A) if (path / GATES).exists() else None
    prototypes = _read_prototypes(path / PROTOTYPES, lora_A) if (path / PROTOTYPES).exists() else None
    return Expert(str(metadata["name"]), path, lora_A, lora_B, scaling, gates, prototypes, metadata, config)


def _read_prototypes(path: Path, lora_A: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    prototypes = read_safetensors(path)
    for name, vector in prototypes.items():
        if name in lora_A and tuple(vector.shape) != (lora_A[name].shape[1],):
            raise ExpertFormatError(
                f"{path}: prototype for {name} has shape {tuple(vector.shape)}, expected ({lora_A[name].shape[1]},)"
            )
        if vector.dim() != 1:
            raise ExpertFormatError(f"{path}: prototype {name} has shape {tuple(vector.shape)}; expected one vector")
    return {name: vector.to(torch.float32) for name, vector in prototypes.items()}


def expert_metadata(
    name: str,
    task: str,
    base_fingerprint: str,
    targets: list[str],
    rank: int,
    alpha: float,
    training: dict,
    gate_training: dict | None = None,
    scores: dict | None = None,
) -> dict:
    """A fresh ``expert.json`` dict, stamped with the time and the routelora version."""
    return {
        "name": name,
        "task": task,
        "base_fingerprint": base_fingerprint,
        "rank": rank,
        "alpha": alpha,
        "targets": list(targets),
        "training": training,
        "gate_training": gate_training,
        "scores": scores or {},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "routelora_version": __version__,
    }


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: dict) -> None:
    """Atomically write a JSON object, indented for people to read."""
    atomic_write(path, (json.dumps(value, indent=2, default=str) + "\n").encode())


def write_expert_json(directory: str | Path, metadata: dict) -> None:
    """Atomically (re)write ``expert.json`` in ``directory``."""
    write_json(Path(directory) / EXPERT_JSON, metadata)


def _owned(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    # A contiguous CPU copy: safetensors refuses tensors that share storage (views of one stacked parameter).
    return tensor.detach().to("cpu", dtype).clone(memory_format=torch.contiguous_format)


def _gate_tensors(gates: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: _owned(gate, torch.float32) for name, gate in gates.items()}


def save_gates(expert_dir: str | Path, gates: dict[str, torch.Tensor], gate_training: dict | None) -> None:
    """Write ``gates.safetensors`` and record ``gate_training`` in ``expert.json``, each atomically.

    Raises:
        ExpertFormatError: the gates do not match the expert's modules and input sizes, or a file is broken.
    """
    expert_dir = Path(expert_dir)
    _, lora_A, _ = read_adapter(expert_dir)
    metadata = read_json(expert_dir / EXPERT_JSON)
    tensors = _gate_tensors(gates)
    check_gates(tensors, lora_A, "gates")
    atomic_write(expert_dir / GATES, save(tensors))
    metadata["gate_training"] = gate_training
    write_expert_json(expert_dir, metadata)


def _minimal_adapter_config(expert: Expert) -> dict:
    # Only what differs from PEFT's defaults; alpha = s * r reproduces s exactly for power-of-two ranks.
    ranks = expert.ranks
    rank, first = expert.rank, expert.targets[0]
    alphas = {name: expert.scaling[name] * r for name, r in ranks.items()}
    return {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": alphas[first],
        "target_modules": expert.targets,
        "rank_pattern": {name: r for name, r in ranks.items() if r != rank},
        "alpha_pattern": {name: a for name, a in alphas.items() if a != alphas[first]},
        "bias": "none",
    }


def publish_directory(temporary: Path, destination: Path, overwrite: bool) -> None:
    """Move a fully written ``temporary`` directory to ``destination`` (a sibling), replacing it if ``overwrite``."""
    if not destination.exists():
        os.rename(temporary, destination)
        return
    if not overwrite:
        raise FileExistsError(destination)
    # Two renames, so that at every moment either the old or the new complete directory is in place.
    old = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.old-"))
    os.replace(destination, old / destination.name)
    os.rename(temporary, destination)
    shutil.rmtree(old)


def write_expert_files(expert: Expert, directory: Path) -> None:
    """Write every file of ``expert`` into the existing (empty, temporary) ``directory``."""
    weights = {}
    for name in expert.targets:
        weights[f"{PEFT_PREFIX}{name}.lora_A.weight"] = _owned(expert.lora_A[name])
        weights[f"{PEFT_PREFIX}{name}.lora_B.weight"] = _owned(expert.lora_B[name])
    write_json(directory / ADAPTER_CONFIG, expert.adapter_config or _minimal_adapter_config(expert))
    atomic_write(directory / ADAPTER_WEIGHTS, save(weights))
    if expert.gates is not None:
        gates = _gate_tensors(expert.gates)
        check_gates(gates, expert.lora_A, f"gates of expert {expert.name!r}")
        atomic_write(directory / GATES, save(gates))
    if expert.prototypes is not None:
        prototypes = {name: _owned(vector, torch.float32) for name, vector in expert.prototypes.items()}
        atomic_write(directory / PROTOTYPES, save(prototypes))
    write_expert_json(directory, {**expert.metadata, "name": expert.name, "targets": expert.targets})


def save_expert(expert: Expert, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``expert`` as an expert directory at ``path``, atomically; returns the path.

    Raises:
        ExpertFormatError: ``path`` exists and ``overwrite`` is false, or the gates do not match the adapter.
    """
    path = Path(path)
    exists = ExpertFormatError(f"{path} already exists; pass overwrite=True to replace it")
    if path.exists() and not overwrite:
        raise exists
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        write_expert_files(expert, temporary)
        publish_directory(temporary, path, overwrite)
    except FileExistsError:
        raise exists from None
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
    return path
