"""The training loop: AdamW, warm-up then cosine (or constant) schedule, gradient accumulation, a loss log."""

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

from routelora import io
from routelora.errors import RouteloraError
from routelora.training.checkpoint import Checkpointing, load_checkpoint, save_checkpoint
from routelora.training.distributed import make_accelerator
from routelora.training.tally import TrainingCost, add_to_tallies

SCHEDULES = ("cosine", "constant")


class TrainingDivergedError(RouteloraError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Optimisation settings of one training run."""

    steps: int = 100
    """Optimizer steps."""
    lr: float = 1e-4
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.06
    """Share of the steps spent warming the learning rate up from zero."""
    schedule: str = "cosine"
    """``cosine`` decay to zero after warm-up, or ``constant``."""
    grad_accumulation: int = 1
    """Batches whose gradients add up into one optimizer step."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping; None turns it off."""
    seed: int = 0
    """Seed of everything random in the run (dropout, sampling)."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be positive, got {self.steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.grad_accumulation < 1:
            raise ValueError(f"grad_accumulation must be positive, got {self.grad_accumulation}")


@dataclass
class TrainResult:
    """What a run did."""

    losses: list[float] = field(default_factory=list)
    """Mean loss of each optimizer step."""
    seconds: float = 0.0
    """Wall-clock time of the loop."""
    samples: int = 0
    """Training samples seen (rows of every micro-batch)."""
    resumed_from: int = 0
    """The step a resumed run continued from (0: it ran from the start); ``seconds`` counts the part it ran."""
    trainable: int = 0
    """Trainable parameters."""
    config: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Write the loss log as JSON."""
        io.write_json(path, asdict(self), indent=1)


def train(
    model: nn.Module,
    parameters: Iterable[nn.Parameter] | Iterable[dict],
    batches: Iterator[dict[str, torch.Tensor]],
    config: TrainConfig,
    progress: bool | str = True,
    accelerator: Accelerator | None = None,
    checkpoint: Checkpointing | None = None,
) -> TrainResult:
    """Train ``parameters`` of ``model`` on ``batches`` (each with ``labels``) for ``config.steps`` steps.

    ``parameters``: the parameters, or groups of them as dicts of ``params`` and ``lr_scale`` (each group's peak
    learning rate is ``config.lr`` times its scale, as LoRA+ gives ``lora_B`` a higher one than ``lora_A``).

    Only ``parameters`` are optimised; the caller decides what is trainable (LoRA weights, gate vectors, the whole
    language model...). ``progress`` may be a description for the progress bar. With ``checkpoint``, the run saves
    every ``checkpoint.every`` steps and, resuming, continues from the last save with the same result as a run
    that was never stopped (``batches`` must be the same seeded stream: it is replayed up to the saved position).

    Raises:
        TrainingDivergedError: a step's loss is NaN or infinite (nothing further is saved).
    """
    torch.manual_seed(config.seed)
    accelerator = accelerator or make_accelerator(config.grad_accumulation)
    groups = parameter_groups(parameters, config.lr)
    trainable = [p for group in groups for p in group["params"]]
    if not trainable:
        raise ValueError("nothing to train: no parameter requires a gradient")
    # The fused kernel is one call for all parameters (7% of a tiny-model step on CPU); it needs them on one backend.
    fused = len({p.device.type for p in trainable}) == 1 and trainable[0].device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    warmup = math.ceil(config.warmup_ratio * config.steps)
    if config.schedule == "cosine":
        scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, config.steps)
    else:
        scheduler = get_constant_schedule_with_warmup(optimizer, warmup)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    result = TrainResult(config=asdict(config), trainable=sum(p.numel() for p in trainable))
    run = {"config": asdict(config), "parameters": [list(p.shape) for p in trainable]}
    run["identity"] = checkpoint.identity if checkpoint is not None else {}
    run["processes"] = accelerator.num_processes
    first = 0
    if checkpoint is not None and checkpoint.resume:
        resumed = load_checkpoint(checkpoint.folder, trainable, optimizer, scheduler, run)
        if resumed is not None:
            first, result.losses, result.samples = resumed.step, resumed.losses, resumed.samples
            result.resumed_from = first
            for _ in range(first * config.grad_accumulation):  # the data position: the seeded stream, replayed
                next(batches)
    description = progress if isinstance(progress, str) else "training"
    bar = tqdm(total=config.steps, initial=first, desc=description, disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for step in range(first, config.steps):
            step_loss = 0.0
            for _ in range(config.grad_accumulation):
                batch = next(batches)
                result.samples += len(batch["labels"])
                batch = _shard(batch, accelerator.process_index, accelerator.num_processes)
                batch = {key: value.to(accelerator.device) for key, value in batch.items()}
                with accelerator.accumulate(model):
                    # No KV cache in training: nothing reads it, and packed rows (position ids, no attention mask)
                    # are only kept apart without one.
                    loss = model(**batch, use_cache=False).loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and config.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                # the mean over the processes: every process sees the same loss, so all stop together on a NaN
                step_loss += accelerator.reduce(loss.detach(), "mean").item() / config.grad_accumulation
            if not math.isfinite(step_loss):
                raise TrainingDivergedError(
                    f"training diverged at step {step + 1}: the loss is {step_loss}; lower the learning rate (lr "
                    f"{config.lr}) or check the data; nothing of this run was saved as finished"
                )
            result.losses.append(step_loss)
            bar.update()
            bar.set_postfix(loss=f"{step_loss:.3f}")
            done = step + 1
            if checkpoint is not None and done % checkpoint.every == 0 and done < config.steps:
                if accelerator.is_main_process:  # the processes hold the same weights; one writes them
                    save_checkpoint(
                        checkpoint.folder, done, trainable, optimizer, scheduler, result.losses, result.samples, run
                    )
                accelerator.wait_for_everyone()
    finally:
        bar.close()
        model.eval()
    result.seconds = time.perf_counter() - start
    add_to_tallies(TrainingCost(result.seconds, result.samples, config.steps, 1, result.trainable))
    return result


def parameter_groups(parameters: Iterable, lr: float) -> list[dict]:
    """The optimizer's parameter groups: one of every parameter that requires a gradient, or each given group
    (``{"params": [...], "lr_scale": s}``) at ``lr * s``; groups left empty are dropped."""
    items = list(parameters)
    if not all(isinstance(item, dict) for item in items):
        items = [{"params": items}]
    groups = []
    for item in items:
        scale = item.get("lr_scale", 1.0)
        if scale <= 0:
            raise ValueError(f"a parameter group's lr_scale must be positive, got {scale}")
        params = [p for p in item["params"] if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": lr * scale})
    return groups


def _shard(batch: dict[str, torch.Tensor], index: int, processes: int) -> dict[str, torch.Tensor]:
    """This process's rows of a global batch: under ``accelerate launch`` every process draws the same seeded
    batches and trains on its own contiguous share of each, so that N processes see the global batch one process
    would (DDP then averages their gradients)."""
    if processes == 1:
        return batch
    rows = len(batch["labels"])
    if rows % processes:
        raise RouteloraError(f"a batch of {rows} rows cannot be split over {processes} processes; make the batch "
                             f"size a multiple of {processes}")  # fmt: skip
    share = rows // processes
    return {key: value[index * share : (index + 1) * share] for key, value in batch.items()}
