"""Greedy generation of one batch of samples: what evaluation runs batch after batch, and what the check of a
freshly trained expert runs on a few validation samples (``routelora.experts.validation``)."""

from collections.abc import Sequence

import torch
from torch import nn

from routelora.data.collate import VLMCollator
from routelora.data.samples import Sample


@torch.no_grad()
def greedy_answers(
    model: nn.Module, collator: VLMCollator, samples: Sequence[Sample], max_new_tokens: int
) -> list[str]:
    """The greedy answers (KV cache on, stopped at the end of the turn, stripped) to ``samples``, one batch."""
    device = next(model.parameters()).device
    batch = {key: value.to(device) for key, value in collator(samples, with_answers=False).items()}
    output = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=collator.end_of_turn_id,
        pad_token_id=collator.pad_id,
    )
    new_tokens = output[:, batch["input_ids"].shape[1] :]  # (batch, generated): the prompt's tokens dropped
    return [text.strip() for text in collator.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
