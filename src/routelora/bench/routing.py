"""Speed and memory of :class:`RoutedLinear` against the base layer, a per-expert loop and PEFT's Arrow router.

Plain functions behind ``routelora bench routing``: it prints figures, it never asserts a speed. The peers:

* the base ``nn.Linear`` alone, the floor;
* ``RoutedLinear``: every expert stacked, two products whatever ``k`` is;
* the per-expert loop a user would write first (as HF's Mixtral does): same scores, then for each expert gather its
  tokens, apply ``s B A u`` and scatter-add the weighted update;
* PEFT's Arrow (``create_arrow_model``), the token-level router a user would otherwise pick. It routes by the SVD
  prototypes of the adapters rather than by gates, so it chooses other experts, but what it costs does not depend
  on which experts it chooses: it computes every expert for every token and mixes them with dense coefficients;
* ``RoutedLinear`` under routelora's default router (one decision per sequence, made before the first layer):
  only each sequence's own k experts are computed;
* ``RoutedLinear`` over (IA)^3 experts instead (output-scaling vectors, token-level like ``routed``).
"""

import math
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from routelora.bench.config import BenchConfigError, RoutingBenchConfig
from routelora.bench.timing import NOISY_SPREAD, spread, time_samples
from routelora.nn import standardise
from routelora.routing.config import RouterConfig
from routelora.routing.context import RoutingContext
from routelora.routing.layer import ExpertWeights, RoutedLinear

FLOAT32_BYTES = 4
PEERS = ("base", "routed", "loop", "arrow", "sequence", "ia3")
SEQUENCE_LENGTH = 256  # tokens per sequence of the sequence-level peer (tokens / 256 sequences)


def make_experts(d_in: int, d_out: int, rank: int, count: int, seed: int = 0) -> list[ExpertWeights]:
    """``count`` random experts of one rank, scaled so the updates are of the order of the input (as trained)."""
    g = torch.Generator().manual_seed(seed)
    return [
        ExpertWeights(
            lora_A=torch.randn(rank, d_in, generator=g) / math.sqrt(d_in),
            lora_B=torch.randn(d_out, rank, generator=g) / math.sqrt(rank),
            scaling=2.0,  # alpha = 2 r, PEFT's usual choice
            gate=torch.randn(d_in, generator=g),
        )
        for _ in range(count)
    ]


def per_expert_loop_forward(
    base: nn.Linear, experts: list[ExpertWeights], x: torch.Tensor, config: RouterConfig
) -> torch.Tensor:
    """``RoutedLinear``'s output computed the naive way: one gather, two small products and a scatter per expert.

    Token-level routing by gates only (no base candidates, no sequence-level decisions): the setting the
    benchmark times. Every expert needs a gate. A loop pass costs nothing for the tokens that did not choose its
    expert, so the LoRA work is ``tokens * k`` rows in all (``RoutedLinear`` does ``tokens * n``), split over ``n``
    launches of small products.
    """
    u = x.reshape(-1, x.shape[-1])  # (tokens, d_in)
    gates = torch.stack([expert.gate for expert in experts]).float()  # (experts, d_in)
    query, keys = (standardise(u.float()), standardise(gates)) if config.normalise else (u.float(), gates)
    scores = query @ keys.T / math.sqrt(u.shape[-1])  # (tokens, experts)
    kept, chosen = scores.topk(min(config.top_k, len(experts)), dim=-1)  # (tokens, k)
    weights = kept.softmax(dim=-1)  # (tokens, k)
    if config.fallback_threshold is not None:
        weights = weights.masked_fill(kept[:, :1] < config.fallback_threshold, 0.0)
    out = base(u)  # (tokens, d_out)
    for index, expert in enumerate(experts):
        token_index, slot = (chosen == index).nonzero(as_tuple=True)  # (m,), (m,)
        if token_index.numel() == 0:
            continue
        hidden = u[token_index] @ expert.lora_A.T  # (m, rank)
        update = (hidden @ expert.lora_B.T) * expert.scaling  # (m, d_out)
        out.index_add_(0, token_index, update * weights[token_index, slot, None].to(update.dtype))
    return out.view(*x.shape[:-1], -1)


class OneLayer(nn.Module):
    """The smallest model PEFT can wrap: one linear layer named ``linear``."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def build_arrow_layer(base: nn.Linear, experts: list[ExpertWeights], top_k: int, seed: int = 0) -> nn.Module:
    """A PEFT model over ``OneLayer(base)`` whose experts are routed by Arrow, built as a user would build it.

    ``create_arrow_model`` loads its experts from adapter directories only, so each expert is written to a
    temporary directory as an ordinary PEFT LoRA adapter first. ``base`` is wrapped, not copied (PEFT also marks
    its parameters as not trainable). Arrow needs every expert at the same rank, and takes no gates; ``top_k``
    is capped at the number of experts, since its ``topk`` fails beyond it.
    """
    from peft import ArrowConfig, LoraConfig, create_arrow_model, get_peft_model, get_peft_model_state_dict
    from peft.utils import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import save_file

    ranks = {expert.lora_A.shape[0] for expert in experts}
    if len(ranks) != 1:
        raise BenchConfigError(f"Arrow needs experts of one rank, got ranks {sorted(ranks)}")
    rank = ranks.pop()
    with tempfile.TemporaryDirectory(prefix="routelora-arrow-") as tmp:
        paths = []
        for index, expert in enumerate(experts):
            # skip_init: the throwaway base only gives the adapter its shape; its weights are never saved
            scratch = OneLayer(nn.utils.skip_init(nn.Linear, base.in_features, base.out_features, bias=False))
            lora_config = LoraConfig(
                r=rank, lora_alpha=expert.scaling * rank, target_modules=["linear"], lora_dropout=0.0
            )
            adapter = get_peft_model(scratch, lora_config)
            with torch.no_grad():
                adapter.base_model.model.linear.lora_A["default"].weight.copy_(expert.lora_A)
                adapter.base_model.model.linear.lora_B["default"].weight.copy_(expert.lora_B)
            # PeftModel.save_pretrained less its model card, which takes most of its time and is never read here
            path = Path(tmp) / f"expert_{index}"
            adapter.peft_config["default"].save_pretrained(path)
            save_file(get_peft_model_state_dict(adapter), path / SAFETENSORS_WEIGHTS_NAME)
            paths.append(str(path))
        arrow_config = ArrowConfig(top_k=min(top_k, len(experts)), rng_seed=seed)
        model = create_arrow_model(OneLayer(base), paths, arrow_config)
    return model.eval()


def routed_memory(layer: RoutedLinear) -> dict[str, float]:
    """Bytes per expert of the routed layer's own buffers, against twice a LoRA adapter in float32.

    ``bytes_per_expert`` counts the reference size: stacked A with the gate keys (``down``) and stacked B;
    ``all_buffers_per_expert`` adds the availability mask, the layer's true extra memory.
    """
    own = sum(layer.get_buffer(name).nbytes for name in ("down", "lora_B"))
    everything = sum(buffer.nbytes for buffer in layer.buffers(recurse=False))
    d_in, d_out = layer.base.in_features, layer.base.out_features
    reference = 2 * layer.rank * (d_in + d_out) * FLOAT32_BYTES
    per_expert = own / layer.num_experts
    return {
        "bytes_per_expert": per_expert,
        "all_buffers_per_expert": everything / layer.num_experts,
        "reference_bytes": float(reference),
        "ratio": per_expert / reference,
    }


def _bench_one(
    base: nn.Linear, experts: list[ExpertWeights], x: torch.Tensor, top_k: int, config: RoutingBenchConfig
) -> dict[str, Any]:
    d, n, r = base.in_features, len(experts), config.rank
    router = RouterConfig(top_k=top_k, granularity="token", vectors="gates", base_candidates=False)
    routed = RoutedLinear(base, experts, router)
    fns: dict[str, Callable[[], Any]] = {
        "base": lambda: base(x),
        "routed": lambda: routed(x),
        "loop": lambda: per_expert_loop_forward(base, experts, x, router),
    }
    context = RoutingContext(num_experts=n)
    sequence_layer = RoutedLinear(base, experts, RouterConfig(top_k=top_k, base_candidates=False), context=context)
    sequences = max(1, x.shape[0] // SEQUENCE_LENGTH)
    x_sequences = x[: sequences * SEQUENCE_LENGTH].view(sequences, -1, d)  # (sequences, length, d)
    g = torch.Generator().manual_seed(config.seed)
    picks = torch.rand(sequences, n, generator=g).topk(min(top_k, n), dim=-1)  # each sequence's own experts
    context.shared = (torch.zeros(sequences, n).scatter_(1, picks.indices, picks.values.softmax(-1)), picks.indices)
    fns["sequence"] = lambda: sequence_layer(x_sequences)
    # the same experts as (IA)^3 vectors scaling the output (as on keys and values), token-level like "routed"
    ia3 = [ExpertWeights(None, None, 1.0, e.gate, ia3=1 + 0.1 * torch.randn(d, generator=g)) for e in experts]
    ia3_layer = RoutedLinear(base, ia3, router)
    fns["ia3"] = lambda: ia3_layer(x)
    arrow_note = ""
    try:
        arrow = build_arrow_layer(base, experts, top_k, seed=config.seed)
        fns["arrow"] = lambda: arrow(x)
    except Exception as error:  # Arrow is a peer, not the subject: record why it is missing and go on
        arrow_note = f"Arrow could not be built: {type(error).__name__}: {error}"
    # Same math, so the loop is a fair peer only if it agrees with the layer; a row says how closely.
    loop_diff = (per_expert_loop_forward(base, experts, x, router) - routed(x)).abs().max().item()
    samples = time_samples(fns, config.repeats, config.warmup)
    ms = {peer: statistics.median(samples[peer]) * 1e3 if peer in samples else None for peer in PEERS}
    bound = 1 + 2 * n * r / d
    routed_ratio = ms["routed"] / ms["base"]
    memory = routed_memory(routed)
    return {
        "d": d,
        "tokens": x.shape[0],
        "rank": r,
        "experts": n,
        "top_k": top_k,
        **{f"{peer}_ms": ms[peer] for peer in PEERS},
        "routed_ratio": routed_ratio,
        "flop_bound": bound,
        "routed_over_bound": routed_ratio / bound,
        "loop_ratio": ms["loop"] / ms["base"],
        "arrow_ratio": ms["arrow"] / ms["base"] if ms["arrow"] is not None else None,
        "speedup_vs_loop": ms["loop"] / ms["routed"],
        # where routing adds under 1% (one expert alone, merged into the weight) the ratio of the additions is noise
        "extra_vs_loop": (ms["loop"] - ms["base"]) / (ms["routed"] - ms["base"])
        if ms["routed"] > 1.01 * ms["base"]
        else None,
        "sequence_ratio": ms["sequence"] / ms["base"],
        "ia3_ratio": ms["ia3"] / ms["base"],
        "sequence_flop_bound": 1 + 2 * min(top_k, n) * r / d,
        "speedup_vs_arrow": ms["arrow"] / ms["routed"] if ms["arrow"] is not None else None,
        "spread": max(spread(values) for values in samples.values()),
        "loop_max_abs_diff": loop_diff,
        "mem_bytes_per_expert": memory["bytes_per_expert"],
        "mem_all_buffers_per_expert": memory["all_buffers_per_expert"],
        "mem_reference_bytes": memory["reference_bytes"],
        "mem_ratio": memory["ratio"],
        "arrow_note": arrow_note,
    }


def run_routing_bench(
    config: RoutingBenchConfig, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Time every peer on every (d, n, k) of ``config``; one row (a flat dict) per combination.

    Float32 on CPU under ``torch.no_grad()``. ``progress`` is told each combination before it runs.
    """
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    rows = []
    try:
        with torch.no_grad():
            for d in config.sizes:
                torch.manual_seed(config.seed)
                base = nn.Linear(d, d).eval()
                x = torch.randn(config.tokens, d, generator=torch.Generator().manual_seed(config.seed))
                for n in config.experts:
                    experts = make_experts(d, d, config.rank, n, seed=config.seed + 1)
                    for k in config.top_k:
                        if progress is not None:
                            progress(f"d={d} n={n} k={k}")
                        row = _bench_one(base, experts, x, k, config)
                        row["threads"] = torch.get_num_threads()
                        rows.append(row)
    finally:
        torch.set_num_threads(previous_threads)
    return rows


# (header, row key, format) of the printed tables
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("d", "d", "d"),
    ("n", "experts", "d"),
    ("k", "top_k", "d"),
    ("base ms", "base_ms", ".2f"),
    ("routed ms", "routed_ms", ".2f"),
    ("loop ms", "loop_ms", ".2f"),
    ("arrow ms", "arrow_ms", ".2f"),
    ("routed/base", "routed_ratio", ".3f"),
    ("FLOP bound", "flop_bound", ".3f"),
    ("/bound", "routed_over_bound", ".2f"),
    ("loop/base", "loop_ratio", ".2f"),
    ("arrow/base", "arrow_ratio", ".2f"),
    ("x loop", "speedup_vs_loop", ".2f"),
    ("x arrow", "speedup_vs_arrow", ".2f"),
    ("extra: loop/routed", "extra_vs_loop", ".2f"),
    ("seq ms", "sequence_ms", ".2f"),
    ("seq/base", "sequence_ratio", ".3f"),
    ("seq bound", "sequence_flop_bound", ".3f"),
    ("ia3/base", "ia3_ratio", ".3f"),
    ("mem/exp KiB", "mem_bytes_per_expert", "kib"),
    ("ref KiB", "mem_reference_bytes", "kib"),
    ("mem ratio", "mem_ratio", ".3f"),
    ("spread", "spread", ".2f"),
)


def _cell(value: Any, spec: str) -> str:
    if value is None:
        return "n/a"
    if spec == "kib":
        return f"{value / 1024:.1f}"
    return format(value, spec)


def _cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = [header for header, _, _ in COLUMNS]
    return headers, [[_cell(row.get(key), spec) for _, key, spec in COLUMNS] for row in rows]


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table, numbers right-aligned, with any Arrow notes below it."""
    headers, body = _cells(rows)
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in [headers, *body]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    notes = sorted({row["arrow_note"] for row in rows if row.get("arrow_note")})
    noisy = [row for row in rows if row["spread"] > NOISY_SPREAD]
    if noisy:
        notes.append(
            f"{len(noisy)}/{len(rows)} rows have a spread (slowest - fastest) / median above {NOISY_SPREAD}: "
            "other processes were competing for the cores; rerun on a quiet machine "
            "(or with --threads 1 and more repeats)."
        )
    if any(row["top_k"] > row["experts"] for row in rows):
        notes.append("k > n keeps all n experts, in every peer.")
    return "\n".join(lines + notes)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (header, alignment line, one line per row) for the README."""
    headers, body = _cells(rows)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines)


def target_summary(rows: list[dict[str, Any]]) -> list[str]:
    """One line per target: whether the measured rows meet it, and by how much."""
    lines = []
    worst = max(rows, key=lambda row: row["routed_over_bound"])
    met = sum(row["routed_over_bound"] <= 1.5 for row in rows)
    lines.append(
        f"[{'MET' if met == len(rows) else 'NOT MET'}] routed/base within 1.5x of the FLOP bound 1 + 2nr/d: "
        f"{met}/{len(rows)} rows; worst {worst['routed_over_bound']:.2f}x of the bound "
        f"(d={worst['d']} n={worst['experts']} k={worst['top_k']})"
    )
    at_eight = [row for row in rows if row["experts"] == 8]
    if at_eight:
        low = min(row["speedup_vs_loop"] for row in at_eight)
        verdict = "MET" if low >= 3 else "NOT MET"
        speedups = ", ".join(f"d={r['d']} k={r['top_k']}: {r['speedup_vs_loop']:.2f}x" for r in at_eight)
        extra = ", ".join(_cell(r["extra_vs_loop"], ".2f") + "x" for r in at_eight)
        ceiling = max(r["loop_ratio"] for r in at_eight)
        lines.append(
            f"[{verdict}] >= 3x faster than the per-expert loop at n = 8: {speedups}. Both include the base "
            f"product, which the loop costs at most {ceiling:.2f}x of here, so no layer can be 3x faster than it; "
            f"on the time routing adds to the base product, routed is {extra} faster than the loop"
        )
    else:
        lines.append("[NOT MEASURED] >= 3x faster than the per-expert loop at n = 8: no row has n = 8")
    against_arrow = [row["speedup_vs_arrow"] for row in rows if row["speedup_vs_arrow"] is not None]
    if against_arrow:
        faster = sum(s > 1 for s in against_arrow)
        lines.append(
            f"[{'MET' if faster == len(against_arrow) else 'NOT MET'}] faster than PEFT's Arrow: "
            f"{faster}/{len(against_arrow)} rows; speed-up min {min(against_arrow):.2f}x, "
            f"median {statistics.median(against_arrow):.2f}x, max {max(against_arrow):.2f}x"
        )
    else:
        lines.append("[NOT MEASURED] faster than PEFT's Arrow: Arrow could not be built (see the notes)")
    return lines
