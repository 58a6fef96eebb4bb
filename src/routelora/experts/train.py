"""Stage 1: train one LoRA expert on one task's data, on the language model's adapter targets only (PEFT)."""

import copy
import dataclasses
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from peft import IA3Config, LoraConfig, get_peft_model, get_peft_model_state_dict
from torch import nn

from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.data.task import TaskConfig
from routelora.experts.config import ExpertTrainConfig
from routelora.experts.expert import Expert, expert_metadata
from routelora.experts.fingerprint import base_fingerprint
from routelora.experts.ia3 import ia3_targets, split_ia3_tensors
from routelora.experts.peft_adapter import lora_scalings, natural_key, split_lora_tensors
from routelora.experts.validation import check_against_baseline
from routelora.models.layout import get_layout
from routelora.training import TrainConfig, TrainResult, mixed_batches, train
from routelora.training.checkpoint import Checkpointing


def train_expert(
    model: nn.Module,
    processor,
    task: TaskConfig,
    config: ExpertTrainConfig | None = None,
    progress: bool = True,
    init: Expert | None = None,
    extra_samples: list | None = None,
    checkpoint: Checkpointing | None = None,
) -> tuple[Expert, TrainResult]:
    """Train an expert for ``task`` with PEFT, a LoRA or (``config.kind="ia3"``) an (IA)^3 one, and return it in
    memory (save it with ``save_expert`` or ``ExpertLibrary.add``, each of which writes it once).

    ``init``: a LoRA expert of the same targets and rank to start from instead of PEFT's initialisation (one LoRA
    trained on and on, task after task). ``extra_samples``: more training samples mixed into the task's own, in
    proportion to their number (a replay buffer). ``checkpoint``: save every N steps and resume from the last save
    (:mod:`routelora.training.checkpoint`).

    The base model is left as it was: the adapter layers are unloaded after training.
    """
    config = config or ExpertTrainConfig()
    layout = get_layout(model)
    fingerprint = base_fingerprint(model)
    samples, held = split_holdout(task, config)
    targets, feedforward = ia3_targets(layout.targets) if config.kind == "ia3" else (layout.targets, [])
    if config.kind == "ia3":
        adapter = IA3Config(target_modules=targets, feedforward_modules=feedforward, init_ia3_weights=True)
    else:
        adapter = LoraConfig(
            r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=targets, bias="none"
        )
    torch.manual_seed(config.seed)
    peft_model = get_peft_model(model, adapter)
    try:
        if init is not None:
            _start_from(peft_model, init)
        collator = VLMCollator(processor, max_length=config.max_length)
        pools = [samples, extra_samples] if extra_samples else [samples]
        batches = mixed_batches(pools, collator, config.batch_size, seed=config.seed)
        schedule = TrainConfig(
            steps=config.total_steps(len(samples)),
            lr=config.lr,
            weight_decay=config.weight_decay,
            warmup_ratio=config.warmup_ratio,
            grad_accumulation=config.grad_accumulation,
            seed=config.seed,
        )
        trainable = _parameter_groups(peft_model, config)
        if checkpoint is not None:  # a checkpoint of another recipe, task or base is refused
            identity = {"expert": asdict(config), "task": str(task.source), "base": fingerprint}
            checkpoint = dataclasses.replace(checkpoint, identity=identity)
        shown = f"expert {task.name}" if progress else False
        result = train(peft_model, trainable, batches, schedule, progress=shown, checkpoint=checkpoint)
        check = _check(peft_model, processor, task, samples, held[: config.check_samples], extra_samples)
        # the adapter's tensors under the keys PEFT's save_pretrained would write, copied before unloading
        tensors = {key: value.detach().cpu().clone() for key, value in get_peft_model_state_dict(peft_model).items()}
        adapter_config = _adapter_config(peft_model)
    finally:
        peft_model.unload()  # take the adapter layers out again; the base weights were never changed
    training = {**asdict(config), "steps_run": schedule.steps, "truncated": collator.stats.truncated}
    training["validation_check"] = check
    metadata = expert_metadata(task.name, task.name, fingerprint, targets, config.rank, config.alpha, training)
    if config.kind == "ia3":
        vectors, inputs = split_ia3_tensors(tensors, Path(f"<expert {task.name}>"))
        sizes = {name: model.get_submodule(name).in_features for name in targets}
        metadata |= {"kind": "ia3", "input_sizes": sizes, "rank": None, "alpha": None}
        expert = Expert(task.name, None, {}, {}, {}, metadata=metadata, adapter_config=adapter_config)
        expert.ia3 = {name: vectors[name] for name in targets}
        expert.ia3_input = tuple(name for name in targets if name in inputs)
        expert.training_log = asdict(result)
        return expert, result
    lora_A, lora_B = split_lora_tensors(tensors, Path(f"<expert {task.name}>"))
    lora_A = {name: lora_A[name] for name in layout.targets}
    lora_B = {name: lora_B[name] for name in layout.targets}
    scaling = lora_scalings(adapter_config, {n: a.shape[0] for n, a in lora_A.items()}, Path("adapter_config"))
    expert = Expert(
        task.name,
        None,
        lora_A,
        lora_B,
        scaling,
        metadata=metadata,
        adapter_config=adapter_config,
        training_log=asdict(result),
    )
    return expert, result


def _parameter_groups(peft_model, config: ExpertTrainConfig) -> list[dict]:
    """The adapter's trainable parameters; under LoRA+ (``lora_plus_ratio`` != 1) ``lora_B``'s in a group of
    their own at that multiple of the learning rate."""
    named = [(name, p) for name, p in peft_model.named_parameters() if p.requires_grad]
    if config.kind != "lora" or config.lora_plus_ratio == 1.0:
        return [{"params": [p for _, p in named]}]
    return [
        {"params": [p for name, p in named if ".lora_B." not in name]},
        {"params": [p for name, p in named if ".lora_B." in name], "lr_scale": config.lora_plus_ratio},
    ]


def training_samples(task: TaskConfig, config: ExpertTrainConfig) -> list:
    """``task``'s training samples less the last ``config.holdout`` (kept out as a validation split)."""
    return split_holdout(task, config)[0]


def split_holdout(task: TaskConfig, config: ExpertTrainConfig) -> tuple[list, list]:
    """``task``'s training split as (training samples, the last ``config.holdout`` held out)."""
    samples = load_split(task, "train").samples
    if config.holdout >= len(samples):
        raise ValueError(f"task {task.name}: holdout {config.holdout} leaves no training sample of its {len(samples)}")
    cut = len(samples) - config.holdout
    return samples[:cut], samples[cut:]


def _check(model, processor, task: TaskConfig, samples: list, validation: list, extra) -> dict:
    """The expert against its task's trivial baseline (:func:`check_against_baseline`), or why it was not
    checked: no validation samples, or an adapter of several tasks' data (a replay buffer, multi-task)."""
    if extra:
        return {"skipped": "trained on other tasks' samples too"}
    if not validation:
        return {"skipped": "no validation samples (holdout or check_samples is 0)"}
    # a collator of its own, as evaluation's: the training one counts the training sequences it truncates
    return check_against_baseline(model, VLMCollator(processor), task, samples, validation)


def _start_from(peft_model, init: Expert) -> None:
    """Copy ``init``'s LoRA factors into the freshly made adapter, refusing one of other targets or ranks."""
    for name in init.targets:
        layer = peft_model.get_base_model().get_submodule(name)
        for part, tensor in (("lora_A", init.lora_A[name]), ("lora_B", init.lora_B[name])):
            weight = getattr(layer, part)["default"].weight
            if weight.shape != tensor.shape:
                raise ValueError(
                    f"init expert {init.name}: {name}.{part} is {tuple(tensor.shape)}, not {tuple(weight.shape)}"
                )
            with torch.no_grad():
                weight.copy_(tensor)


def _adapter_config(peft_model) -> dict:
    """``adapter_config.json`` as ``PeftModel.save_pretrained`` writes it (inference mode on, the base model's
    class for ``AutoPeftModel``), by PEFT's own ``PeftConfig.save_pretrained`` into a temporary folder."""
    config = copy.deepcopy(peft_model.peft_config["default"])
    config.inference_mode = True
    base = peft_model.get_base_model()
    if config.base_model_name_or_path is None:
        config.base_model_name_or_path = base.__dict__.get("name_or_path") or None
    mapping = None
    if config.task_type is None:
        mapping = {"base_model_class": type(base).__name__, "parent_library": type(base).__module__}
    with tempfile.TemporaryDirectory(prefix="routelora-adapter-config-") as folder:
        config.save_pretrained(folder, auto_mapping_dict=mapping)
        written = json.loads((Path(folder) / "adapter_config.json").read_text())
    # PEFT keeps module lists as sets and writes them in set order, which changes from process to process (string
    # hashing is randomised): in module order, the same training writes the same file
    for key in ("target_modules", "feedforward_modules"):
        if isinstance(written.get(key), list):
            written[key] = sorted(written[key], key=natural_key)
    return written
