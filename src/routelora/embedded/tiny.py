"""The embedded tiny VLM: a LLaVA with a SigLIP vision tower and a Qwen2 text model, small enough for a CPU.

It is built from the same transformers classes as full-size checkpoints and saved with ``save_pretrained``, so
everything downstream loads it with :func:`routelora.load_vlm` like any other model.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from transformers import (
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    Qwen2Config,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
)

from routelora.embedded.tokenizer import IMAGE_TOKEN, train_tokenizer


@dataclass(frozen=True)
class TinyVLMRecipe:
    """Every choice that determines the tiny VLM; equal recipes build identical checkpoints."""

    seed: int = 0
    """Seed of the weight initialisation."""
    image_size: int = 48
    """Side of the square input images, in pixels."""
    patch_size: int = 16
    """Side of a vision patch; (image_size / patch_size)^2 image tokens reach the language model."""
    vision_hidden: int = 64
    """Width of the SigLIP vision tower."""
    vision_layers: int = 2
    """Depth of the SigLIP vision tower."""
    vision_heads: int = 2
    """Attention heads of the vision tower."""
    text_hidden: int = 192
    """Width of the Qwen2 language model."""
    text_layers: int = 4
    """Number of decoder layers of the language model."""
    text_heads: int = 6
    """Query heads of the language model."""
    text_kv_heads: int = 2
    """Key/value heads of the language model (grouped-query attention, as in Qwen2)."""
    text_intermediate: int = 512
    """Width of the language model's MLP."""
    vocab_size: int = 1024
    """Target size of the byte-level BPE vocabulary, special tokens included."""
    max_positions: int = 512
    """Longest sequence the rotary embeddings are set up for."""

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.text_hidden % self.text_heads or self.text_heads % self.text_kv_heads:
            raise ValueError("text_hidden must divide by text_heads, and text_heads by text_kv_heads")
        if self.vision_hidden % self.vision_heads:
            raise ValueError("vision_hidden must divide by vision_heads")
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be at least 300 (256 bytes plus special tokens and merges)")

    @property
    def image_tokens(self) -> int:
        """Image tokens per image seen by the language model."""
        return (self.image_size // self.patch_size) ** 2


def default_corpus() -> list[str]:
    """Texts the tokenizer is trained on: the procedural task world's prompts and answers."""
    from routelora.embedded.world import world_corpus

    return world_corpus(seed=0)


def build_tiny_processor(recipe: TinyVLMRecipe, corpus: Iterable[str] | None = None) -> LlavaProcessor:
    """Tokenizer (trained on ``corpus``), SigLIP image processor and chat template of the tiny VLM."""
    tokenizer = train_tokenizer(default_corpus() if corpus is None else corpus, recipe.vocab_size)
    side = {"height": recipe.image_size, "width": recipe.image_size}
    image_processor = SiglipImageProcessorPil(size=side, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=recipe.patch_size,
        vision_feature_select_strategy="full",
        chat_template=tokenizer.chat_template,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=0,
    )


def build_tiny_vlm(
    recipe: TinyVLMRecipe | None = None, corpus: Iterable[str] | None = None
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Build the untrained tiny VLM and its processor, deterministically from the recipe."""
    recipe = recipe or TinyVLMRecipe()
    processor = build_tiny_processor(recipe, corpus)
    tokenizer = processor.tokenizer
    vision = SiglipVisionConfig(
        hidden_size=recipe.vision_hidden,
        intermediate_size=4 * recipe.vision_hidden,
        num_hidden_layers=recipe.vision_layers,
        num_attention_heads=recipe.vision_heads,
        image_size=recipe.image_size,
        patch_size=recipe.patch_size,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=recipe.text_hidden,
        intermediate_size=recipe.text_intermediate,
        num_hidden_layers=recipe.text_layers,
        num_attention_heads=recipe.text_heads,
        num_key_value_heads=recipe.text_kv_heads,
        max_position_embeddings=recipe.max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=recipe.image_tokens,
        vision_feature_select_strategy="full",  # SigLIP has no CLS token to drop
        vision_feature_layer=-1,
        tie_word_embeddings=True,
    )
    torch.manual_seed(recipe.seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.eval()
    return model, processor
