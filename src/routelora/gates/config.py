"""Settings of stage 2, training an expert's gates (no torch here: the command line builds its flags from them)."""

from dataclasses import dataclass


@dataclass
class GateTrainConfig:
    """Gate training settings; the defaults are PHATGOOSE's."""

    steps: int = 100
    """Optimizer steps (the paper: 100)."""
    lr: float = 5e-3
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.06
    """Share of steps spent warming up."""
    batch_size: int = 16
    """Samples per step."""
    max_length: int = 160
    """Longest training sequence."""
    prototype_samples: int = 256
    """Training prompts averaged into the expert's routing prototypes (0 skips them)."""
    calibration_samples: int = 128
    """Training prompts, from the end of the split and never among the prototypes' prompts, whose distances to the
    task's statistics set the expert's open-world region (:mod:`routelora.gates.acceptance`); 0 skips them."""
    seed: int = 0
    """Seed of batch sampling."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.max_length < 1:
            raise ValueError("steps, batch_size, lr and max_length must be positive")
        if self.prototype_samples < 0 or self.weight_decay < 0 or not 0 <= self.warmup_ratio < 1:
            raise ValueError("prototype_samples and weight_decay must be >= 0, warmup_ratio in [0, 1)")
        if self.calibration_samples < 0 or self.calibration_samples == 1:
            raise ValueError(f"calibration_samples must be 0 or at least 2, got {self.calibration_samples}")
