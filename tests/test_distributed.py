"""`accelerate launch` with 2 CPU processes (DDP over gloo) trains the same expert as one process with the same
global batch.

Each process trains on its half of every global batch and DDP averages the two gradients. One process instead
takes the gradient of the mean loss over all the batch's answer tokens; the two are the same when both halves
hold equally many answer tokens, which this task's answers do (checked below), so the experts agree up to the
order of float32 sums: a tolerance of 1e-5 on weights of order 1e-2 after 6 AdamW steps.
"""

import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.models.checkpoint import save_checkpoint
from tiny_tasks import CORPUS, write_task

CPU_DDP = Path(__file__).parent.parent / "configs" / "accelerate" / "cpu-ddp.yaml"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_ddp_processes_train_the_expert_one_process_does(tmp_path):
    model, processor = build_tiny_vlm(TinyVLMRecipe(text_layers=1), CORPUS)
    base = save_checkpoint(model, processor, tmp_path / "base")
    task = write_task(tmp_path / "data", "colour", "What colour is the square?", ["red", "blue"] * 8)
    lengths = {len(processor.tokenizer(answer)["input_ids"]) for answer in ("red", "blue")}
    assert len(lengths) == 1, "both answers are as long, so every half-batch holds as many answer tokens"
    train = ["-m", "routelora.cli.main", "expert", "train", "--base", str(base), "--task", str(task.source)]
    train += ["--steps", "6", "--batch-size", "4", "--rank", "2", "--lr", "0.01"]
    single = subprocess.run([sys.executable, *train, "--out", str(tmp_path / "one")], capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_DDP)]
    launch += ["--main_process_port", str(_free_port())]
    ddp = subprocess.run([*launch, *train, "--out", str(tmp_path / "two")], capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("expert colour: 6 steps") == 2, "two processes trained (each reports its run)"
    one = load_file(tmp_path / "one" / "adapter_model.safetensors")
    two = load_file(tmp_path / "two" / "adapter_model.safetensors")
    assert set(one) == set(two)
    moved = max((one[k] - 0).abs().max().item() for k in one if "lora_B" in k)
    assert moved > 1e-3, "the experts were trained"
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=1e-4)


def test_evaluation_split_over_two_processes_gives_the_single_process_result(tmp_path):
    import json

    model, processor = build_tiny_vlm(TinyVLMRecipe(text_layers=1), CORPUS)
    base = save_checkpoint(model, processor, tmp_path / "base")
    task = write_task(tmp_path / "data", "colour", "What colour is the square?", ["red", "blue"] * 7 + ["red"])
    evaluate = ["-m", "routelora.cli.main", "eval", "--model", str(base), "--task", str(task.source)]
    evaluate += ["--batch-size", "4"]
    single = subprocess.run([sys.executable, *evaluate, "--out", str(tmp_path / "one.json")], capture_output=True)
    assert single.returncode == 0, single.stderr[-2000:]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_DDP)]
    launch += ["--main_process_port", str(_free_port())]
    split = subprocess.run([*launch, *evaluate, "--out", str(tmp_path / "two.json")], capture_output=True, text=True)
    assert split.returncode == 0, split.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text())["results"][0] for n in ("one", "two"))
    assert two["samples"] == one["samples"] == 15, "every sample once, none twice (15 do not split evenly)"
    assert [p["id"] for p in two["predictions"]] == [p["id"] for p in one["predictions"]]
    assert [p["prediction"] for p in two["predictions"]] == [p["prediction"] for p in one["predictions"]]
    assert two["score"] == one["score"]


def test_a_stream_under_two_processes_gives_the_single_process_matrices(tmp_path):
    """`routelora stream` under accelerate launch: training split by DDP, evaluation split by samples, one process
    writing. Greedy answers of weights equal to 1e-6 are the same tokens, so the matrices are equal."""
    import json

    model, processor = build_tiny_vlm(TinyVLMRecipe(text_layers=1), CORPUS)
    base = save_checkpoint(model, processor, tmp_path / "base")
    data = tmp_path / "data"
    write_task(data, "colour", "What colour is the square?", ["red", "blue"] * 4, max_new_tokens=3)
    write_task(data, "shape", "What shape is it?", ["square", "circle"] * 4, max_new_tokens=3)
    write_task(data, "square", "What shape is it?", ["square"] * 8, max_new_tokens=3)
    (tmp_path / "stream.yaml").write_text(
        "tasks: [data/colour.yaml, data/shape.yaml]\nretention: [data/square.yaml]\n"
        "methods: [sequential-full, sequential-lora, averaging, multitask-lora, routelora]\n"
        "expert: {rank: 2, steps: 4, batch_size: 4, lr: 0.01, holdout: 0}\n"
        "full: {steps: 4, batch_size: 4, lr: 0.001, holdout: 0}\n"
        "gates: {steps: 2, batch_size: 4, prototype_samples: 4}\n"
    )
    stream = ["-m", "routelora.cli.main", "stream", "--config", str(tmp_path / "stream.yaml"), "--base", str(base)]
    single = subprocess.run([sys.executable, *stream, "--out", str(tmp_path / "one")], capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_DDP)]
    launch += ["--main_process_port", str(_free_port())]
    split = subprocess.run([*launch, *stream, "--out", str(tmp_path / "two")], capture_output=True, text=True)
    assert split.returncode == 0, split.stderr[-3000:]
    one, two = (json.loads((tmp_path / n / "stream.json").read_text()) for n in ("one", "two"))
    assert set(two["methods"]) == set(one["methods"]) == {"sequential-full", "sequential-lora", "averaging",
                                                          "multitask-lora", "routelora"}  # fmt: skip
    for name in one["methods"]:
        assert two["methods"][name]["rows"] == one["methods"][name]["rows"], name
        assert two["methods"][name]["costs"]["samples_seen"] == one["methods"][name]["costs"]["samples_seen"]
