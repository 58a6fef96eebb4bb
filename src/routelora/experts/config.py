"""Settings of stage 1, training one expert, LoRA or (IA)^3 (no torch here: the command line builds its flags from
them)."""

import math
from dataclasses import dataclass

KINDS = ("lora", "ia3")


@dataclass
class ExpertTrainConfig:
    """Expert training settings."""

    kind: str = "lora"
    """``lora``: a low-rank update on every linear of the language model's decoder layers. ``ia3``: (IA)^3 vectors
    (T-Few) on the keys, values and feed-forward down projections (``routelora.experts.ia3``); rank, alpha and
    dropout do not apply to it, and it needs a far higher ``lr`` than LoRA (0.3 on the tiny base: docs/ia3.md)."""
    rank: int = 8
    """LoRA rank r."""
    alpha: float = 16.0
    """LoRA alpha; the update is scaled by alpha / r (PEFT's convention)."""
    dropout: float = 0.0
    """Dropout on the LoRA input during training."""
    lr: float = 1e-3
    """Peak learning rate (the paper: 4e-5 at InternVL2 scale; a tiny model needs far more); with
    ``lora_plus_ratio``, that of ``lora_A``."""
    lora_plus_ratio: float = 1.0
    """LoRA+ (Hayou et al., 2024): ``lora_B``'s learning rate over ``lora_A``'s (1: one rate for both; LoRA+
    suggests 16). Not used by (IA)^3."""
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
    holdout: int = 0
    """The last N samples of the task's training split are kept out of training: a validation split for methods
    that choose a setting on it (task arithmetic's scale)."""
    check_samples: int = 16
    """After training, the expert is scored on the first N of the ``holdout`` samples against its task's trivial
    baseline (one constant answer) and flagged where it is not above it (``routelora.experts.validation``); 0, or
    no holdout, skips the check."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.rank < 1 or self.alpha <= 0 or self.lr <= 0:
            raise ValueError("rank, alpha and lr must be positive")
        if self.lora_plus_ratio <= 0:
            raise ValueError(f"lora_plus_ratio must be positive, got {self.lora_plus_ratio}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.epochs is None and (self.steps is None or self.steps < 1):
            raise ValueError("give steps (positive) or epochs")
        if self.batch_size < 1 or self.grad_accumulation < 1 or self.max_length < 1 or self.weight_decay < 0:
            raise ValueError("batch_size, grad_accumulation and max_length must be positive, weight_decay >= 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.holdout < 0 or self.check_samples < 0:
            raise ValueError(f"holdout and check_samples must be at least 0, got {self.holdout}, {self.check_samples}")
        if self.epochs is not None and self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")

    def total_steps(self, samples: int) -> int:
        """Optimizer steps for a task of ``samples`` training samples."""
        if self.epochs is None:
            return self.steps
        return max(1, math.ceil(self.epochs * samples / (self.batch_size * self.grad_accumulation)))
