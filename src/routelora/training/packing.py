"""Packing a padded training batch into fewer, fuller rows.

A batch that mixes tasks pads every sequence to its longest one (a multiple-choice prompt beside a one-word
question): in the embedded pretraining mix a third of the tokens are padding, and on a CPU every token costs. Packed
rows hold several samples back to back, each with its own position ids restarting at 0 and no attention mask, which
transformers reads as packed sequences and turns into a block-diagonal causal mask (``find_packed_sequence_indices``
in ``masking_utils``), so every sample attends only to itself. The loss is unchanged: at a boundary the next
sample's first token is a prompt token, whose label is ignored.

Written here because neither transformers nor accelerate packs multimodal batches (transformers'
``DataCollatorWithFlattening`` packs text into a single row and needs flash attention to keep samples apart).
"""

import torch

from routelora.data.collate import IGNORE_INDEX


def pack_batch(batch: dict[str, torch.Tensor], image_token_id: int | None, pad_id: int) -> dict[str, torch.Tensor]:
    """The same samples as ``batch`` (padded rows with ``attention_mask`` and ``labels``), packed into fewer rows.

    Rows are filled longest sample first into the emptiest row, and there are as many rows as the total length
    needs at the longest sample's length, so no row is much longer than the longest sample. ``pixel_values`` and
    ``image_sizes`` are reordered so images still meet their image tokens in order; any other field is an error.
    """
    mask = batch["attention_mask"].bool()  # (batch, seq)
    lengths = mask.sum(1).tolist()
    longest = max(lengths)
    num_rows = max(1, -(-sum(lengths) // longest))
    rows: list[list[int]] = [[] for _ in range(num_rows)]
    filled = [0] * num_rows
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = min(range(num_rows), key=filled.__getitem__)
        rows[row].append(index)
        filled[row] += lengths[index]
    width = max(filled)

    ids = torch.full((num_rows, width), pad_id, dtype=batch["input_ids"].dtype)  # (rows, width)
    labels = torch.full((num_rows, width), IGNORE_INDEX, dtype=batch["labels"].dtype)  # (rows, width)
    positions = torch.zeros((num_rows, width), dtype=torch.long)  # (rows, width)
    order = []
    for row, members in enumerate(rows):
        start = 0
        for index in members:
            keep = mask[index]
            size = lengths[index]
            ids[row, start : start + size] = batch["input_ids"][index][keep]
            labels[row, start : start + size] = batch["labels"][index][keep]
            positions[row, start : start + size] = torch.arange(size)
            start += size
            order.append(index)
        # The tail is its own block of padding (positions from 0), attended only by itself and never in the loss.
        positions[row, start:] = torch.arange(width - start)
    packed = {"input_ids": ids, "labels": labels, "position_ids": positions}

    has_image = (
        (batch["input_ids"] == image_token_id).any(1)
        if image_token_id is not None
        else torch.zeros(len(lengths), dtype=torch.bool)
    )
    image_of = (has_image.long().cumsum(0) - 1).tolist()
    image_order = [image_of[index] for index in order if has_image[index]]
    for key, value in batch.items():
        if key in ("input_ids", "labels", "attention_mask"):
            continue
        if key in ("pixel_values", "image_sizes") and image_order:
            packed[key] = value[image_order]
        else:
            raise ValueError(f"pack_batch: cannot pack batch field {key!r}")
    return packed
