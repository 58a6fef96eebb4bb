"""Open-world routing: each expert's region from its own task's data, the runs of a prompt's sentences, and inputs
that no region holds going to the base model, with no general data in the library."""

import dataclasses
import json

import pytest
import torch
from PIL import Image

from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.data.task import load_task
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.gates.acceptance import (
    CALIBRATION_KEY,
    REGION_KEYS,
    best_run_distances,
    instruction_statistics,
    region_statistics,
)
from routelora.gates.config import GateTrainConfig
from routelora.gates.features import FeatureStatistics
from routelora.gates.runs import FIXED, MAX_SEGMENTS, OUTSIDE, PromptLayout, run_features, run_spans, segment_ids
from routelora.gates.train import statistics_split, train_gates
from routelora.nn import standardise, top_k_weights
from routelora.routing.config import PAPER_OPEN, RouterConfig
from routelora.routing.grouping import decide_routes
from routelora.routing.model import attach_router

GREETINGS = ["Hi!", "Hello there.", "Good morning!"]
THANKS = ["Thanks!", "Thank you.", "Cheers!"]
CORPUS = [
    f"{g} What colour is the square? What shape is it? How tall is the bar? Good day to you. {t} red blue"
    for g in GREETINGS
    for t in THANKS
] * 5


def _task(root, name: str, question: str, answers: list[str], colours=("red", "blue")):
    """A task in the world's style: one instruction, a third of the samples wrapped in conversation."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index, answer in enumerate(answers):
        Image.new("RGB", (48, 48), colours[index % len(colours)]).save(root / "images" / f"{name}{index}.png")
        text = question
        if index % 3 == 1:
            text = f"{GREETINGS[(index // 3) % 3]} {question} {THANKS[(index // 9) % 3]}"
        turns = [{"from": "human", "value": f"<image>\n{text}"}, {"from": "gpt", "value": answer}]
        lines.append(
            json.dumps({"id": f"{name}{index}", "image": f"images/{name}{index}.png", "conversations": turns})
        )
    (root / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    (root / f"{name}.yaml").write_text(
        f"name: {name}\nmetric: accuracy\nmax_new_tokens: 3\ndata: {{train: {name}.jsonl, test: {name}.jsonl}}\n"
    )
    return load_task(root / f"{name}.yaml")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("open")
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    colour = _task(root, "colour", "What colour is the square?", ["red", "blue"] * 12)
    shape = _task(root, "shape", "What shape is it?", ["square", "circle"] * 12, colours=("green", "yellow"))
    experts = {}
    for task in (colour, shape):
        expert, _ = train_expert(model, processor, task, ExpertTrainConfig(rank=4, steps=2, batch_size=4), False)
        experts[task.name] = train_gates(model, processor, expert, task, GateTrainConfig(steps=1), False)[0]
    return model, processor, experts, {"colour": colour, "shape": shape}


def _samples(task, prompt=None):
    samples = load_split(task, "test").samples[:6]
    return [dataclasses.replace(s, prompt=prompt) for s in samples] if prompt else samples


def _routes(model, processor, experts, samples, **options) -> list[int]:
    with attach_router(model, experts, RouterConfig(**options)) as router:
        return decide_routes(router, VLMCollator(processor)(samples, with_answers=False))[:, 0].tolist()


def test_the_prompt_layout_is_read_off_the_chat_template(world):
    _, processor, _, _ = world
    layout = PromptLayout.from_processor(processor)
    tokenizer = processor.tokenizer
    assert tokenizer.decode(layout.prefix) == "<|im_start|>user\n"
    assert tokenizer.decode(layout.suffix) == "<|im_end|>\n<|im_start|>assistant\n"
    stops = [tokenizer.decode([i]) for i in layout.sentence_ends.tolist()]
    assert "." in stops and "?" in stops and all(any(c in s for c in ".?!:\n") for s in stops)


def test_a_prompt_is_cut_into_sentences_inside_the_chat_template():
    # ids: 1 2 = template prefix; 5 = a sentence end; 8 9 = template suffix; 0 = padding
    layout = PromptLayout(torch.tensor([5]), torch.tensor([1, 2]), torch.tensor([8, 9]))
    ids = torch.tensor([[0, 1, 2, 3, 5, 4, 4, 5, 6, 8, 9], [1, 2, 3, 3, 3, 8, 9, 0, 0, 0, 0]])
    text = ids != 0
    segments = segment_ids(ids, text, layout)
    assert segments[0].tolist() == [OUTSIDE, FIXED, FIXED, 0, 0, 1, 1, 1, 2, FIXED, FIXED]
    assert segments[1].tolist() == [FIXED, FIXED, 0, 0, 0, FIXED, FIXED, *[OUTSIDE] * 4]
    embeddings = torch.randn(2, 11, 16)
    features, valid = run_features(embeddings, segments, None, "text")
    tokens = standardise(embeddings)
    spans = run_spans().tolist()
    assert spans[0] == [0, MAX_SEGMENTS - 1] and valid[0].sum() == 6 and valid[1].sum() == 1, "each run once"
    # run 0 is the whole prompt; the run of sentence 1 alone keeps the template around it
    torch.testing.assert_close(features[0, 0], tokens[0, text[0]].mean(0))
    alone = spans.index([1, 1])
    assert valid[0, alone] and not valid[1, alone]
    torch.testing.assert_close(features[0, alone], tokens[0, [1, 2, 5, 6, 7, 9, 10]].mean(0))


def test_a_sentence_of_stop_tokens_alone_is_in_no_run():
    # the newline after an image or between lines (5 alone) holds no word: no run pools it
    layout = PromptLayout(torch.tensor([5]), torch.tensor([1, 2]), torch.tensor([8, 9]))
    ids = torch.tensor([[1, 2, 5, 3, 4, 5, 5, 4, 5, 8, 9]])
    expected = [FIXED, FIXED, OUTSIDE, 0, 0, 0, OUTSIDE, 1, 1, FIXED, FIXED]
    assert segment_ids(ids, ids != 0, layout)[0].tolist() == expected


def test_a_region_is_drawn_from_each_prompts_instruction_run():
    # 40 prompts: run 0 (the whole prompt) of every fourth is pulled far away by conversation, run 1 is its
    # instruction alone; the region's statistics are those of the instruction runs, the whole prompts' are not
    generator = torch.Generator().manual_seed(0)
    instructions = torch.randn(40, 6, generator=generator, dtype=torch.float64) * 0.1  # (prompts, F)
    whole = instructions.clone()
    whole[::4] += 5.0
    features = torch.stack([whole, instructions], 1).float()  # (prompts, runs, F)
    valid = torch.ones(40, 2, dtype=torch.bool)
    valid[1::4, 1] = False  # some prompts are one sentence: their whole prompt is their only run
    statistics = FeatureStatistics()
    statistics.add(whole)
    found = instruction_statistics([(features[valid], valid)], statistics.tensors())
    expected = FeatureStatistics()
    expected.add(instructions)
    for key, value in zip(REGION_KEYS, expected.tensors().values()):
        torch.testing.assert_close(found[key], value, atol=1e-5, rtol=1e-5)
    region = region_statistics({**statistics.tensors(), **found})
    torch.testing.assert_close(region["routing.mean"], instructions.mean(0).float())
    # a prototypes file without region statistics (an older routelora's) draws its region from the whole prompts
    older = statistics.tensors()
    assert torch.equal(region_statistics(older)["routing.scatter"], older["routing.scatter"])


@pytest.mark.parametrize("shared_tail", [0, 2])
def test_best_run_distances_are_the_smallest_over_the_runs_that_exist(shared_tail):
    features, valid = torch.randn(3, 5, 4, dtype=torch.float64), torch.rand(3, 5) > 0.3
    valid[:, 0] = True
    if shared_tail:  # the image part: the same in every run of an input
        features[:, :, -shared_tail:] = torch.randn(3, 1, shared_tail, dtype=torch.float64)
    means, roots = torch.randn(7, 4, dtype=torch.float64), torch.randn(7, 4, 4, dtype=torch.float64)
    found = best_run_distances(features, valid, means, roots, chunk=3, shared_tail=shared_tail)
    for row in range(3):
        for region in range(7):
            each = [
                ((features[row, r] - means[region]) @ roots[region]).square().sum() for r in range(5) if valid[row, r]
            ]
            torch.testing.assert_close(found[row, region], torch.stack(each).min())


def test_statistics_and_calibration_never_share_a_prompt():
    samples = list(range(30))
    described, held_out = statistics_split(samples, 256, 128)
    assert len(held_out) == 10 and not set(described) & set(held_out) and described + held_out == samples
    assert statistics_split(samples, 5, 4) == (samples[:5], samples[-4:])
    assert statistics_split(samples, 5, 0) == (samples[:5], [])


def test_a_library_of_experts_alone_sends_a_general_question_to_the_base(world):
    model, processor, experts, tasks = world
    colour = [experts["colour"]]
    assert _routes(model, processor, colour, _samples(tasks["colour"])) == [0] * 6
    assert _routes(model, processor, colour, _samples(tasks["shape"])) == [-1] * 6, "no general data, yet base"
    assert _routes(model, processor, colour, _samples(tasks["colour"], "<image>\nHow tall is the bar?")) == [-1] * 6
    assert (
        _routes(model, processor, colour, _samples(tasks["shape"]), open_world=False, base_candidates=False) == [0] * 6
    ), "closed world: the one expert takes everything"


def test_a_wrapped_instruction_reaches_its_expert_and_a_wrapped_question_does_not(world):
    model, processor, experts, tasks = world
    both = [experts["colour"], experts["shape"]]
    # words the statistics never saw, around the instruction: its run of sentences is the bare instruction
    wrapped = "<image>\nGood day to you.\nWhat colour is the square?\nCheers, friend!"
    assert _routes(model, processor, both, _samples(tasks["colour"], wrapped)) == [0] * 6
    assert (
        _routes(model, processor, both, _samples(tasks["shape"], "<image>\nGood day.\nWhat shape is it?\nThank you."))
        == [1] * 6
    )
    general = "<image>\nGood day to you.\nHow tall is the bar?\nCheers, friend!"
    assert _routes(model, processor, both, _samples(tasks["colour"], general)) == [-1] * 6


def test_an_experts_region_does_not_move_when_others_join(world):
    model, _, experts, _ = world
    alone = attach_router(model, [experts["colour"]])
    threshold = alone.thresholds()["colour"]
    alone.detach()
    with attach_router(model, [experts["colour"], experts["shape"]]) as both:
        assert both.thresholds()["colour"] == threshold
    calibration = experts["colour"].prototypes[CALIBRATION_KEY]
    margin = RouterConfig().acceptance_margin
    assert threshold == pytest.approx(margin * torch.quantile(calibration.double(), 0.99).item(), rel=2e-4)


def test_the_papers_router_behind_the_regions_gives_a_general_question_no_expert(world):
    model, processor, experts, tasks = world
    batch = VLMCollator(processor)(_samples(tasks["colour"], "<image>\nHow tall is the bar?"), with_answers=False)
    with torch.no_grad():
        plain = model(**batch).logits
        with attach_router(model, list(experts.values()), PAPER_OPEN):
            routed = model(**batch).logits
        with attach_router(model, list(experts.values()), dataclasses.replace(PAPER_OPEN, open_world=False)):
            closed = model(**batch).logits
    torch.testing.assert_close(routed, plain)
    assert not torch.allclose(closed, plain), "closed world, every token takes some expert"


def test_an_expert_ruled_out_is_never_chosen():
    scores = torch.tensor(
        [[2.0, -torch.inf, 0.5], [-torch.inf, -torch.inf, 3.0], [-torch.inf, -torch.inf, -torch.inf]]
    )
    weights, chosen = top_k_weights(scores, 2, num_experts=2)
    assert chosen.tolist() == [[0, -1], [-1, -1], [-1, -1]]
    assert weights[0, 1] == 0 and weights[1:].abs().sum() == 0 and not weights.isnan().any()


@pytest.mark.parametrize(
    ("field", "value"), [("acceptance_quantile", 0.0), ("acceptance_quantile", 1.5), ("acceptance_margin", 0)]
)
def test_region_settings_are_checked(field, value):
    with pytest.raises(ValueError, match=field):
        RouterConfig(**{field: value})
