"""Generic perception questions with direct one-word answers, used only to pretrain the tiny base.

They teach the atomic skills the retention benchmarks build on (colour, shape, count, position, a letter, a bar's
height) in their simplest form, which a tiny model learns far faster than the composed questions; the prototype
found that without such a warm-up shape recognition stayed at chance for thousands of steps. None of them has a
specialised task's output format, so the base still does not know those tasks.
"""

from .charts import sample_chart
from .docs import DocPage, sample_code
from .sampling import Sample, SampleContext
from .scenes import sample_scene

BASICS_TYPES = ("colour", "shape", "what_at", "count", "letter", "bar_value", "bar_colour")
COLUMN_PHRASES = ("on the left", "in the middle", "on the right")


def make_basics(ctx: SampleContext) -> Sample:
    """One direct question about a scene, a page or a chart."""
    rng = ctx.rng
    kind = ctx.balanced(BASICS_TYPES, stream="kind")
    if kind in ("colour", "shape"):
        scene = sample_scene(rng, n=1)
        shape = scene.shapes[0]
        question = "What colour is the shape?" if kind == "colour" else "What shape is this?"
        answer = shape.colour if kind == "colour" else shape.shape
        return Sample(question, answer, [answer], scene, {"kind": kind})
    if kind == "what_at":
        scene = sample_scene(rng, 1, 3)
        shape = rng.choice(scene.shapes)
        return Sample(f"What is at the {shape.position}?", shape.name, [shape.name], scene, {"kind": kind})
    if kind == "count":
        scene = sample_scene(rng, 1, 4)
        answer = str(len(scene.shapes))
        return Sample("How many shapes are there?", answer, [answer], scene, {"kind": kind})
    if kind == "letter":
        code = sample_code(rng)
        column = rng.randrange(len(code))
        question = f"Which letter is {COLUMN_PHRASES[column]}?"
        return Sample(question, code[column], [code[column]], DocPage(code), {"kind": kind})
    chart = sample_chart(rng)
    bar = rng.choice(chart.bars)
    if kind == "bar_value":
        question, answer = f"How tall is the {bar.colour} bar?", str(bar.value)
    else:
        question, answer = f"What colour is the bar {COLUMN_PHRASES[bar.col]}?", bar.colour
    return Sample(question, answer, [answer], chart, {"kind": kind})
