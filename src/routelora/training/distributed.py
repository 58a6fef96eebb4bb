"""The processes a command runs in, from accelerate: one, or several under ``accelerate launch``.

Written as one helper because accelerate picks the CPU backend (gloo) only when asked for the CPU: on a machine
without CUDA, routelora asks for it, so that ``accelerate launch --multi_gpu --num_processes N`` (accelerate's
torchrun launcher) gives N CPU processes in one gloo group, the way the test suite runs DDP.
"""

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, parse_flag_from_env


def on_cpu() -> bool:
    """Whether accelerate should run on the CPU: no CUDA here, or ``ACCELERATE_USE_CPU`` set."""
    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()


def process_state() -> PartialState:
    """accelerate's shared state of this process (its index, the number of processes, the device)."""
    return PartialState(cpu=on_cpu())


def make_accelerator(gradient_accumulation_steps: int = 1) -> Accelerator:
    """An Accelerator for one training run, on the state of :func:`process_state`.

    ``split_batches``: the training loop splits each global batch over the processes itself, so a step is one
    step of the schedule whatever the number of processes (otherwise accelerate advances the scheduler once per
    process and step, for loaders that give each process a whole batch).
    """
    process_state()
    return Accelerator(
        gradient_accumulation_steps=gradient_accumulation_steps,
        cpu=on_cpu(),
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
