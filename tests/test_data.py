"""Task files, data sources and collation: formats users have, errors that name file and line or field."""

import json

import pytest
import torch
from PIL import Image

from routelora.data.collate import IGNORE_INDEX, VLMCollator
from routelora.data.samples import load_split
from routelora.data.task import TaskError, load_task
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm

CORPUS = ["What colour is the circle? red blue green", "a red circle above a blue square"] * 20


@pytest.fixture(scope="module")
def processor():
    return build_tiny_vlm(TinyVLMRecipe(), CORPUS)[1]


def _write_task(root, records, extra: str = "", name="colour.jsonl"):
    (root / "images").mkdir(exist_ok=True)
    for colour in ("red", "blue"):
        Image.new("RGB", (48, 48), colour).save(root / "images" / f"{colour}.png")
    (root / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "colour.yaml").write_text(
        f"name: colour\nmetric: accuracy\nlabels: [red, blue]\ndata:\n  train: {name}\n  test: {name}\n{extra}"
    )
    return root / "colour.yaml"


def _record(colour: str, index: int = 0, **extra) -> dict:
    return {
        "id": f"s{index}",
        "image": f"images/{colour}.png",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the circle?"},
            {"from": "gpt", "value": colour},
        ],
        **extra,
    }


def test_llava_jsonl_loads(tmp_path):
    task = load_task(_write_task(tmp_path, [_record("red", 0), _record("blue", 1, references=["blue", "navy"])]))
    assert task.labels == ["red", "blue"] and task.split("train") == tmp_path / "colour.jsonl"
    data = load_split(task, "train")
    first, second = data.samples
    assert first.prompt == "<image>\nWhat colour is the circle?"
    assert first.answer == "red" and first.references == ["red"]
    assert first.image == tmp_path / "images" / "red.png" and first.load_image().size == (48, 48)
    assert second.references == ["blue", "navy"]


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("name: x\nmetric: bleu\ndata: {test: a.jsonl}\n", "field 'metric': unknown metric 'bleu'"),
        ("name: x\nmetric: accuracy\n", "missing field 'data'"),
        (
            "name: x\nmetric: anls\nlabels: [a]\ndata: {test: a.jsonl}\n",
            "field 'labels': metric 'anls' takes no labels",
        ),
        ("name: x\nmetric: anls\ncolour: red\ndata: {test: a.jsonl}\n", "unknown field(s) colour"),
        ("name: x\nmetric: anls\ndata: {test: a.jsonl\n", "line 4"),
        ("name: x\nmetric: anls\nmax_new_tokens: 0\ndata: {test: a.jsonl}\n", "field 'max_new_tokens'"),
    ],
)
def test_bad_task_files_name_the_field_or_line(tmp_path, yaml_text, message):
    path = tmp_path / "t.yaml"
    path.write_text(yaml_text)
    with pytest.raises(TaskError) as caught:
        load_task(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_multiple_choice_task_sets_its_letters(tmp_path):
    """A task file may give multiple_choice its allowed letters, and evaluation then scores with them."""
    from routelora.metrics import compute_metric

    (tmp_path / "t.yaml").write_text(
        "name: x\nmetric: multiple_choice\nlabels: [A, B, C, D, E, F]\ndata: {test: a.jsonl}\n"
    )
    task = load_task(tmp_path / "t.yaml")
    assert task.labels == list("ABCDEF")
    assert compute_metric(task.metric, ["F"], [["F"]], labels=task.labels)["score"] == 1.0
    assert compute_metric(task.metric, ["F"], [["F"]])["score"] == 0.0, "without labels only A-E are letters"


def test_bad_samples_name_file_and_line_and_can_be_skipped(tmp_path):
    missing_answer = {"conversations": [{"from": "human", "value": "hi"}]}
    good, bad_image = _record("red", 0), _record("green", 1)
    path = _write_task(tmp_path, [good, missing_answer, bad_image])
    with (tmp_path / "colour.jsonl").open("a") as f:
        f.write("{not json\n")
    task = load_task(path)
    with pytest.raises(TaskError, match=r"colour.jsonl:2: field 'conversations' must be a list of at least two"):
        load_split(task, "train")
    data = load_split(task, "train", skip_bad=True)
    assert [s.id for s in data.samples] == ["s0"] and len(data.skipped) == 3
    assert any("colour.jsonl:3: image" in m and "does not exist" in m for m in data.skipped)
    assert any("colour.jsonl:4: not valid JSON" in m for m in data.skipped)


def test_corrupt_image_is_reported_with_its_origin(tmp_path):
    path = _write_task(tmp_path, [_record("red", 0), _record("blue", 1)])
    (tmp_path / "images" / "blue.png").write_bytes(b"\x89PNG broken")
    data = load_split(load_task(path), "train", skip_bad=True)
    assert len(data.samples) == 1 and "colour.jsonl:2: cannot read image" in data.skipped[0]


def test_empty_dataset_and_missing_answer_field(tmp_path):
    path = _write_task(tmp_path, [], extra="answer_field: label\n")
    with pytest.raises(TaskError, match="holds no usable sample"):
        load_split(load_task(path), "train")
    path = _write_task(tmp_path, [_record("red")], extra="answer_field: label\n")
    with pytest.raises(TaskError, match=r"colour.jsonl:1: missing answer field 'label'"):
        load_split(load_task(path), "train")


def test_parquet_source_with_image_bytes(tmp_path):
    import datasets

    Image.new("RGB", (48, 48), "red").save(tmp_path / "red.png")
    table = datasets.Dataset.from_dict(
        {"image": [str(tmp_path / "red.png")], "question": ["Which colour?"], "label": ["red"]}
    ).cast_column("image", datasets.Image())
    table.to_parquet(str(tmp_path / "train.parquet"))
    (tmp_path / "t.yaml").write_text(
        "name: t\nmetric: accuracy\nanswer_field: label\nprompt_template: 'Q: {prompt}'\n"
        "data: {train: train.parquet}\n"
    )
    sample = load_split(load_task(tmp_path / "t.yaml"), "train").samples[0]
    assert sample.prompt == "Q: Which colour?" and sample.answer == "red"
    assert sample.load_image().getpixel((0, 0)) == (255, 0, 0)


def test_collation_supervises_the_answer_only(tmp_path, processor):
    task = load_task(_write_task(tmp_path, [_record("red", 0), _record("blue", 1, references=["blue"])]))
    samples = load_split(task, "train").samples
    samples[1].answer = "a blue circle above a red square"
    collator = VLMCollator(processor)
    batch = collator(samples)
    assert batch["input_ids"].shape == batch["labels"].shape and batch["pixel_values"].shape[0] == 2
    tokenizer = processor.tokenizer
    for row, sample in enumerate(samples):
        supervised = batch["labels"][row][batch["labels"][row] != IGNORE_INDEX].tolist()
        assert tokenizer.decode(supervised) == sample.answer + "<|im_end|>"
        real = batch["input_ids"][row][batch["attention_mask"][row].bool()]
        assert real[-len(supervised) :].tolist() == supervised  # the answer ends the sequence
    prompt_only = collator(samples, with_answers=False)
    assert "labels" not in prompt_only and prompt_only["input_ids"].shape[1] < batch["input_ids"].shape[1]
    text = tokenizer.decode(prompt_only["input_ids"][0][prompt_only["attention_mask"][0].bool()])
    assert text.endswith("What colour is the circle?<|im_end|>\n<|im_start|>assistant\n") and "<image>" in text


def _with_marker(colour: str, text: str, index: int = 0) -> dict:
    record = _record(colour, index)
    record["conversations"][0]["value"] = text
    return record


def test_image_goes_where_its_marker_is(tmp_path, processor):
    """LLaVA data may put the image after the question; the collator keeps that order, and a marker at the start
    renders exactly as a sample without one (the image first)."""
    records = [
        _record("red", 0),
        _with_marker("red", "What colour is the circle?", 1),
        _with_marker("red", "What colour is the circle?\n<image>", 2),
    ]
    first, unmarked, after = load_split(load_task(_write_task(tmp_path, records)), "train").samples
    collator = VLMCollator(processor)
    assert collator.prompt_text(first) == collator.prompt_text(unmarked)
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    question = processor.tokenizer(" circle", add_special_tokens=False).input_ids[0]
    rows = collator([first, after], with_answers=False)["input_ids"].tolist()
    first_image, after_image = (row.index(image_id) for row in rows)
    assert first_image < rows[0].index(question) and after_image > rows[1].index(question)
    assert rows[0].count(image_id) == rows[1].count(image_id) == TinyVLMRecipe().image_tokens


def test_image_markers_are_checked(tmp_path):
    two = _with_marker("red", "<image>\nWhat colour <image> is it?")
    with pytest.raises(TaskError, match=r"colour.jsonl:1: 2 '<image>' markers"):
        load_split(load_task(_write_task(tmp_path, [two])), "train")
    text_only = _with_marker("red", "<image>\nWhat colour is red?")
    del text_only["image"]
    (sample,) = load_split(load_task(_write_task(tmp_path, [text_only])), "train").samples
    assert sample.prompt == "What colour is red?" and sample.image is None
    (templated,) = load_split(
        load_task(_write_task(tmp_path, [_with_marker("red", "Colour?")], "prompt_template: '{prompt} <image>'\n")),
        "train",
    ).samples
    assert templated.prompt == "Colour? <image>"


def test_truncation_is_counted_not_silent(tmp_path, processor):
    task = load_task(_write_task(tmp_path, [_record("red", 0)]))
    sample = load_split(task, "train").samples[0]
    full = VLMCollator(processor)([sample])["input_ids"].shape[1]
    sample.answer = "red " * 10
    collator = VLMCollator(processor, max_length=full + 2)
    batch = collator([sample])
    assert batch["input_ids"].shape[1] == full + 2 and collator.stats.truncated == 1
    tight = VLMCollator(processor, max_length=5)
    with pytest.raises(ValueError, match="raise max_length"):
        tight([sample])
    assert tight.stats.dropped == 1


def test_training_batch_gives_a_finite_loss_on_the_tiny_vlm(tmp_path):
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    task = load_task(_write_task(tmp_path, [_record("red", 0), _record("blue", 1)]))
    batch = VLMCollator(processor)(load_split(task, "train").samples)
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 0
