"""Generators of the retention benchmarks (the base model's general skills): mcq, chart, doc."""

from __future__ import annotations

import random
from collections.abc import Callable
from math import comb

from .charts import sample_chart
from .docs import DocPage, sample_code
from .sampling import Sample, SampleContext
from .scenes import COLOURS, POSITIONS, SHAPES, Scene, sample_scene

LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
MCQ_TYPES = ("colour", "shape", "count", "position")


def _canonical_options(vocab: tuple[str, ...], letter: str, rng: random.Random) -> tuple[str, list[str]]:
    """Pick the correct answer and three distractors from ``vocab`` so that, listed in ``vocab`` order, the
    correct one lands at ``letter``; returns (correct, options).

    Options keep the vocabulary's natural order (counts ascending, colours in palette order, cells in
    reading order) rather than a shuffle. A shuffle makes the tiny model solve two hops at once (what is
    in the image, then which letter holds it) and a 4-layer model trained for minutes stays at chance;
    with a fixed order the letter follows from the perceived answer and the list of options.
    """
    k, n = LETTERS.index(letter), len(vocab)
    # Exactly k options must come before the correct one, and 3 - k after it. Weighting each candidate by
    # its number of such option sets makes the correct answer uniform over vocab while the letter (drawn
    # first) stays exactly balanced.
    weights = [comb(i, k) * comb(n - 1 - i, len(LETTERS) - 1 - k) for i in range(n)]
    i = rng.choices(range(n), weights=weights)[0]
    below = rng.sample(range(i), k)
    above = rng.sample(range(i + 1, n), len(LETTERS) - 1 - k)
    return vocab[i], [vocab[j] for j in sorted([*below, i, *above])]


def _scene_where(ctx: SampleContext, ok: Callable[[Scene], bool], n_min: int = 1, n_max: int = 3) -> Scene:
    """Redraw until ``ok(scene)`` holds (e.g. a shape of the wanted colour whose kind occurs once)."""
    while True:
        scene = sample_scene(ctx.rng, n_min, n_max)
        if ok(scene):
            return scene


def make_mcq(ctx: SampleContext) -> Sample:
    """MMBench analogue: colour / shape / count / position of shapes, 4 options, answer one letter.

    Question types and correct letters are each exactly balanced in blocks of four; the correct answer
    is chosen to fit the letter and the scene is then drawn to fit the answer.
    """
    rng = ctx.rng
    qtype = ctx.balanced(MCQ_TYPES, stream="qtype")
    letter = ctx.balanced(LETTERS, stream="letter")
    if qtype == "colour":
        colour, options = _canonical_options(tuple(COLOURS), letter, rng)
        scene = _scene_where(ctx, lambda s: any(len(s.with_shape(x.shape)) == 1 for x in s.with_colour(colour)))
        target = rng.choice([x for x in scene.with_colour(colour) if len(scene.with_shape(x.shape)) == 1])
        question = f"What colour is the {target.shape}?"
    elif qtype == "shape":
        kind, options = _canonical_options(SHAPES, letter, rng)
        scene = _scene_where(ctx, lambda s: any(len(s.with_colour(x.colour)) == 1 for x in s.with_shape(kind)))
        target = rng.choice([x for x in scene.with_shape(kind) if len(scene.with_colour(x.colour)) == 1])
        question = f"What shape is the {target.colour} one?"
    elif qtype == "count":
        n, options = _canonical_options(("1", "2", "3", "4"), letter, rng)
        scene = sample_scene(rng, n=int(n))
        question = "How many shapes are there?"
    else:
        position, options = _canonical_options(POSITIONS, letter, rng)
        scene = _scene_where(ctx, lambda s: any(x.position == position for x in s.shapes))
        target = next(x for x in scene.shapes if x.position == position)
        question = f"Where is the {target.name}?"
    lines = [question] + [f"{k}. {v}" for k, v in zip(LETTERS, options)] + ["Answer with the letter."]
    meta = {"scene": scene, "qtype": qtype, "options": options}
    return Sample("\n".join(lines), letter, [letter], scene, meta)


CHART_TYPES = ("value", "value", "difference", "tallest", "shortest")


def make_chart(ctx: SampleContext) -> Sample:
    """ChartQA analogue: read bar values (integers 1..9), their difference, or which bar is tallest/shortest."""
    rng = ctx.rng
    qtype = ctx.balanced(CHART_TYPES, stream="qtype")
    chart = sample_chart(rng)
    if qtype == "value":
        bar = rng.choice(chart.bars)
        question, answer = f"What is the value of the {bar.colour} bar?", str(bar.value)
    elif qtype == "difference":
        b1, b2 = rng.sample(chart.bars, 2)
        question = f"What is the difference between the {b1.colour} and {b2.colour} bars?"
        answer = str(abs(b1.value - b2.value))
    elif qtype == "tallest":
        question, answer = "Which bar is the tallest?", chart.tallest().colour
    else:
        question, answer = "Which bar is the shortest?", chart.shortest().colour
    return Sample(question, answer, [answer], chart, {"chart": chart, "qtype": qtype})


DOC_TYPES = ("full", "first", "second", "last")
DOC_QUESTIONS = {
    "full": "What is written?",
    "first": "What is the first letter?",
    "second": "What is the second letter?",
    "last": "What is the last letter?",
}


def make_doc(ctx: SampleContext) -> Sample:
    """DocVQA analogue: a 3-letter code, one letter per cell; read it whole or one letter.

    Whole-code answers are spelled with spaces ("B E K") so any whitespace-splitting tokenizer sees
    one token per drawn letter; the unspaced spelling is accepted as a reference too.
    """
    qtype = ctx.balanced(DOC_TYPES, stream="qtype")
    code = sample_code(ctx.rng)
    if qtype == "full":
        answer, refs = " ".join(code), [" ".join(code), code]
    else:
        answer = code[{"first": 0, "second": 1, "last": -1}[qtype]]
        refs = [answer]
    return Sample(DOC_QUESTIONS[qtype], answer, refs, DocPage(code), {"code": code, "qtype": qtype})
