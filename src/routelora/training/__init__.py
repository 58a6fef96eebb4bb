"""One explicit training loop, shared by pretraining, experts and gates (and by every method that trains)."""

from routelora.training.batches import mixed_batches
from routelora.training.loop import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "mixed_batches", "train"]
