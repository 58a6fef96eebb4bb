"""``routelora expert train`` and ``routelora gate train``: the two training stages of one task."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from routelora.cli.checkpoints import add_checkpoint_arguments, checkpointing, finished
from routelora.cli.common import add_model_arguments, model_load_options
from routelora.cli.config_args import add_config_arguments, config_from_arguments

if TYPE_CHECKING:
    from routelora.experts.config import ExpertTrainConfig
    from routelora.gates.config import GateTrainConfig


def expert_train(base: str, task: Path, out: Path, config: ExpertTrainConfig, checkpoint=None, **load_options) -> Path:
    """Train a LoRA expert for one task on the base model's language model.

    Args:
        base: base model directory or hub id.
        task: the task's YAML file (its train split is used, and nothing else).
        out: expert directory to create.
        config: LoRA and optimisation settings.
        checkpoint: a ``Checkpointing`` (save every N steps, resume a killed run), or None.
        load_options: ``trust_remote_code``, ``dtype``, ``device``, ``language_model``, ``target_pattern``.
    """
    from routelora.data.task import load_task
    from routelora.errors import RouteloraError
    from routelora.experts import save_expert
    from routelora.experts.train import train_expert
    from routelora.models import load_vlm
    from routelora.training.distributed import process_state

    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise RouteloraError(f"{out} exists and is not empty; choose another --out or remove it")
    task_config = load_task(task)
    model, processor = load_vlm(base, **load_options)
    expert, result = train_expert(model, processor, task_config, config, checkpoint=checkpoint)
    state = process_state()  # under `accelerate launch`, one process writes what all of them trained
    if state.is_main_process:
        if out.is_dir():
            out.rmdir()  # empty: the expert is written beside it and renamed into place
        save_expert(expert, out)
        finished(checkpoint)
    state.wait_for_everyone()
    path = out
    print(
        f"expert {task_config.name}: {result.config['steps']} steps in {result.seconds:.0f} s, "
        f"final loss {result.losses[-1]:.3f}; wrote {path}"
    )
    check = expert.metadata["training"]["validation_check"]
    if "score" in check:
        verdict = "above" if check["above_baseline"] else "NOT ABOVE"
        print(
            f"validation ({check['samples']} held-out samples): {check['metric']} {check['score']:.3f}, {verdict} "
            f"the trivial baseline {check['baseline']:.3f} (always {check['baseline_answer']!r})"
        )
    return path


def gate_train(base: str, expert: Path, task: Path, config: GateTrainConfig, checkpoint=None, **load_options) -> Path:
    """Train the expert's gate vectors (one per adapted layer) with base and expert frozen.

    Args:
        base: the base model the expert was trained on.
        expert: expert directory; ``gates.safetensors`` is written into it.
        task: the expert's task YAML file.
        config: gate training settings (PHATGOOSE's by default: 100 steps, lr 5e-3).
        checkpoint: a ``Checkpointing`` (save every N steps, resume a killed run), or None.
        load_options: as for :func:`expert_train`.
    """
    from routelora.data.task import load_task
    from routelora.experts.expert import load_expert, save_routing
    from routelora.gates.train import train_gates
    from routelora.models import load_vlm
    from routelora.training.distributed import process_state

    task_config = load_task(task)
    model, processor = load_vlm(base, **load_options)
    trained, result = train_gates(model, processor, load_expert(expert), task_config, config, checkpoint=checkpoint)
    state = process_state()  # under `accelerate launch`, one process writes what all of them trained
    if state.is_main_process:
        save_routing(expert, trained)
        finished(checkpoint)
    state.wait_for_everyone()
    print(
        f"gates of {expert}: {len(trained.gates)} vectors, {config.steps} steps in {result.seconds:.0f} s, "
        f"final loss {result.losses[-1]:.3f}"
    )
    return Path(expert)


def _run_expert(args: argparse.Namespace) -> None:
    from routelora.experts.config import ExpertTrainConfig

    config = config_from_arguments(args, ExpertTrainConfig)
    checkpoint = checkpointing(args, Path(f"{args.out}.checkpoint"))
    expert_train(args.base, args.task, args.out, config, checkpoint, **model_load_options(args))


def _run_gate(args: argparse.Namespace) -> None:
    from routelora.gates.config import GateTrainConfig

    config = config_from_arguments(args, GateTrainConfig)
    checkpoint = checkpointing(args, Path(f"{args.expert}.gates-checkpoint"))
    gate_train(args.base, args.expert, args.task, config, checkpoint, **model_load_options(args))


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``expert`` and ``gate`` to the CLI; their training flags are the fields of ExpertTrainConfig and
    GateTrainConfig (:mod:`routelora.cli.config_args`)."""
    from routelora.experts.config import KINDS, ExpertTrainConfig
    from routelora.gates.config import GateTrainConfig

    expert = subcommands.add_parser("expert", help="stage 1: LoRA and (IA)^3 experts")
    expert_actions = expert.add_subparsers(dest="expert_command", metavar="ACTION", required=True)
    train = expert_actions.add_parser("train", help="train a LoRA (or --kind ia3) expert on one task's data")
    train.add_argument("--base", required=True, help="base model directory or hub id")
    train.add_argument("--task", type=Path, required=True, help="task YAML file")
    train.add_argument("--out", type=Path, required=True, help="expert directory to create")
    add_config_arguments(train, ExpertTrainConfig, choices={"kind": KINDS})
    add_checkpoint_arguments(train)
    add_model_arguments(train, positional=False)
    train.set_defaults(run=_run_expert)

    gate = subcommands.add_parser("gate", help="stage 2: gate vectors")
    gate_actions = gate.add_subparsers(dest="gate_command", metavar="ACTION", required=True)
    gate_train_parser = gate_actions.add_parser("train", help="train an expert's gates with everything else frozen")
    gate_train_parser.add_argument("--base", required=True, help="the base model the expert was trained on")
    gate_train_parser.add_argument("--expert", type=Path, required=True, help="expert directory")
    gate_train_parser.add_argument("--task", type=Path, required=True, help="the expert's task YAML file")
    add_config_arguments(gate_train_parser, GateTrainConfig)
    add_checkpoint_arguments(gate_train_parser)
    add_model_arguments(gate_train_parser, positional=False)
    gate_train_parser.set_defaults(run=_run_gate)
