"""Timers for benchmarks: medians of repeated calls after warm-up, and how far the samples spread."""

import statistics
import time
from collections.abc import Callable
from typing import Any

NOISY_SPREAD = 0.5
"""A spread beyond this means some timed calls waited for the cores far longer than others."""


def time_samples(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Wall times in seconds of each function, measured in interleaved rounds.

    Interleaving (one call of each per round, the order rotating) spreads the load of other processes and any
    thermal drift over all peers alike, so their ratios stay fair on a busy machine.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def time_calls(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, float]:
    """Median wall time in seconds of each function, measured in interleaved rounds (see ``time_samples``)."""
    return {name: statistics.median(values) for name, values in time_samples(fns, repeats, warmup).items()}


def spread(samples: list[float]) -> float:
    """(slowest - fastest) / median: near 0 on a quiet machine, large where other processes took the cores."""
    return (max(samples) - min(samples)) / statistics.median(samples)


def time_call(fn: Callable[[], Any], repeats: int, warmup: int) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    return time_calls({"fn": fn}, repeats, warmup)["fn"]
