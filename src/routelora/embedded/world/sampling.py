"""Deterministic per-sample randomness and the in-memory sample record shared by every task."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from PIL import Image

from .instructions import FAMILIES

T = TypeVar("T")
REWORDED = "test_reworded"
"""The second test split: the test split's samples (same images, same answers) asked in held-out phrasings."""
CHATTER = "test_chatter"
"""The conversational test split: the test split's samples wrapped in held-out conversation (:mod:`.conversation`)."""


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from ``parts`` that is the same on every run and machine.

    Python's ``hash()`` is salted per process, so it cannot be used for reproducible data.
    """
    key = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


class Renderable(Protocol):
    """Anything that can draw itself as a square RGB image."""

    def render(self, size: int) -> Image.Image: ...


@dataclass
class WorldSample:
    """One generated example before it is written to disk.

    ``meta`` holds the ground truth the text was built from (scene, label, rule inputs); it stays in
    memory for tests and analysis and is not written to the JSONL, which keeps the LLaVA format.
    """

    question: str
    answer: str
    references: list[str]
    image: Renderable | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SampleContext:
    """The randomness of sample ``index`` of one (seed, task, split).

    Every sample gets its own generator, so sample ``i`` is the same whatever the split size: a larger
    world is a superset of a smaller one with the same seed. The :data:`REWORDED` and :data:`CHATTER` splits draw the
    test split's randomness, so their sample ``i`` is test sample ``i``, asked in a held-out phrasing (see
    :meth:`phrase`) or wrapped in conversation (:func:`~.conversation.converse`).
    """

    seed: int
    task: str
    split: str
    index: int

    def __post_init__(self) -> None:
        self.reworded = self.split == REWORDED
        self._draws = "test" if self.split in (REWORDED, CHATTER) else self.split
        self.rng = random.Random(stable_seed(self.seed, self.task, self._draws, self.index))

    def phrase(self, family: str, **fields: str) -> str:
        """An instruction of ``family`` (:data:`~.instructions.FAMILIES`) with ``fields`` filled in: a training
        phrasing, or a held-out one in the reworded split. Drawn from a generator of its own, so the choice of
        wording never changes the image or the answer."""
        phrasings = FAMILIES[family]
        pool = phrasings.held_out if self.reworded else phrasings.train
        rng = random.Random(stable_seed(self.seed, self.task, self._draws, self.index, "phrase", family))
        return rng.choice(pool).format(**fields)

    def balanced(self, options: Sequence[T], stream: str = "label", draw: int | None = None) -> T:
        """Pick from ``options`` so that every consecutive block of ``len(options)`` samples holds each once.

        Labels drawn this way are exactly balanced (up to one incomplete block) yet in random order;
        ``stream`` separates independent balanced choices (e.g. answer letter vs question type). ``draw`` numbers
        the draws of the stream (default: the sample's index); pass a sample's rank among those of its kind to
        balance within each kind.
        """
        block, pos = divmod(self.index if draw is None else draw, len(options))
        order = list(options)
        random.Random(stable_seed(self.seed, self.task, self._draws, stream, block)).shuffle(order)
        return order[pos]
