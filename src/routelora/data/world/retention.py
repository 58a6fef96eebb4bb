"""Generators of the retention benchmarks (the base model's general skills): mcq, chart, doc."""

from __future__ import annotations

import random
from collections.abc import Callable

from .charts import sample_chart
from .docs import DocPage, sample_code
from .sampling import Sample, SampleContext
from .scenes import COLOURS, POSITIONS, SHAPES, Scene, sample_scene

LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
MCQ_TYPES = ("colour", "shape", "count", "position")


def _options_block(correct: str, distractors: list[str], letter: str, rng: random.Random) -> list[str]:
    """Put ``correct`` at ``letter`` and three distinct distractors, in random order, elsewhere."""
    rest = rng.sample(distractors, len(LETTERS) - 1)
    rest.insert(LETTERS.index(letter), correct)
    return rest


def _scene_where(ctx: SampleContext, ok: Callable[[Scene], bool], n_min: int = 1, n_max: int = 3) -> Scene:
    """Redraw until ``ok(scene)`` holds (e.g. some shape kind occurs exactly once)."""
    while True:
        scene = sample_scene(ctx.rng, n_min, n_max)
        if ok(scene):
            return scene


def make_mcq(ctx: SampleContext) -> Sample:
    """MMBench analogue: colour / shape / count / position of shapes, 4 options, answer one letter.

    Question types and correct letters are each exactly balanced in blocks of four.
    """
    rng = ctx.rng
    qtype = ctx.balanced(MCQ_TYPES, stream="qtype")
    letter = ctx.balanced(LETTERS, stream="letter")
    if qtype == "colour":
        scene = _scene_where(ctx, lambda s: any(len(s.with_shape(k)) == 1 for k in s.shape_kinds()))
        target = rng.choice([x for x in scene.shapes if len(scene.with_shape(x.shape)) == 1])
        question = f"What colour is the {target.shape}?"
        options = _options_block(target.colour, [c for c in COLOURS if c != target.colour], letter, rng)
    elif qtype == "shape":
        scene = _scene_where(ctx, lambda s: any(len(s.with_colour(c)) == 1 for c in s.colours()))
        target = rng.choice([x for x in scene.shapes if len(scene.with_colour(x.colour)) == 1])
        question = f"What shape is the {target.colour} one?"
        options = _options_block(target.shape, [k for k in SHAPES if k != target.shape], letter, rng)
    elif qtype == "count":
        scene = sample_scene(rng, n=rng.randint(1, 4))
        n = str(len(scene.shapes))
        question = "How many shapes are there?"
        options = _options_block(n, [str(m) for m in range(1, 5) if str(m) != n], letter, rng)
    else:
        scene = sample_scene(rng, 1, 3)
        target = rng.choice(scene.shapes)
        question = f"Where is the {target.name}?"
        options = _options_block(target.position, [p for p in POSITIONS if p != target.position], letter, rng)
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
