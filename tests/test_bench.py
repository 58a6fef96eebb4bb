"""The routing benchmark's peers compute what they claim, and its report has every figure; no speed is asserted."""

import argparse
import json

import pytest
import torch
from torch import nn

from routelora.bench.config import BenchConfigError, RoutingBenchConfig
from routelora.bench.routing import (
    build_arrow_layer,
    make_experts,
    markdown_table,
    per_expert_loop_forward,
    routed_memory,
    run_routing_bench,
    target_summary,
)
from routelora.bench.timing import time_call
from routelora.cli import bench as bench_cli
from routelora.routing.config import RouterConfig
from routelora.routing.layer import RoutedLinear

D, TOKENS = 64, 32
TINY = {"sizes": (D,), "tokens": TOKENS, "rank": 4, "experts": (1, 3), "top_k": (1, 2), "repeats": 2, "warmup": 1}


@pytest.fixture
def layer_inputs() -> tuple[nn.Linear, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Linear(D, D), torch.randn(TOKENS, D)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("normalise", [True, False])
def test_per_expert_loop_equals_routed_linear(layer_inputs, n, top_k, normalise):
    base, x = layer_inputs
    experts = make_experts(D, D, rank=4, count=n, seed=1)
    for expert in experts:
        expert.scaling = 0.7  # not a power of two, so folding it into B (as RoutedLinear does) is not exact
    config = RouterConfig(top_k=top_k, normalise=normalise)
    with torch.no_grad():
        want = RoutedLinear(base, experts, config)(x.view(4, 8, D))
        got = per_expert_loop_forward(base, experts, x.view(4, 8, D), config)
    assert got.shape == (4, 8, D)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_per_expert_loop_honours_the_fallback(layer_inputs):
    base, x = layer_inputs
    experts = make_experts(D, D, rank=4, count=3, seed=2)
    config = RouterConfig(top_k=2, fallback_threshold=0.05)
    with torch.no_grad():
        torch.testing.assert_close(
            per_expert_loop_forward(base, experts, x, config),
            RoutedLinear(base, experts, config)(x),
            atol=1e-5,
            rtol=1e-5,
        )


@pytest.mark.parametrize("n, top_k", [(3, 1), (3, 2), (1, 2)])
def test_arrow_peer_runs_on_the_shared_base(layer_inputs, n, top_k):
    base, x = layer_inputs
    model = build_arrow_layer(base, make_experts(D, D, rank=4, count=n), top_k)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (TOKENS, D) and torch.isfinite(y).all()
    assert model.base_model.model.linear.base_layer is base  # wrapped, not copied


def test_arrow_with_one_expert_is_base_plus_that_lora(layer_inputs):
    """Softmax over a single kept score is 1, so one-expert Arrow is plain LoRA."""
    base, x = layer_inputs
    (expert,) = make_experts(D, D, rank=4, count=1)
    with torch.no_grad():
        got = build_arrow_layer(base, [expert], top_k=1)(x)
        want = base(x) + expert.scaling * (x @ expert.lora_A.T) @ expert.lora_B.T
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_arrow_refuses_experts_of_different_ranks(layer_inputs):
    base, _ = layer_inputs
    experts = make_experts(D, D, rank=4, count=1) + make_experts(D, D, rank=2, count=1)
    with pytest.raises(BenchConfigError, match="one rank"):
        build_arrow_layer(base, experts, top_k=1)


def test_routed_memory_counts_stacked_factors_and_gates():
    r = 4
    layer = RoutedLinear(nn.Linear(D, 32), make_experts(D, 32, rank=r, count=3), RouterConfig())
    memory = routed_memory(layer)
    assert memory["bytes_per_expert"] == (r * (D + 32) + D) * 4
    assert memory["reference_bytes"] == 2 * r * (D + 32) * 4
    assert memory["all_buffers_per_expert"] > memory["bytes_per_expert"]  # gate keys and the mask on top
    assert memory["ratio"] == pytest.approx(memory["bytes_per_expert"] / memory["reference_bytes"])


def test_time_call_is_a_positive_median():
    calls = []
    assert time_call(lambda: calls.append(1), repeats=3, warmup=2) > 0
    assert len(calls) == 5


def test_run_routing_bench_rows_have_every_figure():
    rows = run_routing_bench(RoutingBenchConfig(**TINY))
    assert [(row["experts"], row["top_k"]) for row in rows] == [(1, 1), (1, 2), (3, 1), (3, 2)]
    fields = {"d", "tokens", "rank", "experts", "top_k", "threads", "flop_bound", "spread", "arrow_note"}
    fields |= {f"{peer}_ms" for peer in ("base", "routed", "loop", "arrow", "sequence", "ia3")}
    fields |= {"routed_ratio", "routed_over_bound", "loop_ratio", "arrow_ratio", "speedup_vs_loop"}
    fields |= {"extra_vs_loop", "sequence_ratio", "sequence_flop_bound", "ia3_ratio"}
    fields |= {"speedup_vs_arrow", "loop_max_abs_diff", "mem_bytes_per_expert", "mem_all_buffers_per_expert"}
    fields |= {"mem_reference_bytes", "mem_ratio"}
    for row in rows:
        assert set(row) == fields
        for peer in ("base", "routed", "loop", "arrow", "sequence", "ia3"):
            assert row[f"{peer}_ms"] > 0
        assert row["sequence_flop_bound"] == pytest.approx(1 + 2 * min(row["top_k"], row["experts"]) * 4 / D)
        assert row["arrow_note"] == ""
        assert row["flop_bound"] == pytest.approx(1 + 2 * row["experts"] * 4 / D)
        for key in ("routed_ratio", "loop_ratio", "arrow_ratio", "speedup_vs_loop", "speedup_vs_arrow"):
            assert row[key] > 0
        assert row["loop_max_abs_diff"] < 1e-4 and row["spread"] >= 0
        assert row["mem_reference_bytes"] == 2 * 4 * (D + D) * 4
    markdown = markdown_table(rows).splitlines()
    assert markdown[0].startswith("| d | n | k | base ms |") and set(markdown[1]) <= set("|-:")
    assert len(markdown) == 2 + len(rows)
    summary = target_summary(rows)
    assert len(summary) == 3 and "NOT MEASURED" in summary[1]  # no n = 8 here


@pytest.mark.parametrize(
    "fields, message",
    [({"sizes": ()}, "sizes"), ({"top_k": (0,)}, "top_k"), ({"repeats": 0}, "repeats"), ({"threads": 0}, "threads")],
)
def test_config_refuses_bad_settings(fields, message):
    with pytest.raises(BenchConfigError, match=message):
        RoutingBenchConfig(**fields)


def test_cli_prints_markdown_and_writes_json(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench_cli.register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "bench.json"
    args = parser.parse_args(
        ["bench", "routing", "--sizes", "64", "--tokens", "16", "--rank", "2", "--experts", "2", "--top-k", "1"]
        + ["--repeats", "1", "--warmup", "0", "--threads", "1", "--markdown", "--json", str(out)]
    )
    args.run(args)
    printed = capsys.readouterr().out
    assert "| d | n | k |" in printed and "faster than PEFT's Arrow" in printed
    report = json.loads(out.read_text())
    assert report["config"]["threads"] == 1 and len(report["rows"]) == 1 and len(report["targets"]) == 3


def test_cli_refuses_a_malformed_list():
    parser = argparse.ArgumentParser()
    bench_cli.register(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "routing", "--experts", "1,x"])


def test_decision_bench_times_every_preset_on_the_tiny_shape():
    from routelora.bench.decision import bench_shape, random_experts
    from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
    from routelora.routing.config import PRESETS
    from routelora.routing.model import attach_router

    row = bench_shape("tiny", experts=2, rank=4, batch=2, words=12, repeats=1, warmup=0)
    assert row["base_s"] > 0 and row["tokens"] > 0 and 0 < row["decision_share"] < 1
    assert all(row[f"{name}_ratio"] > 0 for name in PRESETS)
    # the random experts route like trained ones: one of them at k=1 is the plain LoRA model
    from routelora.gates.runs import PromptLayout

    model, processor = build_tiny_vlm(TinyVLMRecipe(text_layers=1))
    experts = random_experts(model, 2, 4, layout=PromptLayout.from_processor(processor))
    assert experts[0].metadata["base_fingerprint"] and len(experts[0].lora_A) == 7
    with attach_router(model, experts[:1], base_candidates=False) as router:
        assert router.decide is not None and router.regions is not None


@pytest.mark.parametrize(
    "fields, message", [({"shapes": ("huge",)}, "shapes"), ({"repeats": 0}, "repeats"), ({"warmup": -1}, "warmup")]
)
def test_decision_config_refuses_bad_settings(fields, message):
    from routelora.bench.config import DecisionBenchConfig

    with pytest.raises(BenchConfigError, match=message):
        DecisionBenchConfig(**fields)


def test_generate_bench_times_every_condition_and_routed_tokens_equal_peft(tmp_path):
    """A few prompts on the tiny shape: every condition is timed, the default router sends the caption prompts to
    the caption expert and the mcq ones to the base, and every routed condition's tokens equal PEFT's with the same
    adapters (mixed batch, grouped by route, one expert; the large library chooses as the small one)."""
    from routelora.bench.generate import EXPERT_TASKS, SKILL_TASKS, bench_shape, format_shape
    from routelora.embedded.world import generate_world

    world = tmp_path / "world"
    generate_world(world, sizes=(20, 8), tasks=[*EXPERT_TASKS, *SKILL_TASKS], progress=False)
    row = bench_shape("tiny", world, prompts=8, batch=4, new_tokens=2, experts=2, large_library=3, rank=4, repeats=1)
    assert row["routes"] == {"__base__": 4, "caption": 4}
    assert set(row["checks"].values()) == {1.0}, row["checks"]
    for label, figures in row["conditions"].items():
        assert figures["tokens_per_s"] > 0 and 0 < figures["prefill_s"] < figures["seconds"], label
    assert row["conditions"]["base"]["ratio_to_base"] == 1.0
    table = format_shape(row)
    assert "| PEFT, mixed batch |" in table and "| routelora, 3 experts |" in table and "(target >= 0.9" in table


@pytest.mark.parametrize(
    "fields, message",
    [({"shapes": ("huge",)}, "shapes"), ({"new_tokens": 0}, "new_tokens"), ({"large_library": 2}, "large_library")],
)
def test_generate_config_refuses_bad_settings(fields, message):
    from routelora.bench.config import GenerateBenchConfig

    with pytest.raises(BenchConfigError, match=message):
        GenerateBenchConfig(**fields)


def test_the_gpu_check_runs_on_a_cpu_at_the_tiny_shape():
    """scripts/gpu-check.sh's code path, at a shape a CPU runs in seconds: every family trains, routes and agrees
    with PEFT."""
    from routelora.bench.gpu_check import FAMILIES, main

    rows = main(["--shape", "tiny", "--device", "cpu", "--dtype", "float32", "--steps", "2", "--new-tokens", "4"])
    assert [row["family"] for row in rows] == list(FAMILIES)
    assert all(row["tokens equal to PEFT's"] == 1.0 for row in rows)


def test_serve_bench_loads_both_servers_with_no_failure(tmp_path):
    """A few requests through both real servers: every request answered with exactly the tokens asked for, and a
    row per server and number of clients, with the targets in words."""
    from routelora.bench.config import ServeBenchConfig
    from routelora.bench.generate import EXPERT_TASKS, SKILL_TASKS
    from routelora.bench.serve import markdown_table, run_serve_bench, target_lines
    from routelora.embedded.world import generate_world

    world = tmp_path / "world"
    generate_world(world, sizes=(20, 8), tasks=[*EXPERT_TASKS, *SKILL_TASKS], progress=False)
    config = ServeBenchConfig(requests=8, concurrency=4, new_tokens=3, experts=2, rank=4, rounds=1, warmup=2)
    rows = run_serve_bench(config, world, progress=lambda step: None)
    assert [(row["condition"], row["clients"]) for row in rows] == [
        ("routed", 1),
        ("base alone", 1),
        ("routed", 4),
        ("base alone", 4),
    ]
    for row in rows:
        assert row["failures"] == 0 and row["requests"] == 8, row["failure_examples"]
        assert row["tokens_per_s"] * row["wall_s"] == pytest.approx(8 * 3)
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert "| routed | 4 | 1 | 8 | 0 |" in markdown_table(rows)
    assert target_lines(rows, 4)[0] == "failures: 0 in 32 requests (target 0: met)"


@pytest.mark.parametrize("fields, message", [({"rounds": 0}, "rounds"), ({"timeout": 0}, "timeout")])
def test_serve_config_refuses_bad_settings(fields, message):
    from routelora.bench.config import ServeBenchConfig

    with pytest.raises(BenchConfigError, match=message):
        ServeBenchConfig(**fields)
