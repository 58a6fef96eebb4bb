"""The GPU check: for each transformers VLM family, on a random model of a mid-size config, train an expert for a
few steps and its gates, check that routed generation with that one expert gives PEFT's tokens (within bf16's
rounding), and time base against routed generation.

``scripts/gpu-check.sh`` runs it on a GPU in bf16 (about 5 minutes on one H200-class GPU, by estimate: it has not
run on one yet). ``--shape tiny --device cpu --dtype float32`` runs the same code in seconds on a CPU, which is
what the test suite does, so the GPU run meets no untested path. Inputs are text-only token ids (random models
need no processor); the vision towers are built but idle.
"""

import argparse
import tempfile
import time

import torch
import transformers as tf
from peft import LoraConfig, get_peft_model

from routelora.experts.library import expert_from_peft
from routelora.gates.train import attach_gates
from routelora.models.layout import get_layout
from routelora.nn import restore_modules
from routelora.routing.config import ONE_EXPERT, PAPER_ROUTER
from routelora.routing.model import attach_router
from routelora.training import TrainConfig, train

FAMILIES = ("llava", "qwen2_vl", "internvl", "idefics3")
SHAPES = {
    # hidden, layers, heads, kv heads, intermediate, vocab: about 0.4 B parameters in the language model
    "mid": dict(
        hidden_size=1536,
        num_hidden_layers=12,
        num_attention_heads=12,
        num_key_value_heads=4,
        intermediate_size=4096,
        vocab_size=32000,
    ),  # fmt: skip
    "tiny": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=128,
    ),  # fmt: skip
}


MROPE_SECTIONS = {"mid": [16, 24, 24], "tiny": [1, 1, 2]}
"""Qwen2-VL's rotary sections (temporal, height, width), summing to half the head width: Qwen2-VL-7B's for its
128-wide heads."""


def family_config(family: str, shape: str) -> tf.PreTrainedConfig:
    """A random-model config of ``family`` with the language model of ``shape`` and a small vision tower."""
    text = dict(**SHAPES[shape], bos_token_id=None, eos_token_id=1, pad_token_id=0)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2)
    if family == "llava":
        return tf.LlavaConfig(vision_config=tf.SiglipVisionConfig(**vision, image_size=32, patch_size=16),
                              text_config=tf.Qwen2Config(**text), image_token_index=5,
                              vision_feature_select_strategy="full", vision_feature_layer=-1)  # fmt: skip
    if family == "qwen2_vl":
        sections = MROPE_SECTIONS[shape]
        return tf.Qwen2VLConfig(
            text_config={**text, "rope_parameters": {"rope_type": "default", "mrope_section": sections}},
            vision_config=dict(depth=1, embed_dim=64, hidden_size=text["hidden_size"], num_heads=2, patch_size=14,
                               spatial_merge_size=2),  # fmt: skip
            image_token_id=5, video_token_id=6, vision_start_token_id=7,
        )  # fmt: skip
    if family == "internvl":
        return tf.InternVLConfig(vision_config=dict(**vision, image_size=[32, 32], patch_size=[16, 16]),
                                 text_config=dict(model_type="qwen2", **text), image_token_id=5)  # fmt: skip
    if family == "idefics3":
        return tf.Idefics3Config(vision_config=dict(**vision, image_size=32, patch_size=16),
                                 text_config=dict(model_type="llama", **text), image_token_id=5,
                                 scale_factor=1)  # fmt: skip
    raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


def _batches(vocab: int, batch: int, length: int, device, seed: int):
    generator = torch.Generator().manual_seed(seed)
    while True:
        ids = torch.randint(10, vocab, (batch, length), generator=generator)
        yield {
            "input_ids": ids.to(device),
            "attention_mask": torch.ones_like(ids).to(device),
            "labels": ids.to(device),
        }


def check_family(family: str, shape: str, device: str, dtype: torch.dtype, steps: int, new_tokens: int) -> dict:
    """Train, route and time one family; returns its row."""
    torch.manual_seed(0)
    model = tf.AutoModelForImageTextToText.from_config(family_config(family, shape)).to(device, dtype).eval()
    layout = get_layout(model)
    vocab = SHAPES[shape]["vocab_size"]
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=layout.targets))
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    start = time.perf_counter()
    train(peft_model, trainable, _batches(vocab, 4, 64, device, 0), TrainConfig(steps=steps, lr=1e-3), progress=False)
    expert_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        peft_model.save_pretrained(folder)
        prompt = next(_batches(vocab, 8, 32, device, 1))
        generate = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
        with torch.no_grad():
            peft_tokens = peft_model.generate(input_ids=prompt["input_ids"], attention_mask=prompt["attention_mask"],
                                              **generate)  # fmt: skip
        model = peft_model.unload()
        expert = expert_from_peft(folder, "expert", model)
    gated = attach_gates(model, expert)
    gates = [layer.gate for layer in gated.values()]
    for gate in gates:
        gate.requires_grad_(True)
    train(model, gates, _batches(vocab, 4, 64, device, 2), TrainConfig(steps=steps, lr=5e-3), progress=False)
    expert.gates = {name: layer.gate.detach().float().cpu() for name, layer in gated.items()}
    restore_modules(model, {name: layer.base for name, layer in gated.items()})

    def timed(run) -> tuple[float, torch.Tensor]:
        run()  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        begin = time.perf_counter()
        out = run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return prompt["input_ids"].shape[0] * new_tokens / (time.perf_counter() - begin), out

    def run_generate():
        with torch.no_grad():
            return model.generate(input_ids=prompt["input_ids"], attention_mask=prompt["attention_mask"], **generate)

    base_rate, _ = timed(run_generate)
    with attach_router(model, [expert], ONE_EXPERT):
        routed_rate, routed_tokens = timed(run_generate)
    with attach_router(model, [expert], PAPER_ROUTER):
        paper_rate, _ = timed(run_generate)
    length = prompt["input_ids"].shape[1]  # the prompt is echoed in both; only the new tokens are compared
    agree = (routed_tokens[:, length:] == peft_tokens[:, length:]).float().mean().item()
    parameters = sum(p.numel() for p in model.get_submodule(layout.language_model).parameters())
    return {
        "family": family,
        "language model parameters": parameters,
        "expert + gates training s": expert_seconds,
        "tokens equal to PEFT's": agree,
        "base tokens/s": base_rate,
        "routed (one expert) / base": routed_rate / base_rate,
        "paper router / base": paper_rate / base_rate,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="mid")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--min-agreement", type=float, default=0.95, help="share of tokens equal to PEFT's")
    args = parser.parse_args(argv)
    rows = []
    for family in args.families.split(","):
        row = check_family(family, args.shape, args.device, getattr(torch, args.dtype), args.steps, args.new_tokens)
        rows.append(row)
        print(" | ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    failed = [row["family"] for row in rows if row["tokens equal to PEFT's"] < args.min_agreement]
    if failed:
        raise SystemExit(f"routed generation differs from PEFT's for {', '.join(failed)}")
    return rows


if __name__ == "__main__":
    main()
