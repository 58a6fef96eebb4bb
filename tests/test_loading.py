"""load_vlm: by path, with clear errors for every kind of bad input."""

import json

import pytest
import torch

from families import build_family
from routelora.errors import ModelNotFoundError, RemoteCodeRequiredError, UnknownArchitectureError
from routelora.models import get_layout, load_vlm


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llava")
    build_family("llava").save_pretrained(path)
    return path


def test_load_by_path_gives_the_same_model(llava_dir):
    reference = build_family("llava")
    model, processor = load_vlm(llava_dir, device="cpu")
    assert processor is None  # no processor was saved; loading still works
    assert get_layout(model).family == "llava"
    ids = torch.tensor([[3, 4, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits)
    assert next(model.parameters()).dtype == torch.float32


def test_dtype_option(llava_dir):
    model, _ = load_vlm(llava_dir, device="cpu", dtype="bfloat16", with_processor=False)
    assert next(model.parameters()).dtype == torch.bfloat16


def test_missing_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_vlm(tmp_path / "nowhere" / "model")


def test_directory_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_vlm(tmp_path)


def test_broken_config_names_the_file_and_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llava",\n oops}')
    with pytest.raises(ModelNotFoundError, match=r"config.json is not valid JSON \(line 2"):
        load_vlm(tmp_path)


def test_remote_code_refused_unless_allowed(tmp_path):
    config = {"model_type": "internvl_chat", "auto_map": {"AutoModel": "modeling_internvl_chat.InternVLChatModel"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(RemoteCodeRequiredError, match="trust_remote_code=True"):
        load_vlm(tmp_path)


def test_pickled_weights_are_never_loaded(tmp_path, llava_dir):
    (tmp_path / "config.json").write_text((llava_dir / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ModelNotFoundError, match="no safetensors weights.*pytorch_model.bin"):
        load_vlm(tmp_path)


def test_unknown_family_fails_at_load_and_works_by_hand(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    Qwen2ForCausalLM(
        Qwen2Config(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            vocab_size=32,
        )
    ).save_pretrained(tmp_path)
    with pytest.raises(UnknownArchitectureError, match="--language-model"):
        load_vlm(tmp_path)
    model, _ = load_vlm(tmp_path, language_model="model", with_processor=False)
    assert get_layout(model).targets[0] == "model.layers.0.self_attn.q_proj"
    assert len(get_layout(model).targets) == 7
