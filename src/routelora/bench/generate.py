"""Generation throughput of routed models against the base and PEFT: what a user waits for in ``generate``.

Plain functions behind ``routelora bench generate``: it prints figures, it never asserts a speed. Every
condition greedily generates exactly ``new_tokens`` tokens (min = max) for the same mixed prompts (the world's
caption and mcq test prompts, alternating), in the same batches, on its own copy of one random model:

* ``base``: the model alone;
* every router preset over the library, on the mixed batches as they come;
* ``routelora, grouped``: the default router with every prompt's route decided first and the prompts of one route
  batched together (:mod:`routelora.routing.grouping`, what ``routelora eval`` does), decision pass included,
  and ``base, grouped batches``, the base on those same batches;
* ``one expert``: routelora with one expert alone (the oracle of an evaluation), and PEFT with that adapter;
* ``routelora, (IA)^3 experts``: the default router over (IA)^3 experts with the same statistics, and one of them
  alone against PEFT with that IA3 adapter;
* ``PEFT, mixed batch``: PEFT with every expert loaded and each row's adapter given by ``adapter_names``, the rows
  taking the adapters the default router chose for them (the base model where it chose none).

The library's experts have random LoRA weights, but their routing statistics are those of real task prompts on
this model (caption, entailment, meme, genre; the base model's skills mcq, chart and doc), so the default router
sends the caption prompts to the caption expert and the mcq prompts to the base model, as on the trained world.
Extra experts, beyond those four, have statistics no prompt is near: they cost memory and decision time, and are
never chosen.
"""

import copy
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from routelora.bench.decision import random_experts
from routelora.bench.timing import time_samples
from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.data.task import load_task
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.experts.expert import Expert, save_expert
from routelora.experts.ia3 import ia3_targets
from routelora.gates.features import COUNT_KEY, MEAN_KEY, SCATTER_KEY
from routelora.gates.prototypes import compute_prototypes
from routelora.gates.runs import PromptLayout
from routelora.gates.train import statistics_split
from routelora.models.layout import get_layout
from routelora.routing.config import ONE_EXPERT, PRESETS
from routelora.routing.grouping import decide_routes, route_batches
from routelora.routing.model import attach_router

SHAPES = {
    "tiny": TinyVLMRecipe(),
    "realistic": TinyVLMRecipe(
        text_hidden=1024, text_layers=8, text_heads=16, text_kv_heads=4, text_intermediate=2816
    ),
}
"""Model shapes: the embedded base, and a language model 1024 wide with 8 layers (about 92 M parameters)."""
EXPERT_TASKS = ("caption", "entailment", "meme", "genre")
SKILL_TASKS = ("mcq", "chart", "doc")
WORKLOAD = ("caption", "mcq")
STATISTICS_PROMPTS = 64


def workload(world: Path, tasks: tuple[str, ...], prompts: int) -> list:
    """``prompts`` test samples taking turns between ``tasks``."""
    splits = [load_split(load_task(world / f"{name}.yaml"), "test").samples for name in tasks]
    return [splits[i % len(splits)][i // len(splits)] for i in range(prompts)]


def bench_library(model: nn.Module, processor, world: Path, count: int, rank: int) -> tuple[list[Expert], dict]:
    """``count`` random experts whose routing statistics are those of the world's tasks, and base prototypes."""
    targets = get_layout(model).targets

    def statistics_of(task: str) -> dict[str, torch.Tensor]:
        samples = load_split(load_task(world / f"{task}.yaml"), "train").samples
        described, held_out = statistics_split(samples, STATISTICS_PROMPTS, STATISTICS_PROMPTS)
        return compute_prototypes(model, processor, described, targets, progress=False, held_out=held_out)

    experts = random_experts(model, count, rank, layout=PromptLayout.from_processor(processor))
    for index, expert in enumerate(experts):
        if index < len(EXPERT_TASKS):
            task = EXPERT_TASKS[index]
            expert.name, expert.prototypes = task, statistics_of(task)
            expert.metadata |= {"name": task, "task": task}
        else:  # far from every prompt, and with no scatter: it leaves the shared covariance as it was
            expert.prototypes[MEAN_KEY] = expert.prototypes[MEAN_KEY] * 1e3
            expert.prototypes[SCATTER_KEY] = torch.zeros_like(expert.prototypes[SCATTER_KEY])
            expert.prototypes[COUNT_KEY] = torch.tensor([1.0])
    return experts, {skill: statistics_of(skill) for skill in SKILL_TASKS}


class PrefillTimer:
    """Seconds spent in the first forward of each ``generate`` call (the prefill), from hooks on the model."""

    def __init__(self, model: nn.Module) -> None:
        self.seconds, self._start, self._armed = 0.0, 0.0, False
        self.runs: list[float] = []
        """Prefill seconds of each whole run of the workload."""
        self._handles = [
            model.register_forward_pre_hook(self._before),
            model.register_forward_hook(self._after),
        ]

    def arm(self) -> None:
        self._armed = True

    def _before(self, *_) -> None:
        if self._armed:
            self._start = time.perf_counter()

    def _after(self, *_) -> None:
        if self._armed:
            self.seconds += time.perf_counter() - self._start
            self._armed = False


def run_condition(
    model: nn.Module, batches: list[dict], new_tokens: int, options: list[dict] | None, timer: PrefillTimer
) -> list[torch.Tensor]:
    """Generate for every batch; returns the new tokens of each."""
    outputs = []
    for index, batch in enumerate(batches):
        timer.arm()
        extra = options[index] if options is not None else {}
        tokens = model.generate(
            **batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, **extra
        )
        outputs.append(tokens[:, batch["input_ids"].shape[1] :])
    return outputs


def bench_shape(
    shape: str,
    world: Path,
    prompts: int = 256,
    batch: int = 32,
    new_tokens: int = 16,
    experts: int = 4,
    large_library: int = 64,
    rank: int = 8,
    repeats: int = 3,
    warmup: int = 1,
    progress: Callable[[str], None] = lambda step: None,
) -> dict[str, Any]:
    """Tokens per second of every condition on one model shape, with prefill and decode seconds and checks."""
    from peft import PeftModel

    progress(f"{shape}: building the model and the library")
    base, processor = build_tiny_vlm(SHAPES[shape])
    collator = VLMCollator(processor)
    samples = workload(world, WORKLOAD, prompts)
    indices = [list(range(s, min(s + batch, prompts))) for s in range(0, prompts, batch)]
    batches = [collator([samples[i] for i in chunk], with_answers=False) for chunk in indices]
    library, skills = bench_library(base, processor, world, max(experts, large_library), rank)
    small = library[:experts]
    conditions: dict[str, Callable[[], list[torch.Tensor]]] = {}
    timers: dict[str, PrefillTimer] = {}
    started = time.perf_counter()

    def add(label: str, model: nn.Module, run_batches: list[dict], options=None, before=None) -> None:
        # PEFT's generate runs the wrapped model's forward, so the prefill is timed there
        timers[label] = PrefillTimer(model.get_base_model() if isinstance(model, PeftModel) else model)

        def run() -> list[torch.Tensor]:
            if before is not None:
                before()
            timer = timers[label]
            timer.seconds = 0.0
            outputs = run_condition(model, run_batches, new_tokens, options, timer)
            timer.runs.append(timer.seconds)
            return outputs

        conditions[label] = run

    add("base", copy.deepcopy(base), batches)
    routers = {}
    for name, config in PRESETS.items():
        routers[name] = attach_router(copy.deepcopy(base), small, config, base_prototypes=skills)
        add(name, routers[name].model, batches)
    default = routers["routelora"]
    routes = [tuple(row) for b in batches for row in decide_routes(default, b).tolist()]
    grouped_indices = route_batches(routes, batch)
    grouped = [collator([samples[i] for i in chunk], with_answers=False) for chunk in grouped_indices]

    decision = {"seconds": 0.0}

    def decide_all() -> None:  # the decision pass an offline evaluation makes first, timed with the condition
        start = time.perf_counter()
        for b in batches:
            decide_routes(default, b)
        decision["seconds"] += time.perf_counter() - start

    add("routelora, grouped", default.model, grouped, before=decide_all)
    # the grouped batches pad less (a route's prompts are alike), so the base runs on them too: the like-for-like
    # figure of the grouped path is its ratio to this
    add("base, grouped batches", copy.deepcopy(base), grouped)
    big = attach_router(copy.deepcopy(base), library, PRESETS["routelora"], base_prototypes=skills)
    add(f"routelora, {len(library)} experts", big.model, batches)
    load = library_load(base, library, skills)
    one = attach_router(copy.deepcopy(base), small[:1], ONE_EXPERT)
    add("one expert", one.model, batches)
    ia3 = [as_ia3(expert, base) for expert in small]
    add("routelora, (IA)^3 experts", attach_router(copy.deepcopy(base), ia3, base_prototypes=skills).model, batches)
    add("one (IA)^3 expert", attach_router(copy.deepcopy(base), ia3[:1], ONE_EXPERT).model, batches)
    with tempfile.TemporaryDirectory(prefix="routelora-bench-") as tmp:
        paths = [save_expert(expert, Path(tmp) / expert.name) for expert in small]
        peft_ia3 = PeftModel.from_pretrained(copy.deepcopy(base), save_expert(ia3[0], Path(tmp) / "ia3"))
        peft_one = PeftModel.from_pretrained(copy.deepcopy(base), paths[0], adapter_name=small[0].name)
        peft_all = PeftModel.from_pretrained(copy.deepcopy(base), paths[0], adapter_name=small[0].name)
        for expert, path in zip(small[1:], paths[1:]):
            peft_all.load_adapter(path, adapter_name=expert.name)
    add("PEFT, one adapter", peft_one, batches)
    add("PEFT, one (IA)^3 adapter", peft_ia3, batches)
    names = [small[row[0]].name if row[0] >= 0 else "__base__" for row in routes]
    mixed = [{"adapter_names": [names[i] for i in chunk]} for chunk in indices]
    add("PEFT, mixed batch", peft_all, batches, options=mixed)
    progress(f"{shape}: set up in {time.perf_counter() - started:.0f} s; timing {len(conditions)} conditions")
    with torch.no_grad():
        outputs = {label: run() for label, run in conditions.items()}  # also the checks' outputs
        for timer in timers.values():
            timer.runs.clear()
        decision["seconds"] = 0.0
        samples_s = time_samples(conditions, repeats, warmup)
    # as the totals: medians of the timed runs (time_samples runs the warm-ups first; they are not counted)
    prefill = {label: statistics.median(timer.runs[warmup:]) for label, timer in timers.items()}
    row: dict[str, Any] = {"shape": shape, "prompts": prompts, "batch": batch, "new_tokens": new_tokens}
    row |= {"experts": experts, "large_library": len(library), "rank": rank}
    row["routes"] = {name: names.count(name) for name in sorted(set(names))}
    row |= load
    row["large_library_buffer_bytes"] = sum(b.nbytes for layer in big.layers.values() for b in layer.buffers(False))
    row["small_library_buffer_bytes"] = sum(
        b.nbytes for layer in default.layers.values() for b in layer.buffers(False)
    )
    generated = prompts * new_tokens
    base_s = statistics.median(samples_s["base"])
    row["conditions"] = {}
    runs = repeats + warmup
    for label, times in samples_s.items():
        total = statistics.median(times)
        deciding = decision["seconds"] / runs if label == "routelora, grouped" else 0.0
        row["conditions"][label] = {
            "seconds": total,
            "tokens_per_s": generated / total,
            "ratio_to_base": base_s / total,
            "decide_ahead_s": deciding,
            "prefill_s": prefill[label],
            "decode_s": total - prefill[label] - deciding,
        }
    row["checks"] = token_checks(outputs, grouped_indices, indices)
    return row


def as_ia3(expert: Expert, model: nn.Module) -> Expert:
    """An (IA)^3 expert with ``expert``'s name and routing statistics, and random vectors near 1 on the (IA)^3
    targets (keys, values and the feed-forward's down projection)."""
    targets, inputs = ia3_targets(get_layout(model).targets)
    generator = torch.Generator().manual_seed(zlib.crc32(expert.name.encode()))
    sizes = {name: model.get_submodule(name).in_features for name in targets}
    widths = {name: sizes[name] if name in inputs else model.get_submodule(name).out_features for name in targets}
    vectors = {name: 1 + 0.1 * torch.randn(widths[name], generator=generator) for name in targets}
    metadata = {**expert.metadata, "kind": "ia3", "input_sizes": sizes, "targets": targets}
    gates = {name: torch.randn(sizes[name], generator=generator) for name in targets}
    lora = {"lora_A": {}, "lora_B": {}, "scaling": {}, "adapter_config": None}
    return replace(expert, **lora, gates=gates, metadata=metadata, ia3=vectors, ia3_input=tuple(inputs))


def library_load(base: nn.Module, library: list[Expert], skills: dict) -> dict[str, float]:
    """Seconds to read a library of ``library`` from disk and attach the default router to it, and its size."""
    from routelora.experts.library import ExpertLibrary, save_base_prototypes

    with tempfile.TemporaryDirectory(prefix="routelora-library-") as tmp:
        on_disk = ExpertLibrary(tmp)
        for expert in library:
            on_disk.add(expert)
        for skill, prototypes in skills.items():
            save_base_prototypes(tmp, skill, prototypes)
        size = sum(path.stat().st_size for path in Path(tmp).rglob("*") if path.is_file())
        model = copy.deepcopy(base)
        start = time.perf_counter()
        router = attach_router(model, on_disk, PRESETS["routelora"])
        seconds = time.perf_counter() - start
        router.detach()
    return {"large_library_load_s": seconds, "large_library_disk_bytes": size}


def token_checks(outputs: dict[str, list[torch.Tensor]], grouped_indices, indices) -> dict[str, float]:
    """Share of sequences whose generated tokens equal their peer's: routed against PEFT with the same adapters."""

    def by_sample(batches: list[torch.Tensor], order: list[list[int]]) -> dict[int, list[int]]:
        return {i: tokens.tolist() for chunk, out in zip(order, batches) for i, tokens in zip(chunk, out)}

    mixed = by_sample(outputs["routelora"], indices)
    peft = by_sample(outputs["PEFT, mixed batch"], indices)
    grouped = by_sample(outputs["routelora, grouped"], grouped_indices)
    one, peft_one = by_sample(outputs["one expert"], indices), by_sample(outputs["PEFT, one adapter"], indices)
    ia3, peft_ia3 = (by_sample(outputs[label], indices) for label in ("one (IA)^3 expert", "PEFT, one (IA)^3 adapter"))
    big = by_sample(outputs[next(label for label in outputs if label.endswith(" experts"))], indices)

    def agree(a: dict, b: dict) -> float:
        return sum(a[i] == b[i] for i in a) / len(a)

    return {
        "routelora_vs_peft_mixed": agree(mixed, peft),
        "grouped_vs_peft_mixed": agree(grouped, peft),
        "one_expert_vs_peft_one": agree(one, peft_one),
        "one_ia3_vs_peft_ia3": agree(ia3, peft_ia3),
        "large_library_vs_small": agree(big, mixed),
    }


def target_lines(row: dict[str, Any]) -> list[str]:
    """One line per target of the generation issue, met or not, with its figures."""
    ratios = {label: figures["ratio_to_base"] for label, figures in row["conditions"].items()}
    tiny = row["shape"] == "tiny"
    floor = 0.9 if tiny else 0.95
    large = f"routelora, {row['large_library']} experts"
    like_for_like = ratios["routelora, grouped"] / ratios["base, grouped batches"]

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return [
        f"default router, mixed batches: {ratios['routelora']:.3f}x base (target >= {floor}: "
        f"{met(ratios['routelora'] >= floor)}); grouped by route: {ratios['routelora, grouped']:.3f}x base "
        f"({met(ratios['routelora, grouped'] >= floor)}), {like_for_like:.3f}x the base on the same grouped batches",
        f"against PEFT's mixed batch ({ratios['PEFT, mixed batch']:.3f}x): mixed "
        f"{met(ratios['routelora'] > ratios['PEFT, mixed batch'])}, grouped "
        f"{met(ratios['routelora, grouped'] > ratios['PEFT, mixed batch'])}",
        f"one expert {ratios['one expert']:.3f}x against PEFT's one adapter {ratios['PEFT, one adapter']:.3f}x: "
        f"{met(ratios['one expert'] >= ratios['PEFT, one adapter'])}",
        f"{row['large_library']} experts {ratios[large]:.3f}x against {row['experts']} experts "
        f"{ratios['routelora']:.3f}x: {100 * (ratios[large] / ratios['routelora'] - 1):+.1f}% (target within 5%: "
        f"{met(abs(ratios[large] / ratios['routelora'] - 1) <= 0.05)}); read from disk ("
        f"{row['large_library_disk_bytes'] / 2**20:.0f} MiB) and attached in {row['large_library_load_s']:.2f} s, "
        f"routed buffers {row['large_library_buffer_bytes'] / 2**20:.0f} MiB "
        f"({row['small_library_buffer_bytes'] / 2**20:.1f} MiB for {row['experts']})",
        f"(IA)^3: the default router over (IA)^3 experts {ratios['routelora, (IA)^3 experts']:.3f}x base; one "
        f"(IA)^3 expert {ratios['one (IA)^3 expert']:.3f}x against PEFT's one IA3 adapter "
        f"{ratios['PEFT, one (IA)^3 adapter']:.3f}x",
        "same tokens as PEFT with the same adapters: "
        + ", ".join(f"{name} {100 * share:.0f}%" for name, share in row["checks"].items()),
    ]


def format_shape(row: dict[str, Any]) -> str:
    """A shape's Markdown table, then its target lines."""
    routes = ", ".join(f"{name} {count}" for name, count in row["routes"].items())
    lines = [
        f"{row['shape']}: {row['prompts']} prompts ({routes} by the default router), {row['experts']} experts of "
        f"rank {row['rank']}",
        "",
        "| condition | tokens/s | / base | decided ahead s | prefill s | decode s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, figures in row["conditions"].items():
        lines.append(
            f"| {label} | {figures['tokens_per_s']:.0f} | {figures['ratio_to_base']:.3f} | "
            f"{figures['decide_ahead_s']:.2f} | {figures['prefill_s']:.2f} | {figures['decode_s']:.2f} |"
        )
    return "\n".join([*lines, "", *(f"- {line}" for line in target_lines(row))])
