"""Turn samples into model batches with the processor's own chat template; the loss covers the answer only."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from routelora.data.samples import IMAGE_MARKER, Sample

IGNORE_INDEX = -100


@dataclass
class CollateStats:
    """What collation had to do to fit samples into ``max_length``."""

    batches: int = 0
    samples: int = 0
    truncated: int = 0
    """Samples whose answer was cut to fit (the prompt is never cut: that would drop image tokens)."""
    dropped: int = 0
    """Samples whose prompt alone did not fit and that were left out of their batch."""


class VLMCollator:
    """Batches for training (prompt + answer, labels on the answer and end-of-turn token) or generation (prompt).

    Works with any processor that has a chat template and takes ``text=`` and ``images=`` (LLaVA, Qwen2-VL,
    InternVL, Idefics3); the non-text outputs (``pixel_values``, ``image_grid_thw``...) are passed through.
    Sequences are padded on the left so generation continues straight from the prompt.
    """

    def __init__(self, processor, max_length: int | None = None, end_of_turn_id: int | None = None) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.max_length = max_length
        self.end_of_turn_id = end_of_turn_id if end_of_turn_id is not None else self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.end_of_turn_id
        self.stats = CollateStats()

    def prompt_text(self, sample: Sample) -> str:
        """The chat-formatted prompt, ending where the assistant's answer starts."""
        messages = []
        for user, assistant in sample.history:
            messages += [_user_message(user), _message("assistant", assistant)]
        messages.append(_user_message(sample.prompt))
        has_marker = any(part["type"] == "image" for message in messages for part in message["content"])
        if sample.image is not None and not has_marker:  # no marker: first in the conversation, as LLaVA data has it
            messages[0]["content"].insert(0, {"type": "image"})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def answer_ids(self, sample: Sample) -> list[int]:
        """Token ids the model must produce: the answer, then the end-of-turn token."""
        return self.tokenizer(sample.answer, add_special_tokens=False).input_ids + [self.end_of_turn_id]

    def __call__(self, samples: Sequence[Sample], with_answers: bool = True) -> dict[str, torch.Tensor]:
        images = [image for image in (s.load_image() for s in samples) if image is not None]
        prompts = [self.prompt_text(s) for s in samples]
        encoded = self.processor(text=prompts, images=images or None, return_tensors="pt", padding=True)
        rows, labels, keep = [], [], []
        for index, sample in enumerate(samples):
            prompt = encoded["input_ids"][index][encoded["attention_mask"][index].bool()].tolist()
            answer = self.answer_ids(sample) if with_answers else []
            if self.max_length is not None and len(prompt) + len(answer) > self.max_length:
                room = self.max_length - len(prompt)
                if room < 1 or (with_answers and room < 2):
                    self.stats.dropped += 1
                    continue
                answer = answer[:room]
                self.stats.truncated += 1
            rows.append(prompt + answer)
            labels.append([IGNORE_INDEX] * len(prompt) + answer)
            keep.append(index)
        if not rows:
            raise ValueError("every sample of the batch is longer than max_length; raise max_length")
        batch = self._pad(rows, labels if with_answers else None)
        for key, value in encoded.items():
            if key not in ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids"):
                batch[key] = value if len(keep) == len(samples) else _select_images(key, value, samples, keep)
        self.stats.batches += 1
        self.stats.samples += len(rows)
        return batch

    def _pad(self, rows: list[list[int]], labels: list[list[int]] | None) -> dict[str, torch.Tensor]:
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        label_tensor = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for index, row in enumerate(rows):
            input_ids[index, width - len(row) :] = torch.tensor(row)
            attention_mask[index, width - len(row) :] = 1
            if labels is not None:
                label_tensor[index, width - len(row) :] = torch.tensor(labels[index])
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if labels is not None:
            batch["labels"] = label_tensor
        return batch


def _message(role: str, text: str) -> dict:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _user_message(text: str) -> dict:
    """A user turn with the image part where its ``<image>`` marker is (samples hold at most one marker)."""
    if IMAGE_MARKER not in text:
        return _message("user", text)
    before, after = (part.strip() for part in text.split(IMAGE_MARKER, 1))
    parts = [{"type": "text", "text": before}] if before else []
    parts.append({"type": "image"})
    return {"role": "user", "content": parts + ([{"type": "text", "text": after}] if after else [])}


def _select_images(key: str, value: torch.Tensor, samples: Sequence[Sample], keep: list[int]) -> torch.Tensor:
    """Keep the image rows of the kept samples (one image per image sample, as the processor stacked them)."""
    image_rows, row = [], 0
    for index, sample in enumerate(samples):
        if sample.image is not None:
            if index in keep:
                image_rows.append(row)
            row += 1
    if value.shape[0] != row:
        raise ValueError(f"cannot drop an over-long sample: '{key}' is not one row per image; raise max_length")
    return value[image_rows]
