"""A stream learned in worker processes: the same rows, states and experts as one process on one thread, the
experts of later experiments trained beside it, and a worker's failure reported with its job."""

import pytest
import torch

from routelora.data.task import load_task
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.errors import RouteloraError
from routelora.experts.expert import load_expert
from routelora.methods.shared import SharedExperts
from routelora.models import load_vlm
from routelora.models.checkpoint import save_checkpoint
from routelora.stream import run_stream, stream_methods
from routelora.stream.workers import stream_jobs
from test_stream import _config
from tiny_tasks import CORPUS, colour_and_shape, write_task

METHODS = ["zero-shot", "sequential-full", "replay", "sequential-lora", "multitask-lora", "routelora", "averaging"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    save_checkpoint(model, processor, root / "base")
    model, processor = load_vlm(root / "base")
    tasks = colour_and_shape(root, max_new_tokens=3)
    retention = [write_task(root, "square", "What shape is it?", ["square"] * 8, 3)]
    extra = write_task(root, "circle", "What shape is it?", ["circle"] * 8, 3)
    return model, processor, tasks, retention, extra


def test_workers_learn_what_one_thread_learns(saved, tmp_path, monkeypatch):
    model, processor, tasks, retention, extra = saved
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = run_stream(
            _config(methods=METHODS), model, processor, tasks, retention, tmp_path / "one", progress=False
        )
    finally:
        torch.set_num_threads(threads)
    config = _config(methods=METHODS, workers=2)

    def refuse(*args, **kwargs):
        raise AssertionError("the main process learned what the workers should have")

    with monkeypatch.context() as patch:  # spawned workers import their own, unpatched, modules
        patch.setattr("routelora.methods.shared.train_expert", refuse)
        patch.setattr("routelora.methods.sequential.SequentialFineTuning.learn", refuse)
        patch.setattr("routelora.methods.multitask.MultiTaskLearning.learn_jointly", refuse)
        side = run_stream(config, model, processor, tasks, retention, tmp_path / "two", progress=False,
                          prefetch=[extra])  # fmt: skip
    for name in METHODS:
        assert side.methods[name].rows == alone.methods[name].rows, name
        assert side.costs(name)["samples_seen"] == alone.costs(name)["samples_seen"], name
    assert side.specialists == alone.specialists
    one, two = (
        sorted((tmp_path / "one" / "experts").glob("colour-*")),
        sorted((tmp_path / "two" / "experts").glob("colour-*")),
    )
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 2, "the expert, and it with gates"
    for a, b in zip(one, two):
        first, second = load_expert(a), load_expert(b)
        for part in ("lora_A", "lora_B"):
            one_factor, two_factor = getattr(first, part), getattr(second, part)
            assert all(torch.equal(one_factor[n], two_factor[n]) for n in first.targets), (a.name, part)
    assert len(list((tmp_path / "two" / "experts").glob("circle-*"))) == 2, "the prefetched expert, with gates"
    monkeypatch.setattr("routelora.stream.workers.multiprocessing.get_context", refuse)
    again = run_stream(config, model, processor, tasks, retention, tmp_path / "two", progress=False)
    assert again.methods["replay"].rows == side.methods["replay"].rows, "a finished stream is read back"


def test_jobs_put_own_training_first_and_keep_replay_with_sequential(saved):
    _, _, tasks, retention, extra = saved
    methods = stream_methods(_config(methods=[*METHODS, "text-prototypes"], workers=2), SharedExperts(), retention)
    jobs = stream_jobs(methods, [*tasks, extra])
    assert jobs[0] == ("methods", ["multitask-lora"])
    assert ("methods", ["sequential-full", "replay"]) in jobs and ("methods", ["replay"]) not in jobs
    kinds = [kind for kind, _ in jobs]
    assert (
        kinds.index("expert") < jobs.index(("methods", ["sequential-lora"])) < jobs.index(("methods", ["routelora"]))
    )
    assert sorted(sum((names for _, names in jobs if _ == "methods"), [])) == sorted([*METHODS, "text-prototypes"])


def test_a_failing_worker_names_its_job(saved, tmp_path):
    model, processor, tasks, retention, _ = saved
    broken = tasks[1].source.parent / "broken.yaml"  # beside its data files
    broken.write_text((tasks[1].source).read_text().replace("train: shape.jsonl", "train: missing.jsonl"))
    bad = load_task(broken)
    expected = "a stream worker failed: expert broken: .*task shape: train data"
    with pytest.raises(RouteloraError, match=expected) as error:
        run_stream(_config(methods=["averaging"], workers=2), model, processor, [tasks[0], bad], retention,
                   tmp_path / "out", progress=False)  # fmt: skip
    assert "\n" not in str(error.value), "one line"


def test_workers_need_a_model_saved_in_a_folder(tmp_path):
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    tasks = colour_and_shape(tmp_path, max_new_tokens=3)
    with pytest.raises(RouteloraError, match="loads the base model from its folder"):
        config = _config(methods=["averaging"], workers=2, retention=[])
        run_stream(config, model, processor, tasks, [], tmp_path / "o", progress=False)
