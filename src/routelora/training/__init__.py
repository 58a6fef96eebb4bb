"""One explicit training loop, shared by pretraining, experts and gates (and by every method that trains)."""

from routelora.training.batches import mixed_batches
from routelora.training.loop import TrainConfig, TrainResult, train
from routelora.training.tally import TrainingCost, add_to_tallies, tally

__all__ = ["TrainConfig", "TrainResult", "TrainingCost", "add_to_tallies", "mixed_batches", "tally", "train"]
