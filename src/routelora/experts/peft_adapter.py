"""PEFT's LoRA adapter directory: its file names and key layout, and the checks that it is a plain LoRA.

Written by hand where PEFT has no public reader that refuses what routelora cannot route (DoRA, biases, trained
embedding rows...) with a message naming the field.
"""

import math
import re
from pathlib import Path

import torch

from routelora import io
from routelora.errors import ExpertFormatError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
LORA_SUFFIXES = {".lora_A.weight": "A", ".lora_B.weight": "B"}

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


def natural_key(name: str) -> list:
    """Sort key putting ``layers.2`` before ``layers.10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def check_plain_lora(config: dict, path: Path) -> None:
    """Refuse any adapter_config.json that is not a plain LoRA routelora can route."""
    if config.get("peft_type") != "LORA":
        raise ExpertFormatError(
            f"{path}: peft_type is {config.get('peft_type')!r}; routelora needs a LoRA or an IA3 adapter"
        )
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
    config = io.read_json(config_path, ExpertFormatError)
    check_plain_lora(config, config_path)
    lora_A, lora_B = split_lora_tensors(
        io.read_safetensors(directory / ADAPTER_WEIGHTS, ExpertFormatError), directory / ADAPTER_WEIGHTS
    )
    return config, lora_A, lora_B
