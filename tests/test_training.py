"""The training loop learns, and evaluation reads back what was learned."""

import json

import pytest
from PIL import Image

from routelora.cli.main import main
from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.data.task import load_task
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.evaluation.evaluate import evaluate_task
from routelora.models import save_checkpoint
from routelora.training import TrainConfig, mixed_batches, train

CORPUS = ["What colour is the square? red blue", "a red square", "a blue square"] * 20


@pytest.fixture(scope="module")
def colour_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("colour")
    (root / "images").mkdir()
    lines = []
    for index, colour in enumerate(["red", "blue"] * 4):
        Image.new("RGB", (48, 48), colour).save(root / "images" / f"{index}.png")
        lines.append(
            {
                "id": f"c{index}",
                "image": f"images/{index}.png",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat colour is the square?"},
                    {"from": "gpt", "value": colour},
                ],
            }
        )
    (root / "data.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (root / "colour.yaml").write_text(
        "name: colour\nmetric: accuracy\nlabels: [red, blue]\nmax_new_tokens: 4\n"
        "data: {train: data.jsonl, test: data.jsonl}\n"
    )
    return load_task(root / "colour.yaml")


def test_config_is_validated():
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear-ish")
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


def test_training_learns_a_colour_task_and_eval_reads_it_back(colour_task, tmp_path, capsys):
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    before = evaluate_task(model, processor, colour_task, progress=False)
    samples = load_split(colour_task, "train").samples
    batches = mixed_batches([samples], VLMCollator(processor), batch_size=8)
    result = train(model, model.parameters(), batches, TrainConfig(steps=60, lr=2e-3, warmup_ratio=0.1), False)
    assert len(result.losses) == 60 and result.losses[-1] < 0.1 * result.losses[0]
    after = evaluate_task(model, processor, colour_task, progress=False)
    assert before.score < 1.0 and after.score == 1.0
    assert [p["prediction"] for p in after.predictions] == ["red", "blue"] * 4

    save_checkpoint(model, processor, tmp_path / "model")
    out = tmp_path / "eval.json"
    assert (
        main(["eval", "--model", str(tmp_path / "model"), "--task", str(colour_task.source), "--out", str(out)]) == 0
    )
    assert "colour  accuracy 1.000  (n=8" in capsys.readouterr().out
    saved = json.loads(out.read_text())["results"][0]
    assert saved["score"] == 1.0 and len(saved["predictions"]) == 8


def test_mixed_batches_draw_from_every_pool_and_cycle_through_each(colour_task):
    samples = load_split(colour_task, "train").samples
    reds = [s for s in samples if s.answer == "red"]
    blues = [s for s in samples if s.answer == "blue"]
    stream = mixed_batches([reds, blues], collator=lambda batch: batch, batch_size=16, seed=3)
    first = next(stream)
    assert {s.answer for s in first} == {"red", "blue"}
    reds_drawn = [s.id for s in first if s.answer == "red"]
    # each pool is drawn without replacement within a pass: the first four reds drawn are four different samples
    assert len(set(reds_drawn[:4])) == min(4, len(reds_drawn))


def test_packed_batch_gives_the_padded_batch_loss_and_logits():
    """Samples of different lengths, one without an image: packed into fewer rows, the loss, every answer token's
    loss and every parameter's gradient are those of the padded batch."""
    import io

    import torch
    from torch.nn.functional import cross_entropy

    from routelora.data.samples import Sample
    from routelora.training.packing import pack_batch

    torch.manual_seed(0)
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)

    def png(colour: str) -> bytes:  # a different image per sample, so a misplaced image changes the logits
        buffer = io.BytesIO()
        Image.new("RGB", (48, 48), colour).save(buffer, format="PNG")
        return buffer.getvalue()

    prompts = ["red", "blue", "a red square", "What colour is the square? " + "red blue " * 8]  # packed longest first
    images = [png("red"), None, png("blue"), png("green")]
    samples = [
        Sample(f"s{i}", p, "red", ["red"], image, f"test:{i}") for i, (p, image) in enumerate(zip(prompts, images))
    ]
    collator = VLMCollator(processor)
    padded = collator(samples)
    packed = pack_batch(padded, model.config.image_token_id, collator.pad_id)
    assert packed["input_ids"].shape[0] < len(samples) and "attention_mask" not in packed
    assert (packed["labels"] != -100).sum() == (padded["labels"] != -100).sum()
    model.eval()
    with torch.no_grad():
        want = model(**padded)
        got = model(**packed, use_cache=False)
    torch.testing.assert_close(got.loss, want.loss, atol=1e-5, rtol=1e-5)

    def answer_losses(out, labels):  # (answer tokens,) the loss of each answer token, sorted so the orders match
        keep = labels[:, 1:] != -100
        logits, targets = out.logits[:, :-1][keep], labels[:, 1:][keep]
        losses = cross_entropy(logits, targets, reduction="none")
        return losses.sort().values

    torch.testing.assert_close(
        answer_losses(got, packed["labels"]), answer_losses(want, padded["labels"]), atol=1e-5, rtol=1e-5
    )

    def gradients(batch, **options):
        model.zero_grad(set_to_none=True)
        model(**batch, **options).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    want_grads, got_grads = gradients(padded), gradients(packed, use_cache=False)
    assert want_grads.keys() == got_grads.keys() and len(want_grads) > 0
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
