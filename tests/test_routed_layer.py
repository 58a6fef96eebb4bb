"""The stacked routed layer against a plain per-token loop over experts, and against PEFT's LoRA."""

import math

import pytest
import torch
from torch import nn

from routelora.routing.config import RouterConfig
from routelora.routing.layer import ExpertWeights, RoutedLinear


def _experts(d_in: int, d_out: int, ranks: list[int], seed: int = 0) -> list[ExpertWeights]:
    g = torch.Generator().manual_seed(seed)
    return [
        ExpertWeights(
            lora_A=torch.randn(r, d_in, generator=g),
            lora_B=torch.randn(d_out, r, generator=g),
            scaling=2.0 / r,
            gate=torch.randn(d_in, generator=g),
        )
        for r in ranks
    ]


def _reference(base: nn.Linear, experts: list[ExpertWeights], u: torch.Tensor, config: RouterConfig) -> torch.Tensor:
    """The method written token by token, expert by expert, straight from docs/method.md (section 4)."""
    out = []
    for token in u:
        if config.normalise:
            t = (token - token.mean()) / torch.sqrt(token.var(unbiased=False) + 1e-5)
            gates = [(e.gate - e.gate.mean()) / torch.sqrt(e.gate.var(unbiased=False) + 1e-5) for e in experts]
        else:
            t, gates = token, [e.gate for e in experts]
        scores = torch.stack([torch.dot(t, v) / math.sqrt(len(token)) for v in gates])
        kept, chosen = scores.topk(min(config.top_k, len(experts)))
        weights = kept.softmax(0)
        y = base(token)
        if config.fallback_threshold is None or kept[0] >= config.fallback_threshold:
            for w, i in zip(weights, chosen.tolist()):
                e = experts[i]
                y = y + w * e.scaling * (e.lora_B @ (e.lora_A @ token))
        out.append(y)
    return torch.stack(out)


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("normalise", [True, False])
def test_stacked_layer_equals_per_token_loop(top_k, normalise):
    torch.manual_seed(0)
    base = nn.Linear(24, 16)
    experts = _experts(24, 16, ranks=[4, 8, 2, 4])  # different ranks live together
    config = RouterConfig(top_k=top_k, normalise=normalise)
    layer = RoutedLinear(base, experts, config)
    x = torch.randn(3, 7, 24)
    with torch.no_grad():
        got = layer(x)
        want = _reference(base, experts, x.reshape(-1, 24), config).view(3, 7, 16)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_fallback_threshold_leaves_unclaimed_tokens_to_the_base():
    torch.manual_seed(1)
    base = nn.Linear(12, 12)
    experts = _experts(12, 12, ranks=[4, 4], seed=2)
    layer = RoutedLinear(base, experts, RouterConfig(top_k=1, fallback_threshold=0.05, trace=True))
    x = torch.randn(40, 12)
    with torch.no_grad():
        got = layer(x)
        want = _reference(base, experts, x, layer.config)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    fell_back = layer.last_choice[:, 0] == -1
    assert 0 < fell_back.sum() < 40, "the threshold should split these tokens"
    torch.testing.assert_close(got[fell_back], base(x[fell_back]))


def test_one_expert_k1_equals_peft_lora():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 10))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["0", "2"]))
    with torch.no_grad():
        for module in peft_model.modules():
            if hasattr(module, "lora_B"):
                module.lora_B["default"].weight.normal_()
    x = torch.randn(5, 20)
    with torch.no_grad():
        want = peft_model(x)
    plain = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 10))
    for index in (0, 2):
        lora = peft_model.base_model.model[index]
        plain[index].load_state_dict(lora.base_layer.state_dict())
        expert = ExpertWeights(
            lora.lora_A["default"].weight, lora.lora_B["default"].weight, lora.scaling["default"], torch.zeros(20)
        )
        plain[index] = RoutedLinear(plain[index], [expert], RouterConfig(top_k=1))
    with torch.no_grad():
        torch.testing.assert_close(plain(x), want, atol=1e-5, rtol=1e-5)


def test_missing_expert_at_a_layer_is_never_chosen():
    base = nn.Linear(8, 8)
    present = _experts(8, 8, ranks=[2])[0]
    layer = RoutedLinear(base, [None, present], RouterConfig(top_k=1, trace=True))
    layer(torch.randn(10, 8))
    assert (layer.last_choice == 1).all()


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="do not fit a linear of 8 -> 8"):
        RoutedLinear(nn.Linear(8, 8), _experts(6, 8, ranks=[2]), RouterConfig())


def test_per_sequence_experts_equal_the_dense_mixture():
    """With one decision per sequence only the chosen experts are computed; the result is the same mixture, and a
    base-model choice (-1) adds nothing."""
    from routelora.routing.context import RoutingContext

    torch.manual_seed(3)
    base = nn.Linear(24, 16)
    experts = _experts(24, 16, ranks=[4, 8, 2])
    context = RoutingContext(num_experts=3)
    layer = RoutedLinear(base, experts, RouterConfig(top_k=2, base_candidates=False), context=context)
    x = torch.randn(3, 5, 24)
    weights = torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # 3 experts + base
    chosen = torch.tensor([[0, 1], [2, -1], [-1, -1]])
    context.shared = (weights, chosen)
    with torch.no_grad():
        got = layer(x)
        want = base(x)
        for row in range(3):
            for index, expert in enumerate(experts):
                lora = (x[row] @ expert.lora_A.T) @ expert.lora_B.T * expert.scaling
                want[row] += weights[row, index] * lora
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[2], base(x[2]))


def _dense(base: nn.Linear, experts: list[ExpertWeights], x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Every row's mixture written out: base plus each expert's update times the row's weight on it."""
    want = base(x)
    for row in range(x.shape[0]):
        for index, expert in enumerate(experts):
            want[row] += weights[row, index] * (x[row] @ expert.lora_A.T) @ expert.lora_B.T * expert.scaling
    return want


@pytest.mark.parametrize("merge", [True, False])
def test_a_uniform_batch_merges_its_experts_and_equals_the_unmerged_mixture(merge):
    """Every sequence took the same two experts with the same weights: the layer merges them into its weight
    (or not, with merge=False), gives the same output either way, and keeps the merged weight for the next batch
    of that route but makes it again once the base weight changes."""
    from routelora.routing.context import RoutingContext

    torch.manual_seed(4)
    base = nn.Linear(24, 16)
    experts = _experts(24, 16, ranks=[4, 8, 2])
    context = RoutingContext(num_experts=3)
    layer = RoutedLinear(base, experts, RouterConfig(top_k=2, base_candidates=False, merge=merge), context=context)
    weights = torch.tensor([[0.0, 0.6, 0.4]]).expand(3, -1)
    chosen = torch.tensor([[1, 2]]).expand(3, -1)
    x = torch.randn(3, 5, 24)
    with torch.no_grad():
        context.shared = (weights, chosen)
        torch.testing.assert_close(layer(x), _dense(base, experts, x, weights), atol=1e-5, rtol=1e-5)
        planned = layer._planned[2]
        assert (planned.merged is not None) == merge and planned.fused is None
        assert (planned.down is not None) != merge, "merge=False keeps no copy of the weight: separate products"
        context.shared = (weights.clone(), chosen.clone())  # the next batch of the same route
        layer(x)
        assert (layer._planned[2] is planned) == merge, "a merged weight is reused for the same route"
        base.weight.mul_(0.5)
        torch.testing.assert_close(layer(x), _dense(base, experts, x, weights), atol=1e-5, rtol=1e-5)
        base.weight.data = base.weight.data * 2  # a new tensor under the same parameter: the storage tells it
        torch.testing.assert_close(layer(x), _dense(base, experts, x, weights), atol=1e-5, rtol=1e-5)


def test_a_mixed_batch_computes_only_the_chosen_experts():
    """Two sequences on expert 0, one on the base: the update gathers one expert (not all three), once."""
    from routelora.routing.context import RoutingContext

    torch.manual_seed(5)
    base = nn.Linear(24, 16)
    experts = _experts(24, 16, ranks=[4, 8, 2])
    context = RoutingContext(num_experts=3)
    layer = RoutedLinear(base, experts, RouterConfig(base_candidates=False), context=context)
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    context.shared = (weights, torch.tensor([[0], [-1], [0]]))
    x = torch.randn(3, 4, 24)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _dense(base, experts, x, weights), atol=1e-5, rtol=1e-5)
        planned = layer._planned[2]
        assert planned.up.shape[0] == layer.rank and planned.row_scale.tolist()[1] == [0.0] * layer.rank
        layer(x[:, :1])  # a decoding step reuses the prefill's gathered weights
        assert layer._planned[2] is planned


def test_one_expert_alone_is_merged_and_equals_its_lora():
    from routelora.routing.config import ONE_EXPERT

    torch.manual_seed(6)
    base = nn.Linear(12, 10)
    expert = _experts(12, 10, ranks=[3])
    layer = RoutedLinear(base, expert, ONE_EXPERT)
    x = torch.randn(7, 12)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _dense(base, expert, x, torch.ones(7, 1)), atol=1e-5, rtol=1e-5)
    assert layer._planned[2].merged is not None
    unmerged = RoutedLinear(base, expert, RouterConfig(**{**ONE_EXPERT.__dict__, "merge": False}))
    with torch.no_grad():
        torch.testing.assert_close(unmerged(x), layer(x), atol=1e-5, rtol=1e-5)
    assert unmerged._planned is None, "merge=False takes the token-level path"


def test_many_distinct_experts_in_a_batch_are_gathered_per_row():
    """Three sequences on three experts at k=1: computing all three for every row would cost more than each
    row's own, so the layer gathers per row; the output is the same mixture."""
    from routelora.routing.context import RoutingContext

    torch.manual_seed(7)
    base = nn.Linear(24, 16)
    experts = _experts(24, 16, ranks=[4, 8, 2])
    context = RoutingContext(num_experts=3)
    layer = RoutedLinear(base, experts, RouterConfig(base_candidates=False), context=context)
    weights = torch.eye(3)
    context.shared = (weights, torch.tensor([[0], [1], [2]]))
    x = torch.randn(3, 4, 24)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _dense(base, experts, x, weights), atol=1e-5, rtol=1e-5)
    assert layer._planned[2].per_row


def _ia3_experts(d_in: int, d_out: int, seed: int = 1) -> list[ExpertWeights]:
    """One (IA)^3 expert scaling the input and one scaling the output."""
    g = torch.Generator().manual_seed(seed)
    return [
        ExpertWeights(None, None, 1.0, torch.randn(d_in, generator=g), 1 + 0.5 * torch.randn(d_in, generator=g), True),
        ExpertWeights(None, None, 1.0, torch.randn(d_in, generator=g), 1 + 0.5 * torch.randn(d_out, generator=g)),
    ]


def _one(base: nn.Linear, expert: ExpertWeights, x: torch.Tensor) -> torch.Tensor:
    """One expert alone, as PEFT computes it."""
    if expert.ia3 is None:
        return base(x) + (x @ expert.lora_A.T) @ expert.lora_B.T * expert.scaling
    return base(x * expert.ia3) if expert.ia3_input else base(x) * expert.ia3


@pytest.mark.parametrize("merge", [True, False])
def test_ia3_and_lora_experts_mix_per_sequence_as_their_outputs(merge):
    """Sequences on a LoRA, an input-scaling and an output-scaling (IA)^3 expert, one each, and one on a LoRA and
    an (IA)^3 expert at once: each row is the weighted mixture of those experts' own outputs; a uniform batch of
    one (IA)^3 expert merges and equals it alone."""
    from routelora.routing.context import RoutingContext

    torch.manual_seed(8)
    base = nn.Linear(12, 10)
    experts = _experts(12, 10, ranks=[3]) + _ia3_experts(12, 10)
    context = RoutingContext(num_experts=3)
    config = RouterConfig(top_k=2, base_candidates=False, merge=merge)
    layer = RoutedLinear(base, experts, config, context=context)
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.7, 0.0, 0.3]])
    context.shared = (weights, torch.tensor([[0, -1], [1, -1], [2, -1], [0, 2]]))
    x = torch.randn(4, 5, 12)
    with torch.no_grad():
        want = torch.stack([sum(w * _one(base, e, x[row]) for w, e in zip(weights[row], experts)) for row in range(4)])
        torch.testing.assert_close(layer(x), want, atol=1e-5, rtol=1e-5)
        for index in (1, 2):
            uniform = torch.zeros(4, 3)
            uniform[:, index] = 1.0
            context.shared = (uniform, torch.full((4, 1), index))
            torch.testing.assert_close(layer(x), _one(base, experts[index], x), atol=1e-5, rtol=1e-5)
            assert (layer._planned[2].merged is not None) == merge


def test_token_level_routing_mixes_ia3_experts_by_their_weights():
    torch.manual_seed(9)
    base = nn.Linear(12, 10)
    experts = _experts(12, 10, ranks=[3]) + _ia3_experts(12, 10)
    layer = RoutedLinear(base, experts, RouterConfig(top_k=1, granularity="token", vectors="gates", trace=True))
    u = torch.randn(30, 12)
    with torch.no_grad():
        got = layer(u)
        chosen = layer.last_choice[:, 0]
        want = torch.stack([_one(base, experts[int(c)], u[t : t + 1])[0] for t, c in enumerate(chosen)])
    assert len(set(chosen.tolist())) > 1, "the tokens must spread over the experts for the test to mean anything"
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_ia3_vectors_of_ones_adapt_nothing_and_lora_only_batches_keep_the_fused_path():
    """An (IA)^3 expert whose vectors are all 1 (untrained) leaves a layer as the base, in any batch; a batch that
    chose only the LoRA expert of a library that also holds (IA)^3 experts takes the LoRA path (no scaling)."""
    from routelora.routing.context import RoutingContext

    torch.manual_seed(10)
    base = nn.Linear(12, 10)
    ones = [ExpertWeights(None, None, 1.0, torch.randn(12), torch.ones(10)) for _ in range(2)]
    context = RoutingContext(num_experts=2)
    layer = RoutedLinear(base, ones, RouterConfig(base_candidates=False), context=context)
    context.shared = (torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0], [1]]))
    x = torch.randn(2, 3, 12)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), base(x))
    mixed = _experts(12, 10, ranks=[3]) + _ia3_experts(12, 10)
    context = RoutingContext(num_experts=3)
    layer = RoutedLinear(base, mixed, RouterConfig(base_candidates=False), context=context)
    context.shared = (torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), torch.tensor([[0], [-1]]))
    with torch.no_grad():
        want = torch.stack([_one(base, mixed[0], x[0]), base(x[1])])
        torch.testing.assert_close(layer(x), want, atol=1e-5, rtol=1e-5)
    planned = layer._planned[2]
    assert planned.fused is not None and planned.in_scale is None and planned.out_scale is None
