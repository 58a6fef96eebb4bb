"""What routing adds to a prefill: the default router's decision and routed prefills against a base prefill.

Plain functions behind ``routelora bench decision``: it prints figures, it never asserts a speed. The models are
LLaVAs built from the embedded kit's recipe with random weights: the tiny base's shape, and a realistic language
model shape (24 layers, 2048 wide, grouped-query attention). The vocabulary stays the tiny one (about a thousand
tokens), so the base prefill's output layer is cheap and the measured overhead is an upper bound of what a real
150k-token vocabulary would show.
"""

import math
import statistics
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from routelora.bench.timing import time_samples
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.embedded.world.scenes import sample_scene
from routelora.experts.expert import EMBEDDINGS_KEY, Expert
from routelora.experts.fingerprint import base_fingerprint
from routelora.gates.acceptance import (
    CALIBRATION_KEY,
    CONVERSATION_CALIBRATION_KEY,
    CONVERSATION_KEYS,
    SHRINKAGE,
    SHRINKAGE_KEY,
)
from routelora.gates.features import COUNT_KEY, FEATURE_PARTS, MEAN_KEY, SCATTER_KEY, part_width
from routelora.gates.runs import PromptLayout
from routelora.models.layout import get_layout
from routelora.routing.config import PRESETS, RouterConfig
from routelora.routing.context import IMAGE
from routelora.routing.model import attach_router

SHAPES = {
    "tiny": TinyVLMRecipe(),
    "realistic": TinyVLMRecipe(
        text_hidden=2048, text_layers=24, text_heads=16, text_kv_heads=8, text_intermediate=5632
    ),
}
"""Model shapes benchmarked, by name."""


def random_experts(
    model: nn.Module, count: int, rank: int, seed: int = 0, layout: PromptLayout | None = None
) -> list[Expert]:
    """``count`` random LoRA experts on every adapter target of ``model``, with random routing prototypes and
    feature statistics (the decision's cost does not depend on their values); given the processor's prompt
    ``layout``, with random open-world regions too."""
    generator = torch.Generator().manual_seed(seed)
    prompt_layout, (layout, fingerprint) = layout, (get_layout(model), base_fingerprint(model))
    hidden = model.get_input_embeddings().embedding_dim
    width = part_width(hidden) * len(FEATURE_PARTS["text_image"])
    experts = []
    for index in range(count):
        lora_A, lora_B, prototypes = {}, {}, {}
        for name in layout.targets:
            d_out, d_in = model.get_submodule(name).weight.shape
            lora_A[name] = torch.randn(rank, d_in, generator=generator) / math.sqrt(d_in)
            lora_B[name] = torch.randn(d_out, rank, generator=generator) / math.sqrt(rank)
            prototypes[name] = torch.randn(d_in, generator=generator)
        prototypes[EMBEDDINGS_KEY] = torch.randn(hidden, generator=generator)
        prototypes |= random_statistics(width, generator)
        if prompt_layout is not None:
            distances = torch.rand(128, generator=generator).sort().values * 2 * width  # about the features' scale
            conversation = random_statistics(width // len(FEATURE_PARTS["text_image"]), generator)
            prototypes |= {
                CALIBRATION_KEY: distances,
                SHRINKAGE_KEY: torch.tensor([SHRINKAGE]),
                **dict(zip(CONVERSATION_KEYS, conversation.values())),
                CONVERSATION_CALIBRATION_KEY: distances / 2,
                **prompt_layout.tensors(),
            }
        metadata = {"name": f"expert{index}", "base_fingerprint": fingerprint, "targets": list(layout.targets)}
        experts.append(
            Expert(
                f"expert{index}",
                None,
                lora_A,
                lora_B,
                dict.fromkeys(lora_A, 2.0),
                gates={name: prototypes[name] for name in layout.targets},
                prototypes=prototypes,
                metadata=metadata,
            )
        )
    return experts


def random_statistics(width: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Statistics of 256 random feature vectors."""
    features = torch.randn(256, width, generator=generator)
    centred = features - features.mean(0)
    return {COUNT_KEY: torch.tensor([256.0]), MEAN_KEY: features.mean(0), SCATTER_KEY: centred.T @ centred}


def prefill_batch(processor, batch: int, words: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``batch`` prompts of one scene image and about ``words`` words each, in sentences of six words (the regions'
    most runs, and remainders, from about 72 words on)."""
    import random

    rng = random.Random(seed)
    images = [sample_scene(rng, 1, 3).render(processor.image_processor.size["height"]) for _ in range(batch)]
    text = " ".join(["describe the shapes in the picture."] * max(1, words // 6))
    messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]] * batch
    prompts = [processor.apply_chat_template(m, add_generation_prompt=True) for m in messages]
    return dict(processor(images=images, text=prompts, return_tensors="pt", padding=True))


@torch.no_grad()
def bench_shape(
    shape: str, experts: int = 4, rank: int = 8, batch: int = 4, words: int = 60, repeats: int = 5, warmup: int = 1
) -> dict[str, Any]:
    """Median prefill seconds of the base and of every router preset, on one model shape, side by side."""
    model, processor = build_tiny_vlm(SHAPES[shape])
    inputs = prefill_batch(processor, batch, words)
    library = random_experts(model, experts, rank, layout=PromptLayout.from_processor(processor))
    skills = {f"skill{i}": random_experts(model, 1, rank, seed=100 + i)[0].prototypes for i in range(3)}

    def prefill() -> None:
        model(**inputs)

    # One timing loop per condition, attached for its duration; interleaving is not possible with a router that
    # changes the model in place, so each condition's median comes from consecutive calls.
    samples = time_samples({"base": prefill}, repeats, warmup)
    for name, config in PRESETS.items():
        with attach_router(model, library, config, base_prototypes=skills):
            samples |= {name: time_samples({name: prefill}, repeats, warmup)[name]}
    samples |= {"base (again)": time_samples({"base": prefill}, repeats, warmup)["base"]}
    base = statistics.median(samples["base"] + samples["base (again)"])
    row = {"shape": shape, "tokens": int(inputs["input_ids"].numel()), "experts": experts, "rank": rank}
    row["base_s"] = base
    for name in PRESETS:
        row[f"{name}_ratio"] = statistics.median(samples[name]) / base
    row["decision_s"] = decision_seconds(model, library, skills, inputs, repeats)
    row["decision_share"] = row["decision_s"] / base
    any_run = replace(PRESETS["routelora"], conversation_region=False)
    row["decision_any_run_share"] = decision_seconds(model, library, skills, inputs, repeats, any_run) / base
    return row


def decision_seconds(
    model: nn.Module,
    library: list[Expert],
    skills: dict,
    inputs: dict,
    repeats: int,
    config: RouterConfig | None = None,
) -> float:
    """Median seconds of the default router's decision alone (pooled features, the experts' regions over every run
    of the prompts' sentences with their conversation regions, and the discriminant) for one batch; or of
    ``config``'s."""
    language_model = model.get_submodule(get_layout(model).language_model)
    with attach_router(model, library, config or PRESETS["routelora"], base_prototypes=skills) as router:
        captured = {}

        def grab_embeddings(module: nn.Module, args: tuple, kwargs: dict) -> None:
            captured["embeddings"] = kwargs["inputs_embeds"]

        grab = language_model.register_forward_pre_hook(grab_embeddings, with_kwargs=True)
        model(**inputs)
        grab.remove()
        context = router.context
        text, image, segments = context.pool_mask, context.token_kinds == IMAGE, context.segments

        def decide() -> None:
            router.decide(captured["embeddings"], text, image, segments)

        times = time_samples({"decision": decide}, repeats, 1)
    return statistics.median(times["decision"])
