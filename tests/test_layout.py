"""Every supported family: where its language model is, which linears are targets, what stays frozen."""

import re

import pytest
from torch import nn

from families import InternVLChatModel, build_family
from routelora.errors import UnknownArchitectureError
from routelora.models import freeze_vision_and_projector, resolve_layout, summarize

EXPECTED = {
    # family: (language model path, vision, projector)
    "llava": ("model.language_model", ["model.vision_tower"], ["model.multi_modal_projector"]),
    "qwen2_vl": ("model.language_model", ["model.visual"], ["model.visual.merger"]),
    "internvl": ("model.language_model", ["model.vision_tower"], ["model.multi_modal_projector"]),
    "idefics3": ("model.text_model", ["model.vision_model"], ["model.connector"]),
}
ATTENTION_AND_MLP = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_family_targets_are_every_decoder_linear(family):
    model = build_family(family)
    layout = resolve_layout(model)
    lm_path, vision, projector = EXPECTED[family]
    assert layout.family == family
    assert layout.language_model == lm_path
    assert layout.vision == vision and layout.projector == projector
    expected = [f"{lm_path}.layers.{i}.{sub}" for i in range(2) for sub in _qualified(ATTENTION_AND_MLP)]
    assert layout.targets == expected
    assert all(isinstance(model.get_submodule(name), nn.Linear) for name in layout.targets)
    assert not any("lm_head" in t or t.startswith(tuple(vision + projector)) for t in layout.targets)
    assert layout.target_kinds() == {"q": 2, "k": 2, "v": 2, "o": 2, "mlp.gate": 2, "mlp.up": 2, "mlp.down": 2}


def _qualified(names: list[str]) -> list[str]:
    return [("self_attn." if n.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp.") + n for n in names]


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_freezing_touches_exactly_vision_and_projector(family):
    model = build_family(family)
    layout = resolve_layout(model)
    frozen = set(freeze_vision_and_projector(model, layout))
    _, vision, projector = EXPECTED[family]
    prefixes = tuple(p + "." for p in vision + projector)
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad == (name not in frozen)
        assert (name in frozen) == name.startswith(prefixes)
    assert frozen, "every family has a vision encoder"
    assert not any(name.startswith(layout.language_model + ".") for name in frozen)


def test_internvl2_remote_layout():
    model = InternVLChatModel(layers=3)
    layout = resolve_layout(model)
    assert layout.family == "internvl2_remote"
    assert layout.language_model == "language_model.model"
    assert layout.vision == ["vision_model"] and layout.projector == ["mlp1"]
    assert layout.target_kinds() == {"qkv": 3, "o": 3, "mlp.gate": 3, "mlp.up": 3, "mlp.down": 3}
    assert "language_model.output" not in layout.targets
    frozen = freeze_vision_and_projector(model, layout)
    assert {n.split(".")[0] for n in frozen} == {"vision_model", "mlp1"}


class MysteryVLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.eyes = nn.Linear(4, 8)
        self.brain = nn.Module()
        self.brain.blocks = nn.ModuleList(
            nn.ModuleDict({"up": nn.Linear(8, 8), "down": nn.Linear(8, 8)}) for _ in "ab"
        )
        self.head = nn.Linear(8, 10)


def test_unknown_architecture_says_how_to_name_it_by_hand():
    with pytest.raises(UnknownArchitectureError, match=r"--language-model.*--target-pattern"):
        resolve_layout(MysteryVLM())


def test_hand_named_language_model_and_pattern_work():
    model = MysteryVLM()
    layout = resolve_layout(model, language_model="brain")
    assert layout.family == "manual" and layout.decoder_layers == "brain.blocks"
    assert layout.targets == ["brain.blocks.0.up", "brain.blocks.0.down", "brain.blocks.1.up", "brain.blocks.1.down"]
    only_up = resolve_layout(model, language_model="brain", target_pattern=r"\.up$")
    assert only_up.targets == ["brain.blocks.0.up", "brain.blocks.1.up"]


def test_target_pattern_on_a_known_family():
    layout = resolve_layout(build_family("llava"), target_pattern=r"(q|v)_proj$")
    assert all(re.search(r"(q|v)_proj$", t) for t in layout.targets) and len(layout.targets) == 4


def test_bad_hand_named_paths_are_refused():
    with pytest.raises(UnknownArchitectureError, match="does not exist"):
        resolve_layout(MysteryVLM(), language_model="nope")
    with pytest.raises(UnknownArchitectureError, match="matches target pattern"):
        resolve_layout(MysteryVLM(), language_model="brain", target_pattern="zzz")


def test_summary_counts_partition_the_parameters():
    model = build_family("llava")
    summary = summarize(model, resolve_layout(model))
    parts = summary.parameters_language_model + summary.parameters_vision + summary.parameters_projector
    lm_head_untied = 0 if model.config.tie_word_embeddings else model.lm_head.weight.numel()
    assert parts + lm_head_untied == summary.parameters_total
    assert summary.target_count == 14 and summary.decoder_layers == 2


def test_image_token_id_reads_either_key_and_keeps_id_zero() -> None:
    from types import SimpleNamespace

    from routelora.models.layout import image_token_id

    assert image_token_id(SimpleNamespace(image_token_id=0, image_token_index=7)) == 0
    assert image_token_id(SimpleNamespace(image_token_index=32000)) == 32000
    assert image_token_id(SimpleNamespace(image_token_id=None, image_token_index=5)) == 5
    assert image_token_id(SimpleNamespace()) is None


def test_text_token_mask_drops_padding_and_image_placeholders() -> None:
    import torch

    from routelora.models.layout import text_token_mask

    ids = torch.tensor([[5, 0, 0, 7, 8], [9, 9, 0, 7, 8]])
    attention = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert text_token_mask(ids, attention, 0).tolist() == [
        [False, False, False, True, True],
        [True, True, False, True, True],
    ]
    assert text_token_mask(ids, None, None).all()
    assert text_token_mask(ids, attention, None).tolist() == attention.bool().tolist()
