"""What a sequence-level decision reads: a prompt's pooled text and image embeddings, and each task's statistics.

The language model's input embeddings are there before its first layer for free: the text tokens' rows of the
embedding table and, at the image positions, the projector's outputs. Pooling each part over its own tokens gives a
vector that carries the words (which instruction, which answer format) and the picture (which image domain). Twin
tasks that share their instructions differ in the second half; tasks on the same images differ in the first.

Each task keeps statistics of its own prompts only (a count, a mean and a scatter matrix), never a sample, so a
shared covariance is the sum of the tasks' scatters and a new task adds its own without touching the others.
"""

from dataclasses import dataclass

import torch
from torch import nn

from routelora.experts.expert import STATISTICS_SCATTER as SCATTER_KEY
from routelora.nn import standardise

FEATURE_PARTS = {"text": ("text",), "text_image": ("text", "image")}
"""Feature sets of the command line's ``--features``, and the pooled parts each concatenates."""
MAX_PART_WIDTH = 512
"""Widest pooled part: wider embeddings are averaged in contiguous blocks down to at most this, so that a scatter
matrix stays small (2048-wide embeddings give 512 per part, a 1024 x 1024 scatter, 4 MiB) and needs no random
projection whose values could change with a library version."""
COUNT_KEY, MEAN_KEY = "routing.count", "routing.mean"
"""Where a task's statistics live in its prototypes file (and in the library's base prototypes), beside
:data:`SCATTER_KEY`."""


def language_model_inputs(module: nn.Module, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The input embeddings (batch, seq, d) a language model's forward receives (from a forward pre-hook's
    arguments): image features already merged in by the VLM, or looked up from the token ids when it is given ids."""
    embeddings = kwargs.get("inputs_embeds")
    if embeddings is not None:
        return embeddings
    input_ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
    return None if input_ids is None else module.get_input_embeddings()(input_ids)


def part_width(hidden: int) -> int:
    """Width of one pooled part for embeddings ``hidden`` wide."""
    return hidden // -(-hidden // MAX_PART_WIDTH)


def _pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the masked tokens (batch, seq, d) -> (batch, d); zeros for a row with none."""
    weights = mask.to(tokens.dtype)[..., None]  # (batch, seq, 1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def narrow(pooled: torch.Tensor) -> torch.Tensor:
    """(..., d) -> (..., :func:`part_width`): contiguous blocks averaged."""
    hidden = pooled.shape[-1]
    width = part_width(hidden)
    block = hidden // width
    return pooled[..., : width * block].reshape(*pooled.shape[:-1], width, block).mean(-1)


def pool_parts(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Standardised tokens (batch, seq, d) pooled over ``mask`` and narrowed: (batch, width); zeros for no mask."""
    if mask is None:
        return narrow(tokens.new_zeros(tokens.shape[0], tokens.shape[-1]))
    return narrow(_pool(tokens, mask.to(tokens.device)))


def sequence_features(
    embeddings: torch.Tensor, text_mask: torch.Tensor, image_mask: torch.Tensor | None, features: str
) -> torch.Tensor:
    """Pooled features (batch, F) of each sequence.

    embeddings: (batch, seq, d) the language model's input embeddings; text_mask, image_mask: (batch, seq) bool,
    the prompt's text tokens and its image tokens (None: no image anywhere). Every token is standardised first
    (as routing vectors are), each part is pooled over its own tokens and narrowed to :func:`part_width`.
    """
    tokens = standardise(embeddings.float())  # (batch, seq, d)
    masks = {"text": text_mask, "image": image_mask}
    return torch.cat([pool_parts(tokens, masks[part]) for part in FEATURE_PARTS[features]], dim=-1)  # (batch, F)


@dataclass
class FeatureStatistics:
    """Sufficient statistics of one task's (or one general skill's) pooled features, accumulated batch by batch."""

    count: int = 0
    """Sequences seen."""
    total: torch.Tensor | None = None
    """(F,) float64 sum of the features."""
    gram: torch.Tensor | None = None
    """(F, F) float64 sum of outer products."""

    def add(self, features: torch.Tensor) -> None:
        """Add a batch (batch, F)."""
        x = features.detach().double().cpu()
        self.count += x.shape[0]
        self.total = x.sum(0) if self.total is None else self.total + x.sum(0)
        self.gram = x.T @ x if self.gram is None else self.gram + x.T @ x

    def tensors(self) -> dict[str, torch.Tensor]:
        """The saved form: count, mean (F,) and scatter about the mean (F, F), float32."""
        if not self.count:
            raise ValueError("no features were added")
        mean = self.total / self.count
        scatter = self.gram - self.count * torch.outer(mean, mean)
        return {
            COUNT_KEY: torch.tensor([float(self.count)]),
            MEAN_KEY: mean.float(),
            SCATTER_KEY: scatter.float(),
        }


def select_statistics(statistics: dict[str, torch.Tensor], features: str) -> dict[str, torch.Tensor]:
    """Saved ``text_image`` statistics narrowed to the parts of ``features`` (``text`` is the first part)."""
    if features == "text_image":
        return {key: statistics[key] for key in (COUNT_KEY, MEAN_KEY, SCATTER_KEY)}
    width = statistics[MEAN_KEY].shape[0] // len(FEATURE_PARTS["text_image"])
    return {
        COUNT_KEY: statistics[COUNT_KEY],
        MEAN_KEY: statistics[MEAN_KEY][:width],
        SCATTER_KEY: statistics[SCATTER_KEY][:width, :width],
    }
