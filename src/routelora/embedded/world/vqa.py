"""General visual questions about what kind of picture this is (a general benchmark).

Asked openly ("what kind of picture is this? shapes, chart or page") or as a fixed yes/no question ("is this
picture a chart?", "is this a page of letters?"). The base learns them in pretraining, and no router statistic is
ever computed from them: they stand for the general questions a user asks that nobody foresaw (MMBench in the
paper's Fig. 3). The yes/no questions share the meme task's answer format ("Answer yes or no"), so a router that
routes by the answer's wording fails on them. Each yes/no question names one fixed kind: a question whose kind
varies ("is this a {kind}?") needs a word checked against the picture, which the tiny base does not learn (its
answers to such questions stayed at chance, docs/pretraining.md).
"""

from .charts import sample_chart
from .docs import DocPage, sample_code
from .sampling import SampleContext, WorldSample
from .scenes import sample_scene

PICTURES = ("shapes", "chart", "page")
"""What a picture can be, and the open question's answers."""
VQA_TYPES = ("kind", "chart", "page")
"""The open question, and the yes/no questions "is this a chart?" and "is this a page?"."""
VQA_LABELS = (*PICTURES, "yes", "no")


def _picture(kind: str, ctx: SampleContext):
    if kind == "shapes":
        return sample_scene(ctx.rng, 1, 3)
    return sample_chart(ctx.rng) if kind == "chart" else DocPage(sample_code(ctx.rng))


def make_vqa(ctx: SampleContext) -> WorldSample:
    """The open question on a balanced kind of picture, or a yes/no question with yes and no balanced (a "no"
    shows one of the other two kinds)."""
    qtype = ctx.balanced(VQA_TYPES, stream="qtype")
    rank = ctx.index // len(VQA_TYPES)  # question types come in blocks, so this ranks a sample within its type
    if qtype == "kind":
        picture = ctx.balanced(PICTURES, stream="picture", draw=rank)
        answer, question = picture, ctx.phrase("vqa_kind")
    else:
        answer = ctx.balanced(("yes", "no"), stream=qtype, draw=rank)
        picture = qtype if answer == "yes" else ctx.rng.choice([p for p in PICTURES if p != qtype])
        question = ctx.phrase(f"vqa_{qtype}")
    return WorldSample(question, answer, [answer], _picture(picture, ctx), {"qtype": qtype, "picture": picture})
