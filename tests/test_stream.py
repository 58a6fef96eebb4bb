"""The continual-learning stream: every method over a two-task stream, its accuracy matrices, costs, states on
disk, resuming after a failure to the same numbers, and its YAML file."""

import json

import pytest
import torch

from routelora.data.samples import load_split
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.errors import FileFormatError
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.gates.config import GateTrainConfig
from routelora.methods.multitask import MultiTaskState
from routelora.methods.sequential import SequentialState
from routelora.stream import StreamConfig, load_state, load_stream_config, run_stream, save_state
from routelora.stream.config import DEFAULT_METHODS, StreamConfigError
from tiny_tasks import CORPUS, colour_and_shape, write_task

FAST = ExpertTrainConfig(rank=4, steps=3, batch_size=4, lr=1e-2, holdout=2)
FULL = ExpertTrainConfig(steps=3, batch_size=4, lr=1e-3, holdout=2)
GATES = GateTrainConfig(steps=2, batch_size=4, prototype_samples=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    root = tmp_path_factory.mktemp("stream")
    tasks = colour_and_shape(root, max_new_tokens=3)
    retention = [write_task(root, "square", "What shape is it?", ["square"] * 8, 3)]
    return model, processor, tasks, retention


def _config(**changes) -> StreamConfig:
    fields = dict(tasks=["colour", "shape"], retention=["square"], methods=list(DEFAULT_METHODS), expert=FAST)
    return StreamConfig(**{**fields, "full": FULL, "gates": GATES, **changes})


@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory):
    model, processor, tasks, retention = world
    out = tmp_path_factory.mktemp("whole")
    return run_stream(_config(), model, processor, tasks, retention, out, progress=False), out


def test_every_method_gives_a_matrix_metrics_and_costs(world, uninterrupted):
    result, out = uninterrupted
    assert set(result.methods) == set(DEFAULT_METHODS)
    for name, method in result.methods.items():
        assert len(method.rows) == 3 and method.rows[0] == result.zero_shot, name
        joint = name in ("zero-shot", "multitask-lora", "multitask-full")
        assert (method.rows[1] is None) == joint, f"{name}: only joint methods skip the first step"
        assert set(method.rows[2]) == {"colour", "shape", "square"}
        summary = result.summary(name)
        assert summary["MFN"] == pytest.approx(50 * (method.rows[2]["colour"] + method.rows[2]["shape"]))
    costs = {name: result.costs(name) for name in result.methods}
    assert costs["zero-shot"]["samples_seen"] == 0 and costs["zero-shot"]["trainable_parameters"] == 0
    # two tasks x 3 steps x 4 samples; a shared expert is charged to every method that uses it
    assert costs["sequential-full"]["samples_seen"] == 24 and costs["averaging"]["samples_seen"] == 24
    assert costs["routelora"]["samples_seen"] == 24 + 2 * GATES.steps * GATES.batch_size, "experts and gates"
    assert costs["multitask-lora"]["samples_seen"] == 24, "the steps of every task added up"
    assert costs["replay"]["kept_samples"] == 2 * 2, "20% of each task's 6 training samples, rounded up"
    assert costs["task-arithmetic"]["kept_samples"] == 2 * 2, "the held-out samples of each task"
    assert costs["multitask-full"]["kept_samples"] == 16, "every task's training data"
    lm_params = costs["sequential-full"]["trainable_parameters"]
    assert lm_params > 10 * costs["sequential-lora"]["trainable_parameters"] > 0
    assert costs["sequential-full"]["stored_bytes"] >= 4 * lm_params, "float32 weights"
    written = json.loads((out / "stream.json").read_text())
    assert set(written["methods"]) == set(DEFAULT_METHODS) and written["environment"]["torch"]
    machine = written["environment"]
    assert (
        machine["cpu_model"] and isinstance(machine["cpu_vector_extensions"], list) and machine["torch_threads"] >= 1
    )


def test_a_stream_stopped_part_way_resumes_to_the_same_matrices(world, uninterrupted, tmp_path, monkeypatch):
    model, processor, tasks, retention = world
    expected, _ = uninterrupted
    from routelora.methods.ties import MergingMethod

    original = MergingMethod.learn
    calls = {"n": 0}

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:  # ties, then dare, at step 1; ties at step 2
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(MergingMethod, "learn", failing)
    with pytest.raises(KeyboardInterrupt):
        run_stream(_config(), model, processor, tasks, retention, tmp_path, progress=False)
    assert not (tmp_path / "stream.json").exists()
    assert (tmp_path / "methods" / "ties" / "step-1.json").is_file()
    assert not (tmp_path / "methods" / "ties" / "step-2.json").exists()
    assert [p.name for p in (tmp_path / "methods" / "averaging").glob("state-*")] == ["state-2"], "newest state only"
    monkeypatch.setattr(MergingMethod, "learn", original)
    resumed = run_stream(_config(), model, processor, tasks, retention, tmp_path, progress=False)
    for name in expected.methods:
        assert resumed.methods[name].rows == expected.methods[name].rows, name


def test_states_are_read_back_bit_for_bit(world, tmp_path):
    model, processor, tasks, _ = world
    expert, _ = train_expert(model, processor, tasks[0], FAST, progress=False)
    samples = load_split(tasks[1], "train").samples[:3]
    weights = {"a.weight": torch.randn(3, 4), "b": torch.arange(5)}
    state = SequentialState(weights, expert, [samples], 2)
    back = load_state(save_state(state, tmp_path / "state"))
    assert isinstance(back, SequentialState) and back.tasks == 2 and back.buffers == [samples]
    assert all(torch.equal(back.weights[k], v) for k, v in weights.items())
    for name in expert.targets:
        assert torch.equal(back.expert.lora_A[name], expert.lora_A[name])
        assert torch.equal(back.expert.lora_B[name], expert.lora_B[name])
    mixed = {"scores": {0.5: {"colour": 0.25}}, "pair": (tasks[0], samples[:1]), "raw": b"\x00\x01"}
    again = load_state(save_state(mixed, tmp_path / "mixed"))
    assert again["scores"] == {0.5: {"colour": 0.25}} and again["raw"] == b"\x00\x01"
    assert again["pair"][0].name == "colour" and again["pair"][1] == samples[:1]
    assert load_state(save_state(MultiTaskState(list(tasks)), tmp_path / "mt")).tasks[1].name == "shape"


def test_a_state_file_cannot_name_code_outside_routelora(tmp_path):
    save_state({"x": 1}, tmp_path / "state")
    document = {"format": 1, "state": {"$dataclass": "subprocess:Popen", "fields": {"args": ["true"]}}}
    (tmp_path / "state" / "state.json").write_text(json.dumps(document))
    with pytest.raises(FileFormatError, match="not a routelora dataclass"):
        load_state(tmp_path / "state")


def test_stream_files_are_checked_field_by_field(tmp_path):
    good = tmp_path / "stream.yaml"
    good.write_text("tasks: [caption, mine/task.yaml]\nexpert: {steps: 20, lr: 0.01}\neval_limit: 10\n")
    config = load_stream_config(good)
    assert config.tasks == ["caption", str(tmp_path / "mine" / "task.yaml")]
    assert config.expert.steps == 20 and config.expert.lr == 0.01 and config.expert.rank == 8
    cases = {
        "unknown: 1\n": "stream.yaml: unknown field(s) unknown",
        "expert: {stepz: 3}\n": "stream.yaml: expert: unknown field(s) stepz",
        "eval_limit: many\n": "stream.yaml: eval_limit must be int, got str 'many'",
        "tasks: caption\n": "stream.yaml: tasks must be a list",
        "expert: {lr: -1}\n": "stream.yaml: expert: rank, alpha and lr must be positive",
        "tasks: [a, a]\n": "tasks: a given more than once",
        "tasks: [\n": "stream.yaml line 2: not valid YAML",
    }
    for text, message in cases.items():
        good.write_text(text)
        with pytest.raises(StreamConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_stream_config(good)


def test_the_shipped_stream_file_is_the_default_stream():
    from pathlib import Path

    assert load_stream_config(Path(__file__).parent.parent / "configs" / "stream-paper.yaml") == StreamConfig()


def test_a_stream_folder_of_other_settings_is_not_resumed(world, uninterrupted):
    from routelora.errors import RouteloraError

    model, processor, tasks, retention = world
    _, out = uninterrupted
    other = _config(expert=ExpertTrainConfig(**{**FAST.__dict__, "steps": 4}))
    with pytest.raises(RouteloraError, match="holds a stream made with other settings, tasks or base model"):
        run_stream(other, model, processor, tasks, retention, out, progress=False)
