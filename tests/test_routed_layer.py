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
