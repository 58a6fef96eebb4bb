"""The methods protocol: routing is one implementation, the merging baselines (averaging, TIES, DARE) others."""

import pytest
import torch

from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.evaluation.suite import base_condition, score_conditions
from routelora.experts.expert import Expert
from routelora.experts.train import ExpertTrainConfig
from routelora.gates.train import GateTrainConfig
from routelora.methods import METHODS, Method, RoutedMethod, method_condition
from routelora.models.layout import get_layout
from routelora.routing.config import ONE_EXPERT, RouterConfig
from routelora.routing.model import attach_router
from tiny_tasks import CORPUS, colour_and_shape

FAST = ExpertTrainConfig(rank=4, steps=4, batch_size=4, lr=1e-2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    return model, processor, colour_and_shape(tmp_path_factory.mktemp("methods"), max_new_tokens=3)


def test_registry_and_protocol():
    assert {"routelora", "paper"} <= set(METHODS)
    assert isinstance(METHODS["paper"](), Method) and isinstance(METHODS["averaging"](), Method)
    assert isinstance(METHODS["ties"](), Method) and METHODS["dare"]().merge == "dare"
    assert METHODS["paper"]().router.granularity == "token"
    assert METHODS["routelora"]().router.open_world, "the default needs no general data: the open world's base"
    with pytest.raises(ValueError, match="general data"):
        METHODS["text-prototypes"]()  # closed-world base candidates need general data, or they could never win


def test_a_merging_method_is_one_class_and_its_model_is_the_mean_update(world):
    model, processor, tasks = world
    method, state = METHODS["averaging"](expert=FAST), None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for task in tasks:
        state = method.learn(model, processor, task, state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "learning leaves the model as it was"
    batch = VLMCollator(processor)(load_split(tasks[0], "train").samples[:4])
    with torch.no_grad(), method.prepared(model, state):
        merged = model(**batch).logits
    with torch.no_grad():  # the same update written into the weights by hand
        for target in state[0].targets:
            delta = sum(e.scaling[target] * e.lora_B[target] @ e.lora_A[target] for e in state) / len(state)
            model.get_submodule(target).weight += delta
        by_hand = model(**batch).logits
        model.load_state_dict(before)
    torch.testing.assert_close(merged, by_hand, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the weights are put back exactly"
    suite = score_conditions(model, processor, [base_condition(), method_condition(method, state)], tasks)
    assert set(suite.results) == {"base", "averaging"} and set(suite.results["averaging"]) == {"colour", "shape"}


def test_routing_is_a_method_and_reports_its_routing(world):
    model, processor, tasks = world
    method = RoutedMethod(
        RouterConfig(base_candidates=False), expert=FAST, gates=GateTrainConfig(steps=2, batch_size=4)
    )
    state = None
    for task in tasks:
        state = method.learn(model, processor, task, state)
    assert [e.name for e in state.experts] == ["colour", "shape"]
    assert all(e.has_gates and e.prototypes is not None for e in state.experts)
    suite = score_conditions(model, processor, [method_condition(method, state)], tasks)
    reports = suite.routing["routelora"]
    assert {name: report.own_expert for name, report in reports.items()} == {"colour": "colour", "shape": "shape"}
    assert all(report.mean_share("text") == 1.0 for report in reports.values()), "each prompt to its own expert"


def test_the_runner_refuses_two_tasks_of_one_name(world):
    from routelora.errors import RouteloraError

    model, processor, tasks = world
    with pytest.raises(RouteloraError, match="colour is given more than once"):
        score_conditions(model, processor, [base_condition()], [tasks[0], tasks[0]])


@pytest.mark.parametrize("merge", ["ties", "dare"])
def test_ties_and_dare_of_one_expert_twice_at_full_density_are_that_expert(world, merge):
    """peft's TIES (signs agree, the agreeing entries averaged) and DARE (nothing dropped at density 1, the two
    halves summed) give back the one expert's delta: the model equals that expert alone as a LoRA."""
    model, processor, tasks = world
    weight = 1.0 if merge == "ties" else 0.5
    method = METHODS[merge](expert=FAST, density=1.0, weight=weight)
    expert = method.learn(model, processor, tasks[0], None)[0]
    batch = VLMCollator(processor)(load_split(tasks[0], "train").samples[:4])
    with torch.no_grad():
        with method.prepared(model, [expert, expert]):
            merged = model(**batch).logits
        with attach_router(model, [expert], ONE_EXPERT):
            alone = model(**batch).logits
    torch.testing.assert_close(merged, alone, atol=1e-5, rtol=1e-5)


def test_ties_keeps_only_the_largest_entries():
    from routelora.methods.ties import MergingMethod

    method = MergingMethod("ties", density=0.25)
    expert = Expert("e", None, {"t": torch.randn(2, 8)}, {"t": torch.randn(8, 2)}, {"t": 1.0})
    merged = method.merged_deltas([expert])["t"]
    assert (merged != 0).sum() == 16, "a quarter of the 64 entries"


def test_task_arithmetic_chooses_its_scale_on_held_out_training_samples(world):
    """Each expert is trained without the last samples of its task; the scale is chosen on them for every task
    seen so far, and the prepared model is W + scale * sum of the deltas, put back exactly afterwards."""
    model, processor, tasks = world
    method, state = METHODS["task-arithmetic"](expert=FAST, validation=2, scales=(0.5, 1.0)), None
    for task in tasks:
        state = method.learn(model, processor, task, state)
    assert set(state.validation) == {"colour", "shape"} and all(len(s) == 2 for _, s in state.validation.values())
    assert state.experts[0].training_log["config"]["steps"] == FAST.steps
    assert state.scale in (0.5, 1.0) and set(state.scores) == {0.5, 1.0}
    assert set(state.scores[0.5]) == {"colour", "shape"}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = VLMCollator(processor)(load_split(tasks[0], "train").samples[:4])
    with torch.no_grad(), method.prepared(model, state):
        merged = model(**batch).logits
    with torch.no_grad():
        for target in state.experts[0].targets:
            delta = sum(e.scaling[target] * e.lora_B[target] @ e.lora_A[target] for e in state.experts)
            model.get_submodule(target).weight += state.scale * delta
        by_hand = model(**batch).logits
        model.load_state_dict(before)
    torch.testing.assert_close(merged, by_hand, atol=1e-5, rtol=1e-5)


def test_holdout_keeps_samples_out_of_training(world):
    model, processor, tasks = world
    with pytest.raises(ValueError, match="holdout 8 leaves no training sample"):
        METHODS["averaging"](expert=ExpertTrainConfig(steps=1, holdout=8)).learn(model, processor, tasks[0], None)


@pytest.mark.parametrize("name", ["sequential-full", "replay"])
def test_sequential_full_fine_tuning_trains_the_language_model_only_and_puts_it_back(world, name):
    model, processor, tasks = world
    recipe = ExpertTrainConfig(steps=3, batch_size=4, lr=1e-3)
    method, state = METHODS[name](recipe=recipe), None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for task in tasks:
        state = method.learn(model, processor, task, state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "learning leaves the model as it was"
    assert state.tasks == 2 and state.expert is None
    language_model = get_layout(model).language_model
    trained = {f"{language_model}.{n}": w for n, w in state.weights.items()}
    assert set(trained) == {n for n, _ in model.named_parameters() if n.startswith(language_model + ".")}
    assert any(not torch.equal(before[n], w) for n, w in trained.items()), "the language model was trained"
    batch = VLMCollator(processor)(load_split(tasks[0], "train").samples[:4])
    with torch.no_grad():
        plain = model(**batch).logits
        with method.prepared(model, state):
            tuned = model(**batch).logits
    assert not torch.allclose(plain, tuned)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "prepared puts the weights back"
    if name == "replay":  # 20% of each task's 8 training samples, drawn once when it is learned
        assert [len(buffer) for buffer in state.buffers] == [2, 2]
        colour = {s.id for s in load_split(tasks[0], "train").samples}
        assert {s.id for s in state.buffers[0]} <= colour
    else:
        assert state.buffers == []


def test_sequential_lora_continues_the_same_lora(world):
    """The second task's LoRA starts from the first's: with a vanishing learning rate it stays the first's."""
    model, processor, tasks = world
    first = METHODS["sequential-lora"](recipe=FAST).learn(model, processor, tasks[0], None)
    still = ExpertTrainConfig(rank=FAST.rank, steps=1, batch_size=4, lr=1e-12)
    second = METHODS["sequential-lora"](recipe=still).learn(model, processor, tasks[1], first)
    for target in first.expert.targets:
        torch.testing.assert_close(second.expert.lora_A[target], first.expert.lora_A[target])
        torch.testing.assert_close(second.expert.lora_B[target], first.expert.lora_B[target])


@pytest.mark.parametrize("name", ["multitask-lora", "multitask-full"])
def test_multitask_learning_trains_once_on_every_task_with_their_steps_added_up(world, name):
    from routelora.training import tally

    model, processor, tasks = world
    recipe = ExpertTrainConfig(rank=4, steps=3, batch_size=4, lr=1e-3)
    method = METHODS[name](recipe=recipe)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with tally() as cost:
        state = method.learn_jointly(model, processor, tasks)
    assert cost.runs == 1 and cost.steps == 6 and cost.samples == 24
    assert [task.name for task in state.tasks] == ["colour", "shape"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "learning leaves the model as it was"
    batch = VLMCollator(processor)(load_split(tasks[1], "train").samples[:4])
    with torch.no_grad():
        plain = model(**batch).logits
        with method.prepared(model, state):
            tuned = model(**batch).logits
    assert not torch.allclose(plain, tuned)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "prepared puts the model back"
    if name == "multitask-lora":
        assert state.expert.metadata["tasks"] == ["colour", "shape"] and state.weights is None
    else:
        assert state.expert is None and state.weights


def test_arrow_over_one_expert_is_that_expert_and_leaves_the_model_as_it_was(world):
    """Arrow's softmax over one expert gives it weight 1 on every token: the plain LoRA model. Over two, tokens
    are routed by the experts' singular vectors and the outputs differ from either alone."""
    model, processor, tasks = world
    method = METHODS["arrow"](expert=FAST)
    state = None
    for task in tasks:
        state = method.learn(model, processor, task, state)
    batch = VLMCollator(processor)(load_split(tasks[0], "train").samples[:4])
    modules = [type(m) for m in model.modules()]
    with torch.no_grad():
        plain = model(**batch).logits
        with method.prepared(model, state[:1]):
            arrow_one = model(**batch).logits
        with attach_router(model, state[:1], ONE_EXPERT):
            alone = model(**batch).logits
        with method.prepared(model, state):
            arrow_two = model(**batch).logits
        after = model(**batch).logits
    torch.testing.assert_close(arrow_one, alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(arrow_two, alone, atol=1e-4)
    assert torch.equal(plain, after) and [type(m) for m in model.modules()] == modules, "the Arrow layers are gone"


def test_shared_experts_are_trained_once_and_charged_to_each_user(world, tmp_path):
    from routelora.methods.shared import SharedExperts
    from routelora.training import tally

    model, processor, tasks = world
    shared = SharedExperts(tmp_path)
    with tally() as first:
        one = METHODS["averaging"](expert=FAST, shared=shared).learn(model, processor, tasks[0], None)
    with tally() as second:
        two = METHODS["ties"](expert=FAST, shared=shared).learn(model, processor, tasks[0], None)
    assert one[0] is two[0], "the same expert object"
    assert first.samples == second.samples == FAST.steps * FAST.batch_size and first.runs == second.runs == 1
    again = SharedExperts(tmp_path).expert(model, processor, tasks[0], FAST)  # read back from disk
    assert all(torch.equal(again.lora_A[n], one[0].lora_A[n]) for n in one[0].targets)
