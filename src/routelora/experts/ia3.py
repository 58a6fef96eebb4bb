"""(IA)^3 experts (T-Few, Liu et al. 2022): learned vectors that rescale a layer's input or output, as PEFT's
``IA3Config`` trains and saves them.

In PEFT's IA3 a module listed in ``feedforward_modules`` scales its input, ``y = W (l * x)`` (the feed-forward's
down projection: ``l_ff * act(W_1 x)``), and any other target scales its output, ``y = l * (W x + b)`` (keys and
values). The saved tensor ``<module>.ia3_l`` has shape (1, d_in) for the first kind and (d_out, 1) for the
second, so the side is read from the shape. Written by hand where PEFT has no public reader that refuses what
routelora cannot route, with a message naming the field.
"""

from pathlib import Path

import torch

from routelora import io
from routelora.errors import ExpertFormatError
from routelora.experts.peft_adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX, natural_key
from routelora.models.families import TARGET_KINDS

IA3_SUFFIX = ".ia3_l"
IA3_KINDS = ("k", "v", "qkv", "mlp.down")
"""Adapter-target kinds an (IA)^3 expert adapts by default: keys and values (or a fused qkv projection, as in
InternLM2's ``wqkv``, whose queries are then scaled too) and the feed-forward's down projection, as T-Few and PEFT
do."""
FEEDFORWARD_KINDS = ("mlp.down",)
"""Of those, the kinds whose input is scaled (PEFT's ``feedforward_modules``)."""
UNSUPPORTED_IA3_FIELDS = {"fan_in_fan_out": "transposed (Conv1D) weights", "modules_to_save": "fully trained modules"}


def ia3_targets(targets: list[str]) -> tuple[list[str], list[str]]:
    """The (IA)^3 targets among a model's LoRA adapter targets, and which of them are feed-forward (input-scaled)."""
    kinds = {name: TARGET_KINDS.get(name.rsplit(".", 1)[-1]) for name in targets}
    chosen = [name for name in targets if kinds[name] in IA3_KINDS]
    return chosen, [name for name in chosen if kinds[name] in FEEDFORWARD_KINDS]


def is_ia3_config(config: dict) -> bool:
    return config.get("peft_type") == "IA3"


def check_ia3_config(config: dict, path: Path) -> None:
    """Refuse an IA3 adapter_config.json that routelora cannot route."""
    for key, what in UNSUPPORTED_IA3_FIELDS.items():
        if config.get(key):
            raise ExpertFormatError(f"{path}: {key} is set ({what}); routelora only routes plain (IA)^3 adapters")


def split_ia3_tensors(tensors: dict[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """PEFT's flat keys -> (module -> scaling vector, the modules whose input is scaled), in module order."""
    vectors, inputs = {}, []
    for key, tensor in tensors.items():
        if not key.startswith(PEFT_PREFIX) or not key.endswith(IA3_SUFFIX):
            raise ExpertFormatError(
                f"{path}: unexpected tensor {key}; an IA3 adapter (peft_type IA3 in adapter_config.json) holds only "
                "ia3_l vectors"
            )
        name = key[len(PEFT_PREFIX) : -len(IA3_SUFFIX)]
        if tensor.dim() != 2 or 1 not in tensor.shape:
            raise ExpertFormatError(f"{path}: {key} has shape {tuple(tensor.shape)}, expected (d_out, 1) or (1, d_in)")
        vectors[name] = tensor.reshape(-1).float()
        if tensor.shape[0] == 1 and tensor.shape[1] != 1:
            inputs.append(name)
    if not vectors:
        raise ExpertFormatError(f"{path} holds no (IA)^3 weights")
    order = sorted(vectors, key=natural_key)
    return {name: vectors[name] for name in order}, [name for name in order if name in inputs]


def ia3_state(vectors: dict[str, torch.Tensor], inputs: list[str]) -> dict[str, torch.Tensor]:
    """The tensors PEFT saves for these vectors, under its keys and shapes."""
    return {
        f"{PEFT_PREFIX}{name}{IA3_SUFFIX}": vector.reshape(1, -1) if name in inputs else vector.reshape(-1, 1)
        for name, vector in vectors.items()
    }


def minimal_ia3_config(targets: list[str], inputs: list[str]) -> dict:
    """An adapter_config.json PEFT reads back as these (IA)^3 targets, by full module name."""
    return {
        "peft_type": "IA3",
        "target_modules": list(targets),
        "feedforward_modules": list(inputs),
        "fan_in_fan_out": False,
        "init_ia3_weights": True,
    }


def read_ia3_adapter(directory: Path) -> tuple[dict, dict[str, torch.Tensor], list[str]]:
    """(adapter config, module -> scaling vector, input-scaled modules) of a PEFT IA3 adapter directory."""
    config_path = Path(directory) / ADAPTER_CONFIG
    config = io.read_json(config_path, ExpertFormatError)
    check_ia3_config(config, config_path)
    weights = Path(directory) / ADAPTER_WEIGHTS
    vectors, inputs = split_ia3_tensors(io.read_safetensors(weights, ExpertFormatError), weights)
    return config, vectors, inputs
