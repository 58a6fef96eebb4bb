"""Stage 1: train one LoRA expert on one task's data, on the language model's adapter targets only (PEFT)."""

import datetime
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

import routelora
from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.data.task import TaskConfig
from routelora.errors import RouteloraError
from routelora.experts.expert import write_expert_json
from routelora.experts.fingerprint import base_fingerprint
from routelora.models.layout import get_layout
from routelora.training import TrainConfig, TrainResult, mixed_batches, train


@dataclass
class ExpertTrainConfig:
    """LoRA expert training settings."""

    rank: int = 8
    """LoRA rank r."""
    alpha: float = 16.0
    """LoRA alpha; the update is scaled by alpha / r (PEFT's convention)."""
    dropout: float = 0.0
    """Dropout on the LoRA input during training."""
    lr: float = 1e-3
    """Peak learning rate (the paper: 4e-5 at InternVL2 scale; a tiny model needs far more)."""
    steps: int | None = 300
    """Optimizer steps; ignored when ``epochs`` is given."""
    epochs: float | None = None
    """Passes over the task's training data (sets the number of steps)."""
    batch_size: int = 16
    """Samples per micro-batch."""
    grad_accumulation: int = 1
    """Micro-batches per optimizer step."""
    warmup_ratio: float = 0.06
    """Share of steps spent warming up before the cosine decay."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_length: int = 160
    """Longest training sequence; longer answers are cut and counted."""
    seed: int = 0
    """Seed of LoRA initialisation and batch sampling."""

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or self.lr <= 0:
            raise ValueError("rank, alpha and lr must be positive")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.epochs is None and (self.steps is None or self.steps < 1):
            raise ValueError("give steps (positive) or epochs")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")

    def total_steps(self, samples: int) -> int:
        """Optimizer steps for a task of ``samples`` training samples."""
        if self.epochs is None:
            return self.steps
        return max(1, math.ceil(self.epochs * samples / (self.batch_size * self.grad_accumulation)))


def train_expert(
    model: nn.Module,
    processor,
    task: TaskConfig,
    out_dir: str | Path,
    config: ExpertTrainConfig | None = None,
    progress: bool = True,
) -> tuple[Path, TrainResult]:
    """Train a LoRA expert for ``task`` and write it to ``out_dir`` (PEFT adapter files + ``expert.json``).

    The base model is left as it was: the LoRA layers are unloaded after saving.
    """
    config = config or ExpertTrainConfig()
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()):
        raise RouteloraError(f"{out} exists and is not empty; choose another --out or remove it")
    layout = get_layout(model)
    fingerprint = base_fingerprint(model)
    samples = load_split(task, "train").samples
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=layout.targets,
        bias="none",
    )
    torch.manual_seed(config.seed)
    peft_model = get_peft_model(model, lora)
    staging = None
    try:
        collator = VLMCollator(processor, max_length=config.max_length)
        batches = mixed_batches([samples], collator, config.batch_size, seed=config.seed)
        schedule = TrainConfig(
            steps=config.total_steps(len(samples)),
            lr=config.lr,
            weight_decay=config.weight_decay,
            warmup_ratio=config.warmup_ratio,
            grad_accumulation=config.grad_accumulation,
            seed=config.seed,
        )
        trainable = [p for p in peft_model.parameters() if p.requires_grad]
        result = train(peft_model, trainable, batches, schedule, progress=f"expert {task.name}" if progress else False)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        peft_model.save_pretrained(staging)
        result.save(staging / "loss_log.json")
        write_expert_json(
            staging,
            {
                "name": task.name,
                "task": task.name,
                "base_fingerprint": fingerprint,
                "rank": config.rank,
                "alpha": config.alpha,
                "targets": layout.targets,
                "training": {**asdict(config), "steps_run": schedule.steps, "truncated": collator.stats.truncated},
                "gate_training": None,
                "scores": {},
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "routelora_version": routelora.__version__,
            },
        )
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
        staging = None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        peft_model.unload()  # take the LoRA layers out again; the base weights were never changed
    return out, result
