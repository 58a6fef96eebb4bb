"""The methods protocol: routing is one implementation, and a merging baseline fits it as one more class."""

from contextlib import contextmanager

import pytest
import torch

from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.evaluation.suite import base_condition, score_conditions
from routelora.experts.expert import Expert
from routelora.experts.train import ExpertTrainConfig, train_expert
from routelora.gates.train import GateTrainConfig
from routelora.methods import METHODS, Method, RoutedMethod, method_condition
from routelora.routing.config import ONE_EXPERT, RouterConfig
from routelora.routing.model import attach_router
from tiny_tasks import CORPUS, colour_and_shape

FAST = ExpertTrainConfig(rank=4, steps=4, batch_size=4, lr=1e-2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    return model, processor, colour_and_shape(tmp_path_factory.mktemp("methods"), max_new_tokens=3)


class Averaging:
    """A sketch of a merging baseline against the protocol: one expert per task, evaluated as their mean update.

    The mean of LoRA updates ``(1/n) sum_i s_i B_i A_i`` is itself a LoRA of rank ``sum_i r_i``: A stacked, B side
    by side, each block scaled by ``s_i / n``. So it runs through the same routed layer as one expert, exactly.
    """

    name = "averaging"

    def learn(self, model, processor, task, state):
        expert, _ = train_expert(model, processor, task, FAST, progress=False)
        return [*(state or []), expert]

    @contextmanager
    def prepared(self, model, state):
        n = len(state)
        lora_A = {t: torch.cat([e.lora_A[t] for e in state]) for t in state[0].targets}
        lora_B = {t: torch.cat([e.lora_B[t] * e.scaling[t] / n for e in state], dim=1) for t in state[0].targets}
        merged = Expert("averaging", None, lora_A, lora_B, dict.fromkeys(lora_A, 1.0), metadata=state[0].metadata)
        with attach_router(model, [merged], ONE_EXPERT):
            yield None


def test_registry_and_protocol():
    assert {"routelora", "paper"} <= set(METHODS)
    assert isinstance(METHODS["paper"](), Method) and isinstance(Averaging(), Method)
    assert METHODS["paper"]().router.granularity == "token"
    with pytest.raises(ValueError, match="general data"):
        METHODS["routelora"]()  # base candidates need general data, or they could never be offered


def test_a_merging_method_is_one_class_and_its_model_is_the_mean_update(world):
    model, processor, tasks = world
    method, state = Averaging(), None
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
