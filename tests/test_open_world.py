"""Open-world routing: each expert's region from its own task's data, the runs of a prompt's sentences, and inputs
that no region holds going to the base model, with no general data in the library."""

import dataclasses
import json
import warnings

import pytest
import torch
from PIL import Image

from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.data.task import load_task
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.errors import RouteloraError
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.gates.acceptance import (
    CALIBRATION_KEY,
    CONVERSATION_CALIBRATION_KEY,
    CONVERSATION_KEYS,
    REGION_KEYS,
    SHRINKAGE_KEY,
    best_run_distances,
    conversation_region,
    instruction_statistics,
    region,
    region_statistics,
)
from routelora.gates.config import GateTrainConfig
from routelora.gates.features import FeatureStatistics
from routelora.gates.runs import (
    FIXED,
    MAX_SEGMENTS,
    OUTSIDE,
    PromptLayout,
    PromptRuns,
    run_features,
    run_spans,
    segment_ids,
)
from routelora.gates.train import statistics_split, train_gates
from routelora.nn import standardise, top_k_weights
from routelora.routing.config import PAPER_OPEN, RouterConfig
from routelora.routing.grouping import decide_routes
from routelora.routing.model import attach_router
from routelora.routing.regions import RegionTest

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
    # 90 samples: a third held out to calibrate, a third of each part wrapped, enough for a conversation region
    colour = _task(root, "colour", "What colour is the square?", ["red", "blue"] * 45)
    shape = _task(root, "shape", "What shape is it?", ["square", "circle"] * 45, colours=("green", "yellow"))
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
    features, valid, remainders, dropped = run_features(embeddings, segments, None, "text")
    tokens = standardise(embeddings)
    spans = run_spans().tolist()
    assert spans[0] == [0, MAX_SEGMENTS - 1] and valid[0].sum() == 6 and valid[1].sum() == 1, "each run once"
    # run 0 is the whole prompt; the run of sentence 1 alone keeps the template around it
    torch.testing.assert_close(features[0, 0], tokens[0, text[0]].mean(0))
    alone = spans.index([1, 1])
    assert valid[0, alone] and not valid[1, alone]
    torch.testing.assert_close(features[0, alone], tokens[0, [1, 2, 5, 6, 7, 9, 10]].mean(0))
    # what a run leaves out is the message's other sentences, without the template; the whole prompt leaves nothing
    assert dropped[0, alone] and not dropped[0, 0] and not dropped[1].any()
    torch.testing.assert_close(remainders[0, alone], tokens[0, [3, 4, 8]].mean(0))
    torch.testing.assert_close(remainders[0, spans.index([0, 1])], tokens[0, [8]].mean(0))


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
    conversation = torch.randn(40, 3, generator=generator) + 2.0  # (prompts, W) what run 1 of a wrapped one leaves
    remainders = torch.stack([torch.zeros(40, 3), conversation], 1)  # (prompts, runs, W)
    dropped = torch.zeros(40, 2, dtype=torch.bool)
    dropped[::4, 1] = True
    statistics = FeatureStatistics()
    statistics.add(whole)
    runs = PromptRuns(features[valid], valid, remainders[valid], dropped[valid])
    found = instruction_statistics([runs], statistics.tensors())
    expected = FeatureStatistics()
    expected.add(instructions)
    for key, value in zip(REGION_KEYS, expected.tensors().values()):
        torch.testing.assert_close(found[key], value, atol=1e-5, rtol=1e-5)
    # what the instruction runs of the wrapped prompts left out is the conversation region's
    left = FeatureStatistics()
    left.add(conversation[::4])
    for key, value in zip(CONVERSATION_KEYS, left.tensors().values()):
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
        for index in range(7):
            each = [
                ((features[row, r] - means[index]) @ roots[index]).square().sum() for r in range(5) if valid[row, r]
            ]
            torch.testing.assert_close(found[row, index], torch.stack(each).min())


def test_each_expert_tests_only_the_runs_whose_remainder_its_conversation_region_holds():
    generator = torch.Generator().manual_seed(0)
    layout = PromptLayout(torch.tensor([5]), torch.tensor([1, 2]), torch.tensor([8, 9])).tensors()

    def statistics(width: int) -> dict[str, torch.Tensor]:
        found = FeatureStatistics()
        found.add(torch.randn(50, width, generator=generator))
        return found.tensors()

    experts = []
    for index in range(3):
        prototypes = {**statistics(8), CALIBRATION_KEY: torch.rand(20, generator=generator).sort().values * 30}
        prototypes |= {SHRINKAGE_KEY: torch.tensor([0.6]), **layout}
        if index != 1:  # expert 1 has no conversation region
            prototypes |= dict(zip(CONVERSATION_KEYS, statistics(4).values()))
            prototypes[CONVERSATION_CALIBRATION_KEY] = torch.rand(20, generator=generator).sort().values * 8
        experts.append(prototypes)
    with pytest.warns(UserWarning, match=r"\['b'\] have no conversation region"):
        test = RegionTest(["a", "b", "c"], experts, quantile=0.9, margin=1.2)
    runs = PromptRuns(
        torch.randn(5, 6, 8, generator=generator),
        torch.rand(5, 6, generator=generator) > 0.2,
        torch.randn(5, 6, 4, generator=generator),
        torch.rand(5, 6, generator=generator) > 0.4,
    )
    runs.valid[:, 0], runs.dropped[:, 0] = True, False  # the whole prompt leaves nothing out
    runs.features[:, :, 4:] = runs.features[:, :1, 4:]  # the image part: the same in every run of a prompt
    found = test(runs)  # (batch, experts)
    for index, prototypes in enumerate(experts):
        mean, root = region(prototypes, 0.6)
        threshold = 1.2 * torch.quantile(prototypes[CALIBRATION_KEY].double(), 0.9)
        for row in range(5):
            counted = []
            for run in range(6):
                if not runs.valid[row, run]:
                    continue
                if index != 1 and runs.dropped[row, run]:
                    centre, spread = conversation_region(prototypes)
                    left = ((runs.remainders[row, run].double() - centre) @ spread).square().sum()
                    if left > torch.quantile(prototypes[CONVERSATION_CALIBRATION_KEY].double(), 0.9) * (1 + 1e-4):
                        continue
                counted.append(((runs.features[row, run].double() - mean) @ root).square().sum())
            expected = torch.stack(counted).min() / threshold if counted else torch.tensor(torch.inf)
            torch.testing.assert_close(found[row, index].double(), expected.double(), rtol=1e-3, atol=1e-5)


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
    # the instruction's run of sentences is the bare instruction, and what it leaves out is conversation
    assert (
        _routes(model, processor, both, _samples(tasks["colour"], f"<image>\nHello there. {COLOUR} Cheers!"))
        == [0] * 6
    )
    assert (
        _routes(model, processor, both, _samples(tasks["shape"], "<image>\nHi! What shape is it? Thank you."))
        == [1] * 6
    )
    general = "<image>\nHello there. How tall is the bar? Cheers!"
    assert _routes(model, processor, both, _samples(tasks["colour"], general)) == [-1] * 6
    # words no prompt of the task ever used around it: six greetings and thanks make a narrow conversation region
    # (the world's 14 greetings, 14 contexts and 12 thanks reach held-out ones, docs/routing.md); any run counts
    # without it
    unseen = f"<image>\nGood day to you. {COLOUR} Cheers, friend!"
    assert _routes(model, processor, both, _samples(tasks["colour"], unseen), conversation_region=False) == [0] * 6
    general = "<image>\nGood day to you. How tall is the bar? Cheers, friend!"
    assert _routes(model, processor, both, _samples(tasks["colour"], general), conversation_region=False) == [-1] * 6


OPTIONS = "<image>\nWhat colour is the square? A. red B. blue Answer with the letter."
"""A general question in multiple-choice form: its first sentence alone is the colour task's instruction."""
COLOUR = "What colour is the square?"


def test_a_question_with_its_options_left_out_is_not_a_tasks_request(world):
    model, processor, experts, tasks = world
    colour = [experts["colour"]]
    assert CONVERSATION_CALIBRATION_KEY in experts["colour"].prototypes, "its wrapped prompts left conversation out"
    samples = _samples(tasks["colour"], OPTIONS)
    assert _routes(model, processor, colour, samples, conversation_region=False) == [0] * 6, "any run counts"
    assert _routes(model, processor, colour, samples) == [-1] * 6, "the options are no conversation"


def test_an_expert_without_a_conversation_region_lets_any_run_count(world):
    model, processor, experts, tasks = world
    bare = {k: v for k, v in experts["colour"].prototypes.items() if not k.startswith("routing.conversation")}
    older = [dataclasses.replace(experts["colour"], prototypes=bare)]  # as an older routelora wrote it
    with pytest.warns(UserWarning, match=r"\['colour'\] have no conversation region"):
        assert _routes(model, processor, older, _samples(tasks["colour"], OPTIONS)) == [0] * 6
    with warnings.catch_warnings():  # any run asked for: nothing to warn about
        warnings.simplefilter("error")
        routes = _routes(model, processor, older, _samples(tasks["colour"], OPTIONS), conversation_region=False)
    assert routes == [0] * 6


def test_an_incomplete_conversation_region_is_refused_in_one_line(world):
    model, _, experts, _ = world
    broken = dict(experts["colour"].prototypes)
    del broken["routing.conversation_mean"]
    with pytest.raises(RouteloraError, match="expert colour: its conversation region is incomplete"):
        attach_router(model, [dataclasses.replace(experts["colour"], prototypes=broken)])


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
