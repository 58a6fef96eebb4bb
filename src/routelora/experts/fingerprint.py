"""Which base model an expert belongs to, and whether an expert fits a given model.

The base model is identified by a short hash of its config and of a few of its weights (:func:`base_fingerprint`);
an expert fits a model when the fingerprints agree and every adapted module is an adapter target of the model with
the expert's shapes (:func:`check_compatible`).
"""

import hashlib
import json
from typing import TYPE_CHECKING

import torch
from torch import nn

from routelora.errors import RouteloraError
from routelora.models import VLMLayout, get_layout

if TYPE_CHECKING:  # expert.py imports this module
    from routelora.experts.expert import Expert

FINGERPRINT_LENGTH = 16
"""Hex digits kept from the SHA-256: 64 bits, plenty to tell base models apart."""

VOLATILE_CONFIG_KEYS = frozenset(
    {
        "transformers_version",
        "dtype",
        "torch_dtype",
        "use_cache",
        "output_hidden_states",
        "output_attentions",
        "return_dict",
        # Rewritten to "repo--module.Class" when remote code is loaded from the hub, so a local copy would differ.
        "auto_map",
        # None in a model built from its config until it is saved; the model's class name is hashed instead.
        "architectures",
    }
)
"""Config keys that change with how a model was loaded or saved, not with what the model is (keys starting with
an underscore, such as ``_name_or_path`` or ``_attn_implementation``, are dropped too)."""

WEIGHT_ROWS = 64
"""Rows hashed from each fingerprinted weight: enough to tell initialisations apart, cheap at any model size."""


def _stable_config(value: object) -> object:
    if isinstance(value, dict):
        return {
            str(key): _stable_config(item)
            for key, item in value.items()
            if key not in VOLATILE_CONFIG_KEYS and not str(key).startswith("_")
        }
    if isinstance(value, list | tuple):
        return [_stable_config(item) for item in value]
    return value


def _config_bytes(model: nn.Module) -> bytes:
    to_dict = getattr(getattr(model, "config", None), "to_dict", None)
    # Stand-ins and hand-built modules have no transformers config: their class and weights still identify them.
    config = _stable_config(to_dict()) if to_dict is not None else None
    return json.dumps({"class": type(model).__name__, "config": config}, sort_keys=True, default=str).encode()


def _fingerprinted_weights(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The input embedding and the first linear of the decoder layers (not the first *target*: a target pattern
    must not change which base model this is)."""
    weights = []
    get_embeddings = getattr(model, "get_input_embeddings", None)
    try:
        embeddings = get_embeddings() if get_embeddings is not None else None
    except (NotImplementedError, AttributeError):
        embeddings = None
    if isinstance(getattr(embeddings, "weight", None), torch.Tensor):
        weights.append(("input_embeddings", embeddings.weight))
    layout = get_layout(model)
    for name, module in model.get_submodule(layout.decoder_layers).named_modules():
        if isinstance(module, nn.Linear):
            weights.append((f"{layout.decoder_layers}.{name}", module.weight))
            break
    return weights


def base_fingerprint(model: nn.Module) -> str:
    """A short stable hash identifying the base model ``model``.

    Saving and reloading the model (in float32 or bfloat16, on any device) keeps the fingerprint; a model with
    other weights (another seed, a fine-tuned copy) or another architecture gets a different one. Weights are
    rounded to bfloat16 before hashing so that the usual GPU (bf16) and CPU (fp32) loads of one checkpoint agree;
    a float16 load of a float32 checkpoint may not.

    Raises:
        RouteloraError: a fingerprinted weight is not materialised (meta device, offloaded).
    """
    digest = hashlib.sha256(_config_bytes(model))
    for name, weight in _fingerprinted_weights(model):
        if weight.is_meta:
            raise RouteloraError(f"cannot fingerprint the base model: weight {name} is not loaded (meta device)")
        rows = weight.detach()[:WEIGHT_ROWS].to(torch.bfloat16).to(device="cpu", dtype=torch.float32)
        # Not the module name: a target already wrapped (PEFT, a router) names its linear "<target>.base_layer".
        digest.update(str(tuple(weight.shape)).encode())
        digest.update(rows.contiguous().numpy().tobytes())
    return digest.hexdigest()[:FINGERPRINT_LENGTH]


class IncompatibleExpertError(RouteloraError):
    """An expert was trained on another base model, or adapts modules this model lacks or shapes differently."""


def _inside(name: str, path: str) -> bool:
    return name == path or name.startswith(path + ".")


def target_problem(model: nn.Module, layout: VLMLayout, name: str) -> str | None:
    """Why module ``name`` cannot carry an expert's LoRA in ``model``, or None when it is an adapter target."""
    if name in layout.targets:
        return None
    try:
        model.get_submodule(name)
    except AttributeError:
        return f"module {name} does not exist in this model ({type(model).__name__})"
    for what, paths in (("vision encoder", layout.vision), ("projector", layout.projector)):
        for path in paths:
            if _inside(name, path):
                return f"module {name} is in the {what} ({path}); routelora only adapts the language model"
    if _inside(name, layout.decoder_layers):
        return (
            f"module {name} is not an adapter target (an nn.Linear inside {layout.decoder_layers} matching the "
            "model's target pattern)"
        )
    return (
        f"module {name} is outside the language model's decoder layers ({layout.decoder_layers}); routelora only "
        "adapts the linears inside them, never lm_head, the vision encoder or the projector"
    )


def _linear_shape(module: nn.Module) -> tuple[int, int]:
    # A target already wrapped (PEFT's LoraLayer, a routed or gated layer) keeps the original under ``base_layer``
    # or ``base``.
    while not isinstance(module, nn.Linear):
        inner = getattr(module, "base_layer", None) or getattr(module, "base", None)
        if not isinstance(inner, nn.Module):
            break
        module = inner
    if not isinstance(getattr(module, "in_features", None), int):
        raise IncompatibleExpertError(f"{type(module).__name__} is not a linear layer")
    return module.out_features, module.in_features


def check_shapes(
    model: nn.Module,
    lora_A: dict[str, torch.Tensor],
    lora_B: dict[str, torch.Tensor],
    gates: dict[str, torch.Tensor] | None,
    where: str,
) -> None:
    """Every adapted module is an adapter target of ``model`` with matching shapes; ``where`` prefixes the error."""
    layout = get_layout(model)
    for name, a in lora_A.items():
        problem = target_problem(model, layout, name)
        if problem:
            raise IncompatibleExpertError(f"{where}: {problem}")
        try:
            d_out, d_in = _linear_shape(model.get_submodule(name))
        except IncompatibleExpertError as error:
            raise IncompatibleExpertError(f"{where}: module {name}: {error}") from None
        rank = a.shape[0]
        expected = {"lora_A": (rank, d_in), "lora_B": (d_out, rank), "gate": (d_in,)}
        found = {"lora_A": a, "lora_B": lora_B[name], "gate": (gates or {}).get(name)}
        for part, tensor in found.items():
            if tensor is not None and tuple(tensor.shape) != expected[part]:
                raise IncompatibleExpertError(
                    f"{where}: module {name} is {d_out}x{d_in} (d_out x d_in) in this model, but the {part} is "
                    f"{tuple(tensor.shape)} instead of {expected[part]}"
                )


def check_ia3_shapes(
    model: nn.Module,
    vectors: dict[str, torch.Tensor],
    inputs: tuple[str, ...] | list[str],
    gates: dict[str, torch.Tensor] | None,
    where: str,
) -> None:
    """Every (IA)^3 module is an adapter target of ``model``, its vector as wide as what it scales."""
    layout = get_layout(model)
    for name, vector in vectors.items():
        problem = target_problem(model, layout, name)
        if problem:
            raise IncompatibleExpertError(f"{where}: {problem}")
        d_out, d_in = _linear_shape(model.get_submodule(name))
        side, size = ("input", d_in) if name in inputs else ("output", d_out)
        if tuple(vector.shape) != (size,):
            raise IncompatibleExpertError(
                f"{where}: module {name} is {d_out}x{d_in} (d_out x d_in) in this model, but its (IA)^3 vector, "
                f"which scales the {side}, has shape {tuple(vector.shape)} instead of ({size},)"
            )
        gate = (gates or {}).get(name)
        if gate is not None and tuple(gate.shape) != (d_in,):
            raise IncompatibleExpertError(
                f"{where}: module {name} takes {d_in} inputs, but its gate is {tuple(gate.shape)}"
            )


def check_compatible(expert: "Expert", model: nn.Module, fingerprint: str | None = None) -> None:
    """Refuse an expert that does not fit ``model``.

    Args:
        expert: a loaded expert.
        model: the base model it is to be used with.
        fingerprint: ``base_fingerprint(model)`` when already computed (checking many experts).

    Raises:
        IncompatibleExpertError: the expert was trained on another base model, or one of its modules (the first is
            named) is not an adapter target of ``model`` or has other shapes.
    """
    where = f"expert {expert.name!r}" + (f" ({expert.path})" if expert.path else "")
    expected = expert.metadata.get("base_fingerprint")
    actual = fingerprint or base_fingerprint(model)
    if expected != actual:
        raise IncompatibleExpertError(
            f"{where} was trained on another base model: fingerprint {expected}, this model is {actual}"
        )
    if expert.ia3 is not None:
        check_ia3_shapes(model, expert.ia3, expert.ia3_input, expert.gates, where)
    else:
        check_shapes(model, expert.lora_A, expert.lora_B, expert.gates, where)
