"""Generic perception questions with direct short answers, used only to pretrain the tiny base.

They teach the atomic skills the retention benchmarks build on (colour, shape, count, position, a letter, a bar's
height) in their simplest form, which a tiny model learns far faster than the composed questions; the prototype
found that without such a warm-up shape recognition stayed at chance for thousands of steps. None of them has a
specialised task's output format, so the base still does not know those tasks.
"""

from .charts import sample_chart
from .docs import DocPage, sample_code
from .sampling import SampleContext, WorldSample
from .scenes import ROWS, sample_scene

BASICS_TYPES = ("colour", "shape", "row", "what_at", "count", "letter", "bar_value")
COLUMN_PHRASES = ("on the left", "in the middle", "on the right")


def make_basics(ctx: SampleContext) -> WorldSample:
    """One direct question about a scene, a page or a chart."""
    rng = ctx.rng
    kind = ctx.balanced(BASICS_TYPES, stream="kind")
    if kind in ("colour", "shape", "row"):
        scene = sample_scene(rng, n=1)
        shape = scene.shapes[0]
        answer = {"colour": shape.colour, "shape": shape.shape, "row": ROWS[shape.row]}[kind]
        question = ctx.phrase(f"basics_{kind}")
        return WorldSample(question, answer, [answer], scene, {"kind": kind})
    if kind == "what_at":
        # Not asked by any benchmark, but naming the object in one cell keeps per-object features in the base, which
        # captioning builds on: without it the caption expert named one colour for every shape (CIDEr 1.55, not 3.15).
        scene = sample_scene(rng, 1, 3)
        shape = rng.choice(scene.shapes)
        return WorldSample(
            ctx.phrase("basics_what_at", position=shape.position), shape.name, [shape.name], scene, {"kind": kind}
        )
    if kind == "count":
        scene = sample_scene(rng, 1, 4)
        answer = str(len(scene.shapes))
        return WorldSample(ctx.phrase("basics_count"), answer, [answer], scene, {"kind": kind})
    if kind == "letter":
        code = sample_code(rng)
        column = rng.randrange(len(code))
        question = ctx.phrase("basics_letter", column=COLUMN_PHRASES[column])
        return WorldSample(question, code[column], [code[column]], DocPage(code), {"kind": kind})
    chart = sample_chart(rng, n_bars=1)
    answer = str(chart.bars[0].value)
    return WorldSample(ctx.phrase("basics_bar_value"), answer, [answer], chart, {"kind": kind})
