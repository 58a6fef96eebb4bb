"""Load a VLM and its processor by local path or hub id, through transformers' Auto classes."""

import json
import logging
import os
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
)

from routelora.errors import ModelNotFoundError, RemoteCodeRequiredError, RouteloraError
from routelora.models.layout import resolve_layout

logger = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def parse_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """A torch dtype from a name; by default bfloat16 on GPU and float32 on CPU (bf16 matmuls are slow there)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise RouteloraError(f"unknown dtype '{dtype}'; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def default_device(device: str | None = None) -> str:
    """``device`` if given, else this process's GPU where one is visible (``cuda:LOCAL_RANK`` under ``accelerate
    launch`` or torchrun, so that each process loads onto its own), else ``cpu``."""
    if device:
        return device
    if not torch.cuda.is_available():
        return "cpu"
    rank = os.environ.get("LOCAL_RANK")
    return f"cuda:{rank}" if rank is not None and rank.isdigit() else "cuda"


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _check_local_checkpoint(path: Path, trust_remote_code: bool) -> None:
    if not path.is_dir():
        raise ModelNotFoundError(f"{path} is a file, not a model directory; pass the folder that holds config.json")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelNotFoundError(f"{path} is not a model directory: it has no config.json")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise ModelNotFoundError(f"{config_file} is not valid JSON (line {error.lineno}: {error.msg})") from None
    model_type = config.get("model_type")
    if config.get("auto_map") and model_type not in CONFIG_MAPPING and not trust_remote_code:
        raise RemoteCodeRequiredError(
            f"{path} needs code from its own repository (model_type {model_type!r} is not in transformers); "
            "if you trust it, pass trust_remote_code=True (CLI: --trust-remote-code)"
        )
    if not any(path.glob("*.safetensors")):
        others = sorted(p.name for p in path.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt"})
        found = f" (found {', '.join(others)}; convert them to safetensors first)" if others else ""
        raise ModelNotFoundError(f"{path} has no safetensors weights{found}; routelora never unpickles weights")


def _model_class(config):
    config_class = type(config).__name__
    model_type = getattr(config, "model_type", None)
    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return AutoModelForImageTextToText
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return AutoModelForCausalLM
    logger.debug("config %s has no image-text-to-text class; using AutoModel", config_class)
    return AutoModel


def resolve_source(name_or_path: str | Path, trust_remote_code: bool = False) -> str:
    """The local directory (checked) or hub id to load from."""
    name = str(name_or_path)
    local = Path(name).expanduser()
    if local.exists():
        _check_local_checkpoint(local, trust_remote_code)
        return str(local)
    if _looks_like_path(name):
        raise ModelNotFoundError(f"model path {name} does not exist")
    return name


def load_config(name_or_path: str | Path, trust_remote_code: bool = False):
    """The transformers config of a checkpoint, with routelora's errors for missing or remote-code checkpoints."""
    name = resolve_source(name_or_path, trust_remote_code)
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except ValueError as error:
        if "trust_remote_code" in str(error):
            raise RemoteCodeRequiredError(
                f"{name} needs code from its own repository; if you trust it, pass trust_remote_code=True "
                "(CLI: --trust-remote-code)"
            ) from error
        raise RouteloraError(f"cannot read the config of {name}: {error}") from error
    except OSError as error:
        raise ModelNotFoundError(
            f"{name} is neither a local model directory nor a hub model that could be fetched ({error})"
        ) from error


def load_processor(name_or_path: str | Path, trust_remote_code: bool = False):
    """The checkpoint's processor, else its tokenizer, else None (a processor is optional for inspection)."""
    for loader in (AutoProcessor, AutoTokenizer):
        try:
            return loader.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
        except (OSError, ValueError, TypeError, KeyError) as error:
            logger.debug("%s could not load from %s: %s", loader.__name__, name_or_path, error)
    logger.warning("no processor or tokenizer found in %s", name_or_path)
    return None


def load_vlm(
    name_or_path: str | Path,
    trust_remote_code: bool = False,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    *,
    language_model: str | None = None,
    target_pattern: str | None = None,
    with_processor: bool = True,
) -> tuple[nn.Module, object | None]:
    """Load a VLM and its processor, and resolve where its language model and adapter targets are.

    Args:
        name_or_path: local checkpoint directory or hub id.
        trust_remote_code: allow the checkpoint's own modelling code (needed for the paper's InternVL2).
        dtype: ``float32``, ``bfloat16``... (default: bfloat16 on GPU, float32 on CPU).
        device: ``cpu``, ``cuda``, ``cuda:1``... (default: cuda where available).
        language_model: path of the language model's decoder stack, for architectures routelora does not know.
        target_pattern: regular expression restricting the adapter targets (full linear names).
        with_processor: also load the processor (or tokenizer); None is returned where there is none.

    Returns:
        ``(model, processor)``; the resolved :class:`~routelora.models.layout.VLMLayout` is on
        ``model.routelora_layout``.
    """
    device = default_device(device)
    torch_dtype = parse_dtype(dtype, device)
    source = resolve_source(name_or_path, trust_remote_code)
    config = load_config(source, trust_remote_code)
    model_class = _model_class(config)
    try:
        model = model_class.from_pretrained(
            source, config=config, dtype=torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except OSError as error:
        raise ModelNotFoundError(f"cannot load the weights of {source}: {error}") from error
    model.to(device)
    model.eval()
    model.routelora_layout = resolve_layout(model, language_model, target_pattern)
    processor = load_processor(source, trust_remote_code) if with_processor else None
    return model, processor
