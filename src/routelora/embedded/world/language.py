"""Sentences about scenes: captions with rule-made paraphrases, and entailment hypotheses.

Shared by the image tasks (``caption``, ``entailment``) and their text-only relatives
(``text_entailment`` uses a caption as its premise), so the two modalities describe scenes in the
very same words; that overlap is what lets a router find related experts.
"""

from __future__ import annotations

import random

from .scenes import COLOURS, SHAPES, Scene, Shape

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ENTAILMENT_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
# Properties a picture of flat shapes cannot show: hypotheses about them are neither true nor false.
HIDDEN_PROPERTIES = (
    "heavy",
    "made of wood",
    "made of glass",
    "old",
    "new",
    "hot",
    "cold",
    "soft",
    "expensive",
    "broken",
)


def a(shape: Shape) -> str:
    """Indefinite noun phrase, e.g. ``a red circle``."""
    return f"a {shape.name}"


def join_list(parts: list[str]) -> str:
    """``x``, ``x and y``, ``x, y and z``."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _relation(first: Shape, second: Shape) -> tuple[str, str]:
    """Relation of two shapes in reading order and its converse; rows decide before columns."""
    if first.row < second.row:
        return "above", "below"
    return "to the left of", "to the right of"


def caption(scene: Scene) -> str:
    """Canonical caption: shapes in reading order; two shapes get a spatial relation."""
    s = scene.shapes
    if len(s) == 2:
        rel, _ = _relation(s[0], s[1])
        return f"{a(s[0])} {rel} {a(s[1])}"
    return join_list([a(x) for x in s])


def caption_references(scene: Scene) -> list[str]:
    """The canonical caption first, then rule-made paraphrases (always at least 4 in all)."""
    s = scene.shapes
    canon = caption(scene)
    if len(s) == 1:
        return [canon, f"one {s[0].name}", f"a single {s[0].name}", f"there is {canon}"]
    if len(s) == 2:
        rel, conv = _relation(s[0], s[1])
        return [
            canon,
            f"{a(s[1])} {conv} {a(s[0])}",
            f"there is {canon}",
            f"{a(s[0])} and {a(s[1])}",
        ]
    names = [a(x) for x in s]
    return [
        canon,
        f"three shapes: {canon}",
        join_list(names[::-1]),
        f"there are {canon}",
    ]


def _count_phrase(n: int) -> str:
    return "there is one shape" if n == 1 else f"there are {NUMBER_WORDS[n]} shapes"


def hypothesis(scene: Scene, label: str, rng: random.Random) -> tuple[str, str]:
    """A hypothesis about ``scene`` whose correct label is ``label``; returns (sentence, template).

    entailment / contradiction: a true / false statement about which shapes exist, how many there
    are, or the colour of a shape kind that occurs once; neutral: a present shape with a property
    that a flat picture cannot show.
    """
    if label == "neutral":
        target = rng.choice(scene.shapes)
        return f"the {target.name} is {rng.choice(HIDDEN_PROPERTIES)}", "hidden"
    true = label == "entailment"
    unique = [k for k in sorted(scene.shape_kinds()) if len(scene.with_shape(k)) == 1]
    templates = ["exists", "count"] + (["colour"] if unique else [])
    template = rng.choice(templates)
    if template == "exists":
        if true:
            return f"there is {a(rng.choice(scene.shapes))}", template
        present = {(x.colour, x.shape) for x in scene.shapes}
        absent = [(c, k) for c in COLOURS for k in SHAPES if (c, k) not in present]
        c, k = rng.choice(absent)
        return f"there is a {c} {k}", template
    if template == "count":
        n = len(scene.shapes)
        if not true:
            # False counts stay within the scene sizes used (1-3) so the number alone never gives the label away.
            n = rng.choice([m for m in range(1, 4) if m != n])
        return _count_phrase(n), template
    kind = rng.choice(unique)
    colour = scene.with_shape(kind)[0].colour
    if not true:
        colour = rng.choice([c for c in COLOURS if c != colour])
    return f"the {kind} is {colour}", template
