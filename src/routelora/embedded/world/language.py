"""Sentences about scenes: captions with rule-made paraphrases, and entailment hypotheses.

Shared by the image tasks (``caption``, ``entailment``) and their text-only relatives
(``text_entailment`` uses a caption as its premise), so the two modalities describe scenes in the
very same words; that overlap is what lets a router find related experts.
"""

from __future__ import annotations

import random

from .scenes import COLOURS, SHAPES, Scene, Shape, sample_scene

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


HYPOTHESIS_TEMPLATES = ("count", "colour", "kind")
"""What a true or false hypothesis is about, always the picture as a whole: whether it shows one shape or several,
whether all its shapes are red (or blue), whether every shape is a circle (or a square)."""
CLAIMS = {
    "count": {
        "there is only one shape": lambda s: len(s.shapes) == 1,
        "there are several shapes": lambda s: len(s.shapes) > 1,
    },
    "colour": {
        "all the shapes are red": lambda s: s.colours() == {"red"},
        "all the shapes are blue": lambda s: s.colours() == {"blue"},
    },
    "kind": {
        "every shape is a circle": lambda s: s.shape_kinds() == {"circle"},
        "every shape is a square": lambda s: s.shape_kinds() == {"square"},
    },
}
"""The closed set of claims, each with what makes it true. World v3 asked open claims (any colour, any count, any
coloured shape present), which need a word of the text checked against the picture; the tiny base does not learn
that check (its experts answered "entailment" to every claim after 1500 steps, docs/pretraining.md), while a fixed
claim is a detector of one property of the image, which it does learn."""


def _scene_for(template: str, rng: random.Random) -> Scene:
    if template == "count":
        return sample_scene(rng, 1, 3)
    if template == "colour":
        return sample_scene(rng, 1, 3, colours=(rng.choice(tuple(COLOURS)),))
    return sample_scene(rng, 1, 3, shapes=(rng.choice(SHAPES),))


def hypothesis(label: str, rng: random.Random) -> tuple[Scene, str, str]:
    """A scene and a hypothesis about it whose correct label is ``label``; returns (scene, sentence, template).

    entailment / contradiction: one of :data:`CLAIMS`, true / false of the scene (redrawn until it is); neutral: a
    present shape with a property that a flat picture cannot show.
    """
    if label == "neutral":
        scene = sample_scene(rng, 1, 3)
        target = rng.choice(scene.shapes)
        return scene, f"the {target.name} is {rng.choice(HIDDEN_PROPERTIES)}", "hidden"
    template = rng.choice(HYPOTHESIS_TEMPLATES)
    claim, holds = rng.choice(sorted(CLAIMS[template].items()))
    while True:
        scene = _scene_for(template, rng)
        if holds(scene) == (label == "entailment"):
            return scene, claim, template
