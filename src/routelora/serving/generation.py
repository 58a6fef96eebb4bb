"""One batch of requests through ``model.generate`` with the KV cache: each row its own length, stop strings and
stream of text, in one call.

Rows finish on their own (the end of turn, a stop string, their ``max_tokens``) through a transformers
``StoppingCriteria`` that returns a flag per row, so requests with different limits share a batch; the same
criterion sees every new token and streams each row's text as it grows.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from routelora.data.collate import VLMCollator
from routelora.serving.schema import ChatRequest, Sampling

REPLACEMENT = "\ufffd"
"""What a byte-level tokenizer decodes half of a UTF-8 character to: held back until the character is whole."""


@dataclass
class RowState:
    """What one request has produced so far."""

    max_tokens: int
    stop: tuple[str, ...]
    emit: Callable[[str], None] | None
    """Called with each new piece of text (streaming requests)."""
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0
    """Characters of :attr:`text` already emitted."""
    finish_reason: str | None = None


class RowTracker(StoppingCriteria):
    """Per row: collect new tokens, find the end of turn and stop strings, stream text; says which rows are done."""

    def __init__(self, rows: list[RowState], end_of_turn: int, decode: Callable) -> None:
        self.rows = rows
        self.end_of_turn = end_of_turn
        self.decode = decode

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        newest = input_ids[:, -1].tolist()  # (batch,) the token each row just got
        for row, token in zip(self.rows, newest):
            if row.finish_reason is None:
                self._add(row, token)
        return torch.tensor([row.finish_reason is not None for row in self.rows], device=input_ids.device)

    def _add(self, row: RowState, token: int) -> None:
        if token == self.end_of_turn:
            row.finish_reason = "stop"
        else:
            row.tokens.append(token)
            row.text = self.decode(row.tokens)
            cut = min((i for i in (row.text.find(s) for s in row.stop) if i >= 0), default=-1)
            if cut >= 0:
                row.text, row.finish_reason = row.text[:cut], "stop"
            elif len(row.tokens) >= row.max_tokens:
                row.finish_reason = "length"
        self._stream(row)

    def _stream(self, row: RowState) -> None:
        """Emit the text that can no longer change: never a half character, nor the start of a stop string, nor
        whitespace that may turn out to be the answer's end (answers are stripped, as ``routelora predict``'s)."""
        if row.emit is None:
            return
        visible = row.text.lstrip()
        if row.finish_reason is None:
            hold = max((len(s) - 1 for s in row.stop), default=0)
            visible = visible[: len(visible) - hold] if hold else visible
            visible = visible.rstrip().removesuffix(REPLACEMENT)
        else:
            visible = visible.rstrip()
        if len(visible) > row.sent:
            row.emit(visible[row.sent :])
            row.sent = len(visible)


def generate_rows(
    model: torch.nn.Module,
    collator: VLMCollator,
    requests: Sequence[ChatRequest],
    emitters: Sequence[Callable[[str], None] | None],
    batch: dict[str, torch.Tensor],
) -> list[RowState]:
    """Generate every request of ``batch`` (collated from their samples, in order) with their common sampling."""
    tokenizer = collator.tokenizer
    rows = [RowState(r.max_tokens, r.stop, emit) for r, emit in zip(requests, emitters)]

    def decode(tokens: list[int]) -> str:
        return tokenizer.decode(tokens, skip_special_tokens=True)

    tracker = RowTracker(rows, collator.end_of_turn_id, decode)
    sampling: Sampling = requests[0].sampling
    options = {"do_sample": False}
    if not sampling.greedy:
        options = {"do_sample": True, "temperature": sampling.temperature or 1.0, "top_p": sampling.top_p or 1.0}
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
    device = next(model.parameters()).device
    with torch.no_grad():
        model.generate(
            **{key: value.to(device) for key, value in batch.items()},
            max_new_tokens=max(row.max_tokens for row in rows),
            min_new_tokens=sampling.min_tokens or None,
            eos_token_id=collator.end_of_turn_id,
            pad_token_id=collator.pad_id,
            stopping_criteria=StoppingCriteriaList([tracker]),
            **options,
        )
    for row in rows:
        row.finish_reason = row.finish_reason or "length"
        row.text = row.text.strip()
    return rows
