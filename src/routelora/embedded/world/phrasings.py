"""One instruction family: the phrasings a question type is asked in, and those held out for testing only."""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_TRAIN, MIN_HELD_OUT = 8, 4


@dataclass(frozen=True)
class Phrasings:
    """One instruction family: the phrasings seen in training, and the held-out ones."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.train) < MIN_TRAIN or len(self.held_out) < MIN_HELD_OUT:
            raise ValueError(f"a family needs >= {MIN_TRAIN} training and >= {MIN_HELD_OUT} held-out phrasings")
        if set(self.train) & set(self.held_out):
            raise ValueError(f"phrasings both trained and held out: {sorted(set(self.train) & set(self.held_out))}")
        fields = {frozenset(re.findall(r"{(\w+)}", p)) for p in self.train + self.held_out}
        if len(fields) != 1:
            raise ValueError(
                f"phrasings of one family must share their placeholders, got {sorted(map(sorted, fields))}"
            )


def family(train: str, held_out: str) -> Phrasings:
    """A family from two blocks of one phrasing per line."""
    lines = lambda block: tuple(line.strip() for line in block.strip().splitlines())  # noqa: E731
    return Phrasings(lines(train), lines(held_out))
