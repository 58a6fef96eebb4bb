"""Generators of the ablation tasks: chart_trend, text_entailment, arith_text, arith_image, arith_mixed."""

from __future__ import annotations

import random

from .charts import MAX_VALUE, sample_chart
from .language import ENTAILMENT_LABELS, caption_references, hypothesis
from .sampling import Renderable, SampleContext, WorldSample
from .scenes import COLOURS, sample_scene

TREND_LABELS: tuple[str, ...] = ("rising", "falling", "peak in the middle", "dip in the middle")


def make_chart_trend(ctx: SampleContext) -> WorldSample:
    """ChartGemma analogue: a 3-bar chart -> its shape from left to right (one of four labels)."""
    rng = ctx.rng
    label = ctx.balanced(TREND_LABELS)
    lo, mid, hi = sorted(rng.sample(range(1, MAX_VALUE + 1), 3))
    if label == "rising":
        values = [lo, mid, hi]
    elif label == "falling":
        values = [hi, mid, lo]
    elif label == "peak in the middle":
        side = rng.sample([lo, mid], 2)
        values = [side[0], hi, side[1]]
    else:
        side = rng.sample([mid, hi], 2)
        values = [side[0], lo, side[1]]
    chart = sample_chart(rng, values=values)
    return WorldSample(ctx.phrase("chart_trend"), label, [label], chart, {"chart": chart})


def make_text_entailment(ctx: SampleContext) -> WorldSample:
    """XNLI analogue, text only: the premise describes a scene in words (a caption), same labels as entailment."""
    label = ctx.balanced(ENTAILMENT_LABELS)
    scene, hyp, template = hypothesis(label, ctx.rng)
    premise = ctx.rng.choice(caption_references(scene))
    question = ctx.phrase("text_entailment", premise=premise, hypothesis=hyp)
    return WorldSample(question, label, [label], None, {"scene": scene, "hypothesis": hyp, "template": template})


NAMES = ("Tom", "Ana", "Sam", "Mia", "Leo", "Eva")
OBJECTS = ("apple", "pen", "coin", "book", "ball", "cup")
MAX_NUMBER = 20


def _things(n: int, obj: str) -> str:
    return f"{n} {obj}" if n == 1 else f"{n} {obj}s"


def _add_operands(rng: random.Random) -> tuple[int, int]:
    total = rng.randint(0, MAX_NUMBER)
    a = rng.randint(0, total)
    return a, total - a


def _sub_operands(rng: random.Random) -> tuple[int, int]:
    a = rng.randint(0, MAX_NUMBER)
    return a, rng.randint(0, a)


def _number_sample(
    question: str, answer: int, image: Renderable | None = None, meta: dict | None = None
) -> WorldSample:
    return WorldSample(question, str(answer), [str(answer)], image, meta or {})


def make_arith_text(ctx: SampleContext) -> WorldSample:
    """Orca-Math analogue, text only: one-step add/subtract word problems, all numbers in 0..20."""
    rng = ctx.rng
    op = ctx.balanced(("add", "sub"), stream="op")
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    if op == "add":
        a, b = _add_operands(rng)
        q = rng.choice(
            (
                f"{name} has {_things(a, obj)} and gets {b} more. How many {obj}s does {name} have now?",
                f"There are {_things(a, obj)} in a box. {name} adds {b}. How many {obj}s are in the box?",
            )
        )
        return _number_sample(q, a + b, meta={"op": op, "a": a, "b": b})
    a, b = _sub_operands(rng)
    q = rng.choice(
        (
            f"{name} has {_things(a, obj)} and gives away {b}. How many {obj}s are left?",
            f"{name} had {_things(a, obj)} and lost {b}. How many {obj}s does {name} have now?",
        )
    )
    return _number_sample(q, a - b, meta={"op": op, "a": a, "b": b})


def make_arith_image(ctx: SampleContext) -> WorldSample:
    """Multi-math analogue: count shapes (all, or of one colour) in the image, then add or subtract a number."""
    rng = ctx.rng
    form = ctx.balanced(("add", "sub", "colour"), stream="form")
    scene = sample_scene(rng, 1, 5)
    n = len(scene.shapes)
    meta = {"scene": scene, "form": form}
    if form == "add":
        k = rng.randint(0, 9)
        return _number_sample(f"Count the shapes and add {k}. What is the result?", n + k, scene, meta)
    if form == "sub":
        k = rng.randint(0, n)
        return _number_sample(f"Count the shapes and subtract {k}. What is the result?", n - k, scene, meta)
    colour, k = rng.choice(list(COLOURS)), rng.randint(0, 9)
    q = f"How many {colour} shapes are there, plus {k}?"
    return _number_sample(q, len(scene.with_colour(colour)) + k, scene, meta)


def make_arith_mixed(ctx: SampleContext) -> WorldSample:
    """MGSM analogue (test only): half text word problems, half word problems whose start count is in the image.

    The phrasing differs from both training tasks, and the image half needs counting (arith_image's
    skill) inside a story (arith_text's skill), so a router can profit from combining both experts.
    """
    rng = ctx.rng
    modality = ctx.balanced(("text", "image"), stream="modality")
    op = ctx.balanced(("add", "sub"), stream="op")
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    meta = {"modality": modality, "op": op}
    if modality == "text":
        if op == "add":
            a, b = _add_operands(rng)
            q = f"{name} owns {_things(a, obj)}. A friend gives {name} {b} more. How many {obj}s does {name} own?"
            return _number_sample(q, a + b, meta=meta)
        a, b = _sub_operands(rng)
        q = f"Start with {_things(a, obj)} and remove {b}. How many {obj}s remain?"
        return _number_sample(q, a - b, meta=meta)
    scene = sample_scene(rng, 1, 5)
    n = len(scene.shapes)
    meta["scene"] = scene
    if op == "add":
        k = rng.randint(0, 9)
        q = f"Each shape in the picture is a coin. {name} finds {k} more coins. How many coins are there now?"
        return _number_sample(q, n + k, scene, meta)
    k = rng.randint(0, n)
    q = f"Each shape in the picture is a cookie. {name} eats {k} of them. How many cookies remain?"
    return _number_sample(q, n - k, scene, meta)
