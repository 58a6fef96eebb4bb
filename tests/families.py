"""Tiny random instances of each supported VLM family, built locally from configs (no downloads)."""

import torch
import transformers as tf
from torch import nn


def _text(**extra) -> dict:
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        bos_token_id=None,
        eos_token_id=1,
        pad_token_id=0,
        **extra,
    )


def _vision(**extra) -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, **extra)


def family_configs() -> dict[str, tf.PreTrainedConfig]:
    """One tiny config per transformers-native family."""
    return {
        "llava": tf.LlavaConfig(
            vision_config=tf.SiglipVisionConfig(**_vision(image_size=32, patch_size=16)),
            text_config=tf.Qwen2Config(**_text()),
            image_token_index=5,
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
        ),
        "qwen2_vl": tf.Qwen2VLConfig(
            text_config=_text(rope_parameters={"rope_type": "default", "mrope_section": [2, 2, 4]}),
            vision_config=dict(
                depth=1, embed_dim=32, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2
            ),
            image_token_id=5,
            video_token_id=6,
            vision_start_token_id=7,
        ),
        "internvl": tf.InternVLConfig(
            vision_config=_vision(image_size=[32, 32], patch_size=[16, 16]),
            text_config=dict(model_type="qwen2", **_text()),
            image_token_id=5,
        ),
        "idefics3": tf.Idefics3Config(
            vision_config=_vision(image_size=32, patch_size=16),
            text_config=dict(model_type="llama", **_text()),
            image_token_id=5,
            scale_factor=1,
        ),
    }


def build_family(name: str) -> nn.Module:
    """A tiny random instance of family ``name``."""
    torch.manual_seed(0)
    return tf.AutoModelForImageTextToText.from_config(family_configs()[name]).eval()


class _InternLM2Layer(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.attention = nn.Module()
        self.attention.wqkv = nn.Linear(d, 3 * d, bias=False)
        self.attention.wo = nn.Linear(d, d, bias=False)
        self.feed_forward = nn.Module()
        self.feed_forward.w1 = nn.Linear(d, 2 * d, bias=False)
        self.feed_forward.w3 = nn.Linear(d, 2 * d, bias=False)
        self.feed_forward.w2 = nn.Linear(2 * d, d, bias=False)
        self.attention_norm = nn.LayerNorm(d)


class InternVLChatModel(nn.Module):
    """Stand-in with the module names of the paper's InternVL2 remote code (vision_model, mlp1, InternLM2)."""

    def __init__(self, d: int = 16, layers: int = 2) -> None:
        super().__init__()
        self.config = type("Config", (), {"model_type": "internvl_chat"})()
        self.vision_model = nn.Sequential(nn.Linear(12, d), nn.Linear(d, d))
        self.mlp1 = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.language_model = nn.Module()
        self.language_model.model = nn.Module()
        self.language_model.model.tok_embeddings = nn.Embedding(64, d)
        self.language_model.model.layers = nn.ModuleList(_InternLM2Layer(d) for _ in range(layers))
        self.language_model.output = nn.Linear(d, 64, bias=False)
