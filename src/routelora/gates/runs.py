"""The runs of a prompt's sentences: where an instruction sits inside conversation.

Users wrap an instruction in a greeting, a sentence about themselves and thanks. Pooled over the whole prompt, such
words pull the features a long way from every task's statistics (docs/routing.md). A task's instruction, though, is
still there, as one or more whole sentences: pooled over just those sentences (and the chat template around the
user's message, which every prompt has), the features are the task's own again. So an expert's acceptance test
scores every contiguous run of the prompt's sentences and keeps the run that fits it best
(:mod:`routelora.gates.acceptance`); a general question holds no run of a task's sentences and stays far from it.

A run may not leave out just anything, though: a general question's options and answer format are sentences too,
and the question alone can look like a task's request ("Which shape is in the picture?" beside "Caption this
picture."). So each run also carries the pooled words of the sentences it leaves out (its remainder), which an
expert's region accepts only where they look like what the task's own prompts leave out: conversation.

Which tokens end a sentence and which tokens the chat template puts around a message come from the tokenizer, once,
when an expert's statistics are computed (:class:`PromptLayout`), and are saved with them.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch

from routelora.gates.features import FEATURE_PARTS, narrow, pool_parts
from routelora.nn import standardise

SENTENCE_END = ".?!:\n"
"""A token whose text holds one of these characters ends a sentence."""
MAX_SEGMENTS = 12
"""Sentences told apart per prompt (longer prompts' last sentences are joined into one): at most 78 runs."""
FIXED, OUTSIDE = -1, -2
"""Segment ids of the chat template's tokens (in every run) and of tokens outside the prompt's text."""
LAYOUT_KEYS = ("routing.sentence_ends", "routing.template_prefix", "routing.template_suffix")


@dataclass(frozen=True)
class PromptLayout:
    """The tokenizer's facts that a prompt's runs need."""

    sentence_ends: torch.Tensor
    """(ends,) int64, sorted: the ids of every token whose text ends a sentence (:data:`SENTENCE_END`)."""
    prefix: torch.Tensor
    """(p,) int64: the text tokens the chat template puts before a user's message."""
    suffix: torch.Tensor
    """(s,) int64: those it puts after it (the assistant's turn header included)."""

    @classmethod
    def from_processor(cls, processor) -> "PromptLayout":
        """Read the layout off a processor: decode every token id, and render two one-word messages through the chat
        template (what they share at either end is the template)."""
        tokenizer = getattr(processor, "tokenizer", processor)
        ends = [i for i in range(len(tokenizer)) if any(c in tokenizer.decode([i]) for c in SENTENCE_END)]
        rendered = [_template_ids(processor, word) for word in ("alpha", "omega")]
        prefix = 0
        while prefix < min(map(len, rendered)) and rendered[0][prefix] == rendered[1][prefix]:
            prefix += 1
        suffix = 0
        while suffix < min(map(len, rendered)) - prefix and rendered[0][-1 - suffix] == rendered[1][-1 - suffix]:
            suffix += 1
        first = rendered[0]
        return cls(
            torch.tensor(ends, dtype=torch.long),
            torch.tensor(first[:prefix], dtype=torch.long),
            torch.tensor(first[len(first) - suffix :], dtype=torch.long),
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        """The saved form, beside an expert's statistics."""
        return dict(zip(LAYOUT_KEYS, (self.sentence_ends, self.prefix, self.suffix)))

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "PromptLayout | None":
        """The layout saved in a prototypes file; None where it has none (written by an older routelora)."""
        if not all(key in tensors for key in LAYOUT_KEYS):
            return None
        return cls(*(tensors[key].long() for key in LAYOUT_KEYS))

    def same_as(self, other: "PromptLayout") -> bool:
        return all(torch.equal(a, b) for a, b in zip(self.tensors().values(), other.tensors().values()))


def _template_ids(processor, word: str) -> list[int]:
    messages = [{"role": "user", "content": [{"type": "text", "text": word}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(text=[text], return_tensors="pt")["input_ids"][0].tolist()


def segment_ids(input_ids: torch.Tensor, text_mask: torch.Tensor, layout: PromptLayout) -> torch.Tensor:
    """(batch, seq) each token's sentence: 0, 1, ... over the message's text tokens, :data:`FIXED` for the chat
    template's tokens around it, :data:`OUTSIDE` for image and padding tokens and for a sentence of stop tokens
    alone. A row whose text does not start and end with the template is all message."""
    segments = torch.full_like(input_ids, OUTSIDE)
    ends = layout.sentence_ends.to(input_ids.device)
    prefix, suffix = layout.prefix.to(input_ids.device), layout.suffix.to(input_ids.device)
    for row in range(input_ids.shape[0]):
        positions = text_mask[row].nonzero().flatten()  # (text,)
        ids = input_ids[row, positions]
        head = len(prefix) if _starts_with(ids, prefix) else 0
        tail = len(suffix) if _ends_with(ids[head:], suffix) else 0
        message = ids[head : len(ids) - tail]
        stops = torch.isin(message, ends).long()  # (message,)
        sentence = stops.cumsum(0) - stops  # a sentence ends with its stop token
        # a sentence of stop tokens alone (the newline after an image, a blank line between sentences) holds no
        # word: no run pools it, so an instruction pools the same tokens however the user's lines are broken
        words = torch.zeros(int(sentence.max()) + 1 if len(sentence) else 0, dtype=torch.long)
        words.index_add_(0, sentence, 1 - stops)
        wordless = words[sentence] == 0  # (message,)
        kept = (words > 0).long()
        sentence = (kept.cumsum(0) - kept)[sentence].clamp(max=MAX_SEGMENTS - 1)  # renumbered without them
        values = torch.full_like(ids, FIXED)
        values[head : len(ids) - tail] = torch.where(wordless, OUTSIDE, sentence)
        segments[row, positions] = values
    return segments


def _starts_with(ids: torch.Tensor, start: torch.Tensor) -> bool:
    return len(ids) >= len(start) and torch.equal(ids[: len(start)], start)


def _ends_with(ids: torch.Tensor, end: torch.Tensor) -> bool:
    return len(ids) >= len(end) and torch.equal(ids[len(ids) - len(end) :], end)


def run_spans(segments: int = MAX_SEGMENTS) -> torch.Tensor:
    """(runs, 2) the first and last sentence of every run, the whole message first."""
    pairs = [(first, last) for first in range(segments) for last in range(first, segments)]
    pairs.sort(key=lambda pair: (pair != (0, segments - 1), pair))
    return torch.tensor(pairs, dtype=torch.long)


def image_width(runs: torch.Tensor) -> int:
    """Features at the end of every run of :func:`run_features` (``text_image``) that are the image part, the same
    for every run of a prompt."""
    return runs.shape[-1] // 2


class PromptRuns(NamedTuple):
    """Every run of a batch's prompts, and what each leaves out."""

    features: torch.Tensor
    """(batch, runs, F) each run's pooled features (the chat template's tokens with its sentences; the image)."""
    valid: torch.Tensor
    """(batch, runs) bool: the runs that exist (a prompt of 3 sentences has 6); run 0 is the whole prompt."""
    remainders: torch.Tensor
    """(batch, runs, W) the pooled text of the message's sentences outside each run (zeros where none)."""
    dropped: torch.Tensor
    """(batch, runs) bool: the run leaves some sentence of the message out."""


def run_features(
    embeddings: torch.Tensor, segments: torch.Tensor, image_mask: torch.Tensor | None, features: str
) -> PromptRuns:
    """Pooled features of every run of each prompt's sentences, as :func:`~routelora.gates.features.
    sequence_features` pools a whole prompt, with the pooled text each run leaves out (:class:`PromptRuns`).

    embeddings: (batch, seq, d) the language model's input embeddings; segments: (batch, seq) from
    :func:`segment_ids`; image_mask: (batch, seq) bool or None.
    """
    tokens = standardise(embeddings.float())  # (batch, seq, d)
    batch, _, hidden = tokens.shape
    columns = segments.clamp(min=FIXED) + 1  # (batch, seq) 0: template, 1 + j: sentence j
    member = torch.nn.functional.one_hot(columns, MAX_SEGMENTS + 1).to(tokens.dtype)  # (batch, seq, 1 + S)
    member = member * (segments != OUTSIDE).to(tokens.dtype)[..., None]
    sums = member.transpose(1, 2) @ tokens  # (batch, 1 + S, d)
    counts = member.sum(1)  # (batch, 1 + S)
    present = segments.amax(1) + 1  # (batch,) sentences in each message
    spans = run_spans().to(tokens.device)  # (runs, 2)
    total = torch.cat([sums.new_zeros(batch, 1, hidden), sums[:, 1:].cumsum(1)], 1)  # (batch, 1 + S, d)
    counted = torch.cat([counts.new_zeros(batch, 1), counts[:, 1:].cumsum(1)], 1)  # (batch, 1 + S)
    first, last = spans[:, 0], spans[:, 1]
    last = torch.minimum(last[None], (present - 1).clamp(min=0)[:, None])  # (batch, runs) the whole message reaches
    # its own last sentence; any other run past it is a duplicate and not kept
    sentences_sum = total.gather(1, (last + 1)[..., None].expand(-1, -1, hidden)) - total[:, first]  # (b, runs, d)
    sentences_count = counted.gather(1, last + 1) - counted[:, first]  # (batch, runs)
    run_sum, run_count = sums[:, :1] + sentences_sum, counts[:, :1] + sentences_count
    left_count = counted[:, -1:] - sentences_count  # (batch, runs) message tokens outside the run
    remainders = (total[:, -1:] - sentences_sum) / left_count.clamp(min=1)[..., None]  # (batch, runs, d)
    whole = torch.arange(len(spans), device=tokens.device) == 0  # (runs,)
    # a run that exists and is not the whole message again (run 0 is, for any number of sentences)
    valid = (spans[None, :, 1] < present[:, None]) & ~(
        (first[None] == 0) & (spans[None, :, 1] == present[:, None] - 1)
    )
    valid = (valid | whole) & (run_count > 0)
    text = run_sum / run_count.clamp(min=1)[..., None]  # (batch, runs, d)
    parts = {"text": narrow(text)}
    if "image" in FEATURE_PARTS[features]:
        image = pool_parts(tokens, image_mask)  # (batch, width)
        parts["image"] = image[:, None].expand(-1, len(spans), -1)
    pooled = torch.cat([parts[part] for part in FEATURE_PARTS[features]], -1)  # (batch, runs, F)
    return PromptRuns(pooled, valid, narrow(remainders), (left_count > 0) & valid)
