"""Generators of the retention benchmarks (the base model's general skills): mcq, chart, doc.

Every question is about the image as a whole (how many shapes, which kind or colour they all have, the highest
value of a chart, the code on a page), never about one object picked out by a word of the question ("what colour is
the circle", "the value of the red bar"). The embedded base is a 2 M parameter model pretrained for minutes, and
such keyed lookups are what it does not learn in that budget: world v2 asked them and its base stayed at mcq 0.61
and chart 0.445 over every recipe tried (docs/pretraining.md), so a drop after fine-tuning could not be told from
noise. Multiple-choice options are the same list in the same order for a question type, so the letter follows from
the answer without searching the options for a word, which is the same lookup again.
"""

from __future__ import annotations

from collections.abc import Callable

from .charts import sample_chart
from .docs import DocPage, sample_code
from .sampling import SampleContext, WorldSample
from .scenes import COLOURS, ROWS, SHAPES, Scene, sample_scene

LETTERS: tuple[str, ...] = ("A", "B", "C", "D", "E")
MCQ_TYPES = ("colour", "shape", "count", "row")
MCQ_OPTIONS: dict[str, tuple[str, ...]] = {
    "count": ("1", "2", "3", "4"),
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "row": ROWS,
}


def _scene_where(ctx: SampleContext, ok: Callable[[Scene], bool], n_min: int = 1, n_max: int = 3) -> Scene:
    """Redraw until ``ok(scene)`` holds (e.g. a shape of the wanted colour whose kind occurs once)."""
    while True:
        scene = sample_scene(ctx.rng, n_min, n_max)
        if ok(scene):
            return scene


def make_mcq(ctx: SampleContext) -> WorldSample:
    """MMBench analogue: count, kind, colour or row of the shapes in a scene; answer one letter.

    Each question type lists the same options in the same order every time (counts 1-4, the four shapes, the five
    colours, the three rows), and every type asks about the scene as a whole, not about one object named in the
    question: see the module docstring for why.
    """
    rng = ctx.rng
    qtype = ctx.balanced(MCQ_TYPES, stream="qtype")
    options = MCQ_OPTIONS[qtype]
    # Question types come in blocks of len(MCQ_TYPES), so index // len(MCQ_TYPES) ranks a sample within its type.
    answer = ctx.balanced(options, stream=qtype, draw=ctx.index // len(MCQ_TYPES))
    if qtype == "count":
        scene = sample_scene(rng, n=int(answer))
        question = ctx.phrase("mcq_count")
    elif qtype == "shape":
        scene = sample_scene(rng, 1, 3, shapes=(answer,))
        question = ctx.phrase("mcq_shape")
    elif qtype == "colour":
        scene = sample_scene(rng, 1, 3, colours=(answer,))
        question = ctx.phrase("mcq_colour")
    else:
        row = ROWS.index(answer)
        scene = _scene_where(ctx, lambda s: s.shapes[0].row == row, 1, 1)
        question = ctx.phrase("mcq_row")
    letters = LETTERS[: len(options)]
    letter = letters[options.index(answer)]
    lines = [question] + [f"{k}. {v}" for k, v in zip(letters, options)] + [ctx.phrase("mcq_answer")]
    meta = {"scene": scene, "qtype": qtype, "options": list(options)}
    return WorldSample("\n".join(lines), letter, [letter], scene, meta)


CHART_TYPES = ("highest", "lowest", "range", "count")


def make_chart(ctx: SampleContext) -> WorldSample:
    """ChartQA analogue with numeric answers: the highest or lowest value of a bar chart, their difference, or the
    number of bars.

    Charts have 1-3 bars (2-3 when asking for a difference), so a lone bar's value is asked too.
    """
    rng = ctx.rng
    qtype = ctx.balanced(CHART_TYPES, stream="qtype")
    chart = sample_chart(rng, n_bars=rng.choice((2, 3) if qtype == "range" else (1, 2, 3)))
    high, low = chart.tallest().value, chart.shortest().value
    answer = {"highest": high, "lowest": low, "range": high - low, "count": len(chart.bars)}[qtype]
    question = ctx.phrase(f"chart_{qtype}")
    return WorldSample(question, str(answer), [str(answer)], chart, {"chart": chart, "qtype": qtype})


DOC_TYPES = ("full", "first", "second", "last")


def make_doc(ctx: SampleContext) -> WorldSample:
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
    return WorldSample(ctx.phrase(f"doc_{qtype}"), answer, refs, DocPage(code), {"code": code, "qtype": qtype})
