"""Endless streams of collated batches."""

import random
from collections.abc import Iterator, Sequence

import torch

from routelora.data.collate import VLMCollator
from routelora.data.samples import Sample


def mixed_batches(
    pools: Sequence[Sequence[Sample]],
    collator: VLMCollator,
    batch_size: int,
    seed: int = 0,
    weights: Sequence[float] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches whose samples are drawn from several pools at once (one pool per task).

    Each sample picks its pool by ``weights`` (default: proportional to pool size), then a sample of that pool in
    a shuffled order that is renewed once the pool is used up, so every sample is seen once per pass. Mixing tasks
    inside a batch matters: a tiny model trained on single-task batches learns little.
    """
    if not pools or any(len(pool) == 0 for pool in pools):
        raise ValueError("every pool needs at least one sample")
    rng = random.Random(seed)
    weights = list(weights) if weights is not None else [len(pool) for pool in pools]
    orders = [_shuffled(len(pool), rng) for pool in pools]
    while True:
        batch = []
        for pool_index in rng.choices(range(len(pools)), weights=weights, k=batch_size):
            if not orders[pool_index]:
                orders[pool_index] = _shuffled(len(pools[pool_index]), rng)
            batch.append(pools[pool_index][orders[pool_index].pop()])
        yield collator(batch)


def _shuffled(size: int, rng: random.Random) -> list[int]:
    order = list(range(size))
    rng.shuffle(order)
    return order
