"""The check of a freshly trained expert against its task's trivial baseline (one constant answer)."""

import json
import logging

import pytest
from torch import nn

from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.experts import save_expert, validation
from routelora.experts.train import ExpertTrainConfig, train_expert
from tiny_tasks import CORPUS, write_task


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    # 12 samples, 8 "red": a constant "red" is the majority answer; the last 4 (red, red, blue, red) are held out
    answers = ["red", "blue", "red", "red"] * 3
    return write_task(tmp_path_factory.mktemp("check"), "colour", "What colour is the square?", answers)


def test_the_constant_answer_is_the_most_common_one(task):
    samples = load_split(task, "train").samples
    assert validation.constant_answer(samples) == "red"
    assert validation.constant_answer(samples[1:2] + samples[:1]) == "blue"  # a tie: the first seen


def test_an_expert_not_above_the_constant_answer_is_flagged(task, monkeypatch, caplog):
    samples = load_split(task, "train").samples
    training, held = samples[:8], samples[8:]
    model, collator = nn.Linear(1, 1), VLMCollator.__new__(VLMCollator)  # answers are stubbed: neither runs
    right = {s.prompt + s.id: s.answer for s in held}
    monkeypatch.setattr(validation, "greedy_answers", lambda m, c, batch, n: [right[s.prompt + s.id] for s in batch])
    good = validation.check_against_baseline(model, collator, task, training, held)
    assert good["score"] == 1.0 and good["baseline"] == 0.75 and good["baseline_answer"] == "red"
    assert good["above_baseline"] and good["samples"] == 4 and not caplog.records

    monkeypatch.setattr(validation, "greedy_answers", lambda m, c, batch, n: ["red"] * len(batch))  # at chance
    with caplog.at_level(logging.WARNING, logger="routelora"):
        at_baseline = validation.check_against_baseline(model, collator, task, training, held)
    assert at_baseline["score"] == at_baseline["baseline"] == 0.75 and at_baseline["above_baseline"] is False
    assert "expert colour scores 0.750" in caplog.text and "not above its trivial baseline 0.750" in caplog.text


def test_training_records_the_check_in_the_experts_file_cheaply(task, tmp_path, caplog):
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    untrained = ExpertTrainConfig(rank=2, steps=1, batch_size=4, lr=1e-8, holdout=4, check_samples=4)
    with caplog.at_level(logging.WARNING, logger="routelora"):
        expert, _ = train_expert(model, processor, task, untrained, progress=False)
    check = expert.metadata["training"]["validation_check"]
    assert check["samples"] == 4 and check["baseline"] == 0.75 and check["above_baseline"] is False
    assert check["seconds"] < 5.0 and "not above its trivial baseline" in caplog.text
    written = json.loads((save_expert(expert, tmp_path / "e") / "expert.json").read_text())
    assert written["training"]["validation_check"] == check

    skipped = ExpertTrainConfig(rank=2, steps=1, batch_size=4, lr=1e-8, holdout=4, check_samples=0)
    expert, _ = train_expert(model, processor, task, skipped, progress=False)
    assert "no validation samples" in expert.metadata["training"]["validation_check"]["skipped"]
