"""One instruction family: the phrasings a question type is asked in, and those held out for testing only.

Families are data: ``texts/*.yaml`` beside this module map a family's name to its ``train`` and ``held_out``
phrasings, so that adding a phrasing touches no code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import yaml

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


def load_families(name: str) -> dict[str, Phrasings]:
    """The families of the data file ``texts/<name>.yaml``, by family name, in the file's order."""
    text = resources.files(__package__).joinpath("texts", f"{name}.yaml").read_text()
    return parse_families(yaml.safe_load(text), f"routelora/embedded/world/texts/{name}.yaml")


def parse_families(data: object, where: str) -> dict[str, Phrasings]:
    """Families from a data file's parsed content; ``where`` names the file in errors."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping of family names to {{train: [...], held_out: [...]}}")
    families = {}
    for family, parts in data.items():
        if not isinstance(parts, dict) or set(parts) != {"train", "held_out"}:
            raise ValueError(f"{where}: family {family!r} needs exactly the keys train and held_out")
        if not all(isinstance(parts[key], list) for key in parts):
            raise ValueError(f"{where}: family {family!r}: train and held_out must be lists of phrasings")
        if not all(isinstance(p, str) for p in parts["train"] + parts["held_out"]):
            raise ValueError(f"{where}: family {family!r} holds a phrasing that is not a string")
        try:
            families[family] = Phrasings(tuple(parts["train"]), tuple(parts["held_out"]))
        except ValueError as error:
            raise ValueError(f"{where}: family {family!r}: {error}") from None
    return families
