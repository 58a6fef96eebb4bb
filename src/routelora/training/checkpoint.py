"""Checkpoints of a training run, so that a run killed part-way (even by SIGKILL) continues where it stopped and
ends with the very weights an uninterrupted run would have.

A checkpoint holds everything the next step depends on: the trainable parameters, the optimiser's state, the
scheduler's, the random number generators' and the data position (the number of batches drawn; the batch stream is
seeded, so it is replayed up to there). It is one folder, written beside the old one and renamed over it, so a kill
while saving leaves the previous checkpoint whole. Tensors go to safetensors and the rest to JSON.
"""

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from routelora import io
from routelora.errors import RouteloraError

STATE_JSON = "checkpoint.json"
TENSORS = "tensors.safetensors"


@dataclass
class Checkpointing:
    """Where and how often a training run saves, and whether it resumes."""

    folder: Path
    """The checkpoint folder (one checkpoint, replaced at every save)."""
    every: int = 100
    """Save after every this many optimizer steps."""
    resume: bool = True
    """Continue from the checkpoint in ``folder`` when there is one."""
    identity: dict = field(default_factory=dict)
    """What else the run depends on (the expert's recipe, the task, the base model): a checkpoint of another
    identity is refused. Set by the training functions."""

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if self.every < 1:
            raise ValueError(f"checkpoint every must be at least 1 step, got {self.every}")


@dataclass
class Resumed:
    """What a checkpoint gives back to the loop."""

    step: int
    losses: list[float]
    samples: int


def save_checkpoint(folder: Path, step: int, parameters, optimizer, scheduler, losses, samples, run: dict) -> None:
    """Write the state after ``step`` optimizer steps (atomically replacing the checkpoint in ``folder``)."""
    tensors = {f"parameter.{i}": p.detach() for i, p in enumerate(parameters)}
    optimizer_state = optimizer.state_dict()
    for index, values in optimizer_state["state"].items():
        for key, value in values.items():
            tensors[f"optimizer.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for device, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{device}"] = state
    document = {
        "step": step,
        "losses": losses,
        "samples": samples,
        "run": run,
        "optimizer_groups": optimizer_state["param_groups"],
        "optimizer_keys": {str(i): sorted(values) for i, values in optimizer_state["state"].items()},
        "scheduler": scheduler.state_dict(),
        "python_random": _jsonable(random.getstate()),
    }
    staging = io.staging_directory(folder)
    try:
        io.write_safetensors(staging / TENSORS, tensors)
        io.write_json(staging / STATE_JSON, document, indent=1)
        io.publish_directory(staging, folder, overwrite=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def load_checkpoint(folder: Path, parameters, optimizer, scheduler, run: dict) -> Resumed | None:
    """Restore the run from ``folder`` (None when there is no checkpoint). Refuses a checkpoint of another run."""
    if not (folder / STATE_JSON).is_file():
        # a kill between the two renames that replace a checkpoint leaves the previous one in the side folder
        previous = sorted(folder.parent.glob(f".{folder.name}.old-*/{folder.name}/{STATE_JSON}"))
        if not previous:
            return None
        folder = previous[-1].parent
    document = io.read_json(folder / STATE_JSON)
    if document.get("run") != json.loads(json.dumps(run, default=str)):
        raise RouteloraError(
            f"{folder}: this checkpoint is of another run (other settings or parameters); remove the folder to "
            "start over, or resume with the settings it was made with"
        )
    tensors = io.read_safetensors(folder / TENSORS)
    with torch.no_grad():
        for i, parameter in enumerate(parameters):
            parameter.copy_(tensors[f"parameter.{i}"])
    keys = document["optimizer_keys"]
    state = {int(i): {key: tensors[f"optimizer.{i}.{key}"] for key in names} for i, names in keys.items()}
    optimizer.load_state_dict({"state": state, "param_groups": document["optimizer_groups"]})
    scheduler.load_state_dict(document["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        cuda = [tensors[key] for key in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    random.setstate(_tuples(document["python_random"]))
    return Resumed(document["step"], list(document["losses"]), int(document["samples"]))


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, tuple | list) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
