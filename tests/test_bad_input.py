"""Bad and hostile input, swept: each kind is tried through the command line and must end in one line that names
the file, field or line and says what to do, a non-zero exit, and nothing already written lost.

docs/bad-input.md lists the same cases; ``CASES`` below is that table in code (a test checks they agree)."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from routelora.cli.main import main
from routelora.data.samples import Sample
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.experts import ExpertLibrary, save_expert
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.gates.train import GateTrainConfig, train_gates
from routelora.models.checkpoint import save_checkpoint
from tiny_tasks import CORPUS, bomb_png, colour_and_shape

FAST = ExpertTrainConfig(rank=4, steps=2, batch_size=4, lr=1e-2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    model, processor = build_tiny_vlm(TinyVLMRecipe(text_layers=2), CORPUS)
    base = save_checkpoint(model, processor, root / "base")
    other, other_processor = build_tiny_vlm(TinyVLMRecipe(text_layers=2, seed=1), CORPUS)
    other_base = save_checkpoint(other, other_processor, root / "other-base")
    tasks = colour_and_shape(root / "data")
    experts = {}
    for task, rank in zip(tasks, (4, 2)):
        expert, _ = train_expert(model, processor, task, ExpertTrainConfig(**{**FAST.__dict__, "rank": rank}))
        expert, _ = train_gates(model, processor, expert, task, GateTrainConfig(steps=1, prototype_samples=4))
        experts[task.name] = save_expert(expert, root / "experts" / task.name)
    library = root / "library"
    ExpertLibrary(library).add(experts["colour"])
    return {"root": root, "base": base, "other_base": other_base, "tasks": tasks, "experts": experts, "lib": library}


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


def broken_copy(setup, name: str, change) -> Path:
    copy = setup["root"] / "broken" / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(setup["experts"]["colour"], copy)
    change(copy)
    return copy


def refused(capsys, setup, argv, *needles) -> str:
    code, err = run(capsys, *argv)
    assert code == 2, f"exit {code}: {err}"
    err = re.split(r"[\r\n]", err)[-1]  # after the progress bars, which tqdm draws on stderr with \r
    assert err.startswith("routelora: error: "), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    assert ExpertLibrary(setup["lib"]).names() == ["colour"], "the library is as it was"
    ExpertLibrary(setup["lib"]).load()
    return err


def _task_with(setup, name: str, image: Path | None = None, yaml_extra: str = "", skip=False) -> Path:
    folder = setup["root"] / "tasks" / name
    folder.mkdir(parents=True, exist_ok=True)
    record = {"id": "a", "image": "img.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                                               {"from": "gpt", "value": "red"}]}  # fmt: skip
    if image is not None:
        shutil.copyfile(image, folder / "img.png")
    (folder / "data.jsonl").write_text(json.dumps(record) + "\n")
    (folder / "task.yaml").write_text(f"name: {name}\nmetric: accuracy\ndata: {{test: data.jsonl}}\n{yaml_extra}")
    return folder / "task.yaml"


def _bomb(path: Path) -> Path:
    path.write_bytes(bomb_png())
    return path


def test_a_truncated_safetensors_file(capsys, setup):
    copy = broken_copy(setup, "truncated", lambda d: (d / "adapter_model.safetensors").write_bytes(
        (d / "adapter_model.safetensors").read_bytes()[:100]))  # fmt: skip
    refused(capsys, setup, ["library", "add", copy, "--library", setup["lib"], "--name", "x"],
            "adapter_model.safetensors is not a readable safetensors file")  # fmt: skip


def test_an_expert_made_for_another_base(capsys, setup):
    task = setup["tasks"][0].source
    refused(capsys, setup, ["eval", "--model", setup["other_base"], "--library", setup["lib"], "--task", task,
                            "--no-base-candidates"], "was trained on another base model: fingerprint")  # fmt: skip


def test_gate_vectors_of_the_wrong_size(capsys, setup):
    def change(d):
        gates = {k: torch.zeros(3) for k in json.loads((d / "expert.json").read_text())["targets"]}
        save_file(gates, d / "gates.safetensors")

    copy = broken_copy(setup, "gates-size", change)
    refused(capsys, setup, ["library", "add", copy, "--library", setup["lib"], "--name", "x"],
            "gates.safetensors: gate for", "has shape (3,), expected")  # fmt: skip


def test_a_gate_file_missing_modules(capsys, setup):
    def change(d):
        from safetensors.torch import load_file

        gates = load_file(d / "gates.safetensors")
        save_file(dict(list(gates.items())[1:]), d / "gates.safetensors")

    copy = broken_copy(setup, "gates-missing", change)
    refused(capsys, setup, ["library", "add", copy, "--library", setup["lib"], "--name", "x"],
            "gates.safetensors: no gate for adapted module")  # fmt: skip


def test_experts_of_different_ranks_route_together(capsys, setup, tmp_path):
    library = tmp_path / "mixed"
    for name in ("colour", "shape"):
        assert run(capsys, "library", "add", setup["experts"][name], "--library", library)[0] == 0
    code, err = run(capsys, "eval", "--model", setup["base"], "--library", library, "--task",
                    setup["tasks"][0].source, "--no-base-candidates", "--limit", "2")  # fmt: skip
    assert code == 0, err


def test_a_nan_loss_stops_training_and_writes_nothing(capsys, setup, tmp_path):
    out = tmp_path / "diverged"
    refused(capsys, setup, ["expert", "train", "--base", setup["base"], "--task", setup["tasks"][0].source,
                            "--out", out, "--steps", "4", "--batch-size", "4", "--lr", "1e30", "--rank", "2"],
            "training diverged at step", "lower the learning rate")  # fmt: skip
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (
            "name: t\nmetric: accuracy\ndata: {test: d.jsonl}\nprompt_tempalte: x\n",
            ["unknown field(s) prompt_tempalte"],
        ),
        ("name: t\nmetric: accuracy\ndata: {test: d.jsonl}\nmax_new_tokens: many\n", ["'max_new_tokens' must be"]),
    ],
)
def test_task_files_with_unknown_keys_or_wrong_types(capsys, setup, tmp_path, text, needles):
    (tmp_path / "t.yaml").write_text(text)
    refused(capsys, setup, ["eval", "--model", setup["base"], "--task", tmp_path / "t.yaml"], "t.yaml", *needles)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("methds: [routelora]\n", "stream.yaml: unknown field(s) methds"),
        ("replay: lots\n", "stream.yaml: replay must be float, got str"),
        ("tasks: [nowhere.yaml]\n", "does not exist"),
        ("tasks: [no_such_task]\n", "task 'no_such_task' is neither a task YAML file nor a task of"),
    ],
)
def test_stream_files_with_unknown_keys_wrong_types_or_missing_tasks(capsys, setup, tmp_path, text, needle):
    (tmp_path / "stream.yaml").write_text(text)
    refused(capsys, setup, ["stream", "--config", tmp_path / "stream.yaml", "--out", tmp_path / "o",
                            "--base", setup["base"]], needle)  # fmt: skip


def test_an_empty_dataset_after_skip_bad(capsys, setup, tmp_path):
    (tmp_path / "x.png").write_text("not a png")
    task = _task_with(setup, "empty", tmp_path / "x.png")
    refused(capsys, setup, ["eval", "--model", setup["base"], "--task", task, "--skip-bad"],
            "holds no usable sample")  # fmt: skip


def test_a_png_that_is_not_an_image(capsys, setup, tmp_path):
    (tmp_path / "x.png").write_text("not a png")
    task = _task_with(setup, "notimage", tmp_path / "x.png")
    refused(capsys, setup, ["eval", "--model", setup["base"], "--task", task], "data.jsonl:1", "cannot read image")


def test_a_decompression_bomb(capsys, setup, tmp_path):
    task = _task_with(setup, "bomb", _bomb(tmp_path / "bomb.png"))
    refused(capsys, setup, ["eval", "--model", setup["base"], "--task", task], "data.jsonl:1",
            "decompression bomb", "resize it")  # fmt: skip


@pytest.mark.parametrize("mode", ["I;16", "CMYK", "LA", "P", "1", "F"])
def test_images_of_unexpected_modes_are_read_as_rgb(tmp_path, mode):
    image = Image.new(mode, (20, 10))
    path = tmp_path / ("x.tiff" if mode in ("F", "CMYK") else "x.png")
    image.save(path)
    loaded = Sample("a", "p", "r", ["r"], path, "here:1").load_image()
    assert loaded.mode == "RGB" and loaded.size == (20, 10)


def test_an_empty_library_for_routing(capsys, setup, tmp_path):
    (tmp_path / "empty").mkdir()
    argv = ["eval", "--model", setup["base"], "--library", tmp_path / "empty", "--task", setup["tasks"][0].source]
    refused(capsys, setup, [*argv, "--no-base-candidates"], "no experts to route between (an empty library?)")


def test_top_k_larger_than_the_candidates(capsys, setup):
    refused(capsys, setup, ["eval", "--model", setup["base"], "--library", setup["lib"], "--task",
                            setup["tasks"][0].source, "--no-base-candidates", "--top-k", "3"],
            "top_k 3 is more than the 1 candidate(s)", "use a top_k (--top-k) of at most 1")  # fmt: skip


@pytest.mark.parametrize("name", ["../escaped", "/tmp/absolute", ".hidden", "a/b"])
def test_names_that_try_to_leave_the_library(capsys, setup, name):
    refused(capsys, setup, ["library", "add", setup["experts"]["shape"], "--library", setup["lib"], "--name", name],
            f"invalid expert name {name!r}")  # fmt: skip
    assert not (setup["lib"].parent / "escaped").exists()


def test_a_symlinked_expert_is_refused(capsys, setup):
    link = setup["lib"] / "linked"
    link.symlink_to(setup["experts"]["shape"], target_is_directory=True)
    try:
        refused(capsys, setup, ["library", "show", "linked", "--library", setup["lib"]], "is a symbolic link")
    finally:
        link.unlink()


def test_pickled_adapter_weights_are_refused(capsys, setup):
    def change(d):
        (d / "adapter_model.safetensors").unlink()
        (d / "adapter_model.bin").write_bytes(b"\x80\x04 would be unpickled")

    copy = broken_copy(setup, "pickled", change)
    refused(capsys, setup, ["library", "add", copy, "--library", setup["lib"], "--name", "x"],
            "pickled weights (adapter_model.bin)", "never unpickles")  # fmt: skip


def test_a_pickled_base_checkpoint_is_refused(capsys, setup, tmp_path):
    shutil.copyfile(setup["base"] / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 would be unpickled")
    refused(capsys, setup, ["info", tmp_path], "pytorch_model.bin", "never unpickles")


def test_remote_code_without_the_flag_is_refused(capsys, setup, tmp_path):
    config = {"model_type": "internvl_chat", "auto_map": {"AutoModel": "modeling_internvl_chat.InternVLChatModel"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    refused(capsys, setup, ["info", tmp_path], "--trust-remote-code")


def test_an_expert_written_by_a_newer_routelora(capsys, setup):
    def change(d):
        metadata = json.loads((d / "expert.json").read_text())
        (d / "expert.json").write_text(json.dumps({**metadata, "format": 99, "routelora_version": "9.0.0"}))

    copy = broken_copy(setup, "newer", change)
    refused(capsys, setup, ["library", "add", copy, "--library", setup["lib"], "--name", "x"],
            "expert.json: format 99 was written by a newer routelora (9.0.0", "upgrade routelora")  # fmt: skip


def test_a_corrupt_expert_json(capsys, setup):
    copy = broken_copy(setup, "json", lambda d: (d / "expert.json").write_text('{"name": '))
    refused(capsys, setup, ["library", "add", copy, "--library", setup["lib"], "--name", "x"], "expert.json")


def test_resuming_a_checkpoint_of_another_run(capsys, setup, tmp_path):
    out = tmp_path / "e"
    task = setup["tasks"][0].source
    common = ["expert", "train", "--base", setup["base"], "--task", task, "--out", out, "--rank", "2"]
    common += ["--batch-size", "4", "--checkpoint-every", "2"]
    from routelora.training import loop

    original = loop.save_checkpoint

    def stop(*args):
        original(*args)
        raise KeyboardInterrupt

    loop.save_checkpoint = stop
    try:
        assert run(capsys, *common, "--steps", "4")[0] == 130
    finally:
        loop.save_checkpoint = original
    refused(capsys, setup, [*common, "--steps", "4"], "pass --resume to continue it")
    refused(capsys, setup, [*common, "--steps", "6", "--resume"], "this checkpoint is of another run")
    assert (tmp_path / "e.checkpoint" / "checkpoint.json").is_file(), "the checkpoint is kept"


def test_the_documented_table_lists_every_case():
    table = (Path(__file__).parent.parent / "docs" / "bad-input.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| input")]
    tests = [
        name for name in globals() if name.startswith("test_") and name != "test_the_documented_table_lists_every_case"
    ]
    assert len(rows) >= 20 and len(tests) >= 20
    for name in tests:
        assert f"`{name}`" in table, f"{name} is not in docs/bad-input.md"
