"""The embedded tiny VLM: deterministic, saved and loaded like any checkpoint, generates with the KV cache."""

import pytest
import torch
from PIL import Image

from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.embedded.tokenizer import IMAGE_TOKEN
from routelora.models import get_layout, load_vlm, save_checkpoint

CORPUS = [
    "What colour is the circle? A. red B. blue C. green D. yellow",
    "a red circle above a blue square",
    "Is the hypothesis entailed? entailment neutral contradiction",
] * 20


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_vlm(TinyVLMRecipe(), CORPUS)


def _batch(processor, texts: list[str], colours: list[tuple[int, int, int]]):
    prompts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for text in texts
    ]
    images = [Image.new("RGB", (48, 48), colour) for colour in colours]
    return processor(text=prompts, images=images, return_tensors="pt", padding=True)


def test_recipe_is_validated():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        TinyVLMRecipe(image_size=50)
    with pytest.raises(ValueError, match="text_heads"):
        TinyVLMRecipe(text_heads=5)


def test_size_and_layout(tiny):
    model, processor = tiny
    count = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < count < 5_000_000
    layout = get_layout(model)
    assert layout.family == "llava" and len(layout.targets) == 7 * TinyVLMRecipe().text_layers


def test_same_seed_same_weights_other_seed_other_weights(tiny):
    again, _ = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    other, _ = build_tiny_vlm(TinyVLMRecipe(seed=1), CORPUS)
    for (name, a), b in zip(tiny[0].state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, c) for a, c in zip(tiny[0].state_dict().values(), other.state_dict().values()))


def test_tokenizer_encodes_words_it_never_saw(tiny):
    tokenizer = tiny[1].tokenizer
    text = "Zebrafish quaggas: 42% über naïve 漢字!"
    ids = tokenizer(text).input_ids
    assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text
    assert len(tokenizer("a red circle above a blue square").input_ids) <= 8  # seen words are merged


def test_processor_expands_one_image_token_per_patch(tiny):
    model, processor = tiny
    batch = _batch(processor, ["What colour is the circle?"], [(255, 0, 0)])
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert (batch.input_ids == image_id).sum().item() == TinyVLMRecipe().image_tokens == 9
    assert batch.pixel_values.shape == (1, 3, 48, 48)


def test_save_then_load_gives_identical_logits(tiny, tmp_path):
    model, processor = tiny
    save_checkpoint(model, processor, tmp_path / "tiny", extra={"recipe": "test"})
    loaded, loaded_processor = load_vlm(tmp_path / "tiny", device="cpu")
    batch = _batch(processor, ["What colour is the circle?", "Describe."], [(255, 0, 0), (0, 0, 255)])
    again = _batch(loaded_processor, ["What colour is the circle?", "Describe."], [(255, 0, 0), (0, 0, 255)])
    assert torch.equal(batch.input_ids, again.input_ids) and torch.equal(batch.pixel_values, again.pixel_values)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**again).logits)


def test_save_refuses_a_non_empty_directory_and_leaves_it_intact(tiny, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="not empty"):
        save_checkpoint(*tiny, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_cached_and_uncached_greedy_generation_agree():
    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    with torch.no_grad():  # sharpen the random model so greedy choices are not near-ties
        for parameter in model.model.language_model.parameters():
            parameter.mul_(4.0)
    batch = _batch(processor, ["What colour is the circle?", "Describe the image please."], [(255, 0, 0), (0, 9, 99)])
    settings = dict(max_new_tokens=12, do_sample=False, min_new_tokens=12)
    with torch.no_grad():
        cached = model.generate(**batch, use_cache=True, **settings)
        uncached = model.generate(**batch, use_cache=False, **settings)
    assert cached.shape[1] == batch.input_ids.shape[1] + 12
    assert torch.equal(cached, uncached)
    assert len(set(cached[0, -12:].tolist())) > 1, "generation should not be a single repeated token"
