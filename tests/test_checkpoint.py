"""Training checkpoints: a run stopped part-way, even by a real SIGKILL, resumes to bit-identical weights; a
diverging loss stops the run with a clear message."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.errors import RouteloraError
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.models.checkpoint import save_checkpoint
from routelora.training import TrainConfig, mixed_batches, train
from routelora.training.checkpoint import Checkpointing
from routelora.training.loop import TrainingDivergedError
from tiny_tasks import CORPUS, colour_and_shape

RECIPE = ExpertTrainConfig(rank=4, steps=8, batch_size=4, lr=1e-2, dropout=0.1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    model, processor = build_tiny_vlm(TinyVLMRecipe(text_layers=2), CORPUS)
    root = tmp_path_factory.mktemp("checkpoint")
    return model, processor, colour_and_shape(root), root


class Stop(Exception):
    pass


def test_a_stopped_run_resumes_to_the_same_weights(world, tmp_path, monkeypatch):
    """Dropout (the RNG), AdamW's moments, the cosine schedule and the batch position all carry over."""
    model, processor, tasks, _ = world
    whole, _ = train_expert(model, processor, tasks[0], RECIPE, progress=False)
    checkpoint = Checkpointing(tmp_path / "ckpt", every=3)
    from routelora.training import loop

    original = loop.save_checkpoint

    def save_then_stop(folder, step, *args):
        original(folder, step, *args)
        if step == 6:
            raise Stop

    monkeypatch.setattr(loop, "save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        train_expert(model, processor, tasks[0], RECIPE, progress=False, checkpoint=checkpoint)
    monkeypatch.setattr(loop, "save_checkpoint", original)
    resumed, result = train_expert(model, processor, tasks[0], RECIPE, progress=False, checkpoint=checkpoint)
    assert result.resumed_from == 6, "the resumed run ran the last 2 steps only"
    assert len(result.losses) == RECIPE.steps and result.losses == whole.training_log["losses"]
    for name in whole.targets:
        assert torch.equal(resumed.lora_A[name], whole.lora_A[name]) and torch.equal(
            resumed.lora_B[name], whole.lora_B[name]
        )
    with pytest.raises(RouteloraError, match="another run"):
        other = ExpertTrainConfig(**{**RECIPE.__dict__, "lr": 2e-2})
        train_expert(model, processor, tasks[0], other, progress=False, checkpoint=checkpoint)


def test_a_nan_loss_stops_training_with_a_clear_message(world):
    model, processor, tasks, _ = world
    collator = VLMCollator(processor)
    batches = mixed_batches([load_split(tasks[0], "train").samples], collator, 4)
    parameter = torch.nn.Parameter(torch.zeros(()))
    original = model.forward

    def poisoned(*args, **kwargs):
        output = original(*args, **kwargs)
        output.loss = output.loss + parameter * float("nan")
        return output

    model.forward = poisoned
    try:
        with pytest.raises(
            TrainingDivergedError, match="training diverged at step 1: the loss is nan; lower the learning rate"
        ):
            train(model, [parameter], batches, TrainConfig(steps=3), progress=False)
    finally:
        del model.forward


def test_a_sigkilled_expert_training_resumes_to_bit_identical_weights(world, tmp_path):
    model, processor, tasks, root = world
    base = save_checkpoint(model, processor, tmp_path / "base")
    task = tasks[1].source
    command = [sys.executable, "-m", "routelora.cli.main", "expert", "train", "--base", str(base), "--task", str(task)]
    command += ["--rank", "4", "--steps", "300", "--batch-size", "4", "--lr", "0.01", "--dropout", "0.1"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*command, "--out", str(tmp_path / "whole")], check=True, env=environment, capture_output=True)
    out = tmp_path / "killed"
    marker = tmp_path / "killed.checkpoint" / "checkpoint.json"
    victim = subprocess.Popen([*command, "--out", str(out), "--checkpoint-every", "20"], env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.is_file() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert marker.is_file(), "a first checkpoint was written before the run ended"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "killed part-way, not finished"
    assert not out.exists(), "nothing of the killed run is marked as finished"
    again = subprocess.run([*command, "--out", str(out)], env=environment, capture_output=True, text=True)
    assert again.returncode == 2 and "pass --resume to continue it" in again.stderr
    subprocess.run([*command, "--out", str(out), "--checkpoint-every", "20", "--resume"], check=True,
                   env=environment, capture_output=True)  # fmt: skip
    assert not marker.parent.exists(), "the checkpoint is removed once the expert is written"
    assert json.loads((out / "loss_log.json").read_text())["resumed_from"] >= 20, "it went on from the checkpoint"
    whole, resumed = (
        load_file(tmp_path / "whole" / "adapter_model.safetensors"),
        load_file(out / "adapter_model.safetensors"),
    )
    assert set(whole) == set(resumed) and all(torch.equal(whole[k], resumed[k]) for k in whole)
