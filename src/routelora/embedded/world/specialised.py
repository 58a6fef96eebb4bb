"""Generators of the specialised tasks (the ones LoRA experts learn): caption, entailment, meme, genre.

Each generator maps a :class:`SampleContext` to a :class:`WorldSample`; labels are drawn with
``ctx.balanced`` first and the content is then built to fit the label, so classes are balanced.
"""

from __future__ import annotations

from .language import ENTAILMENT_LABELS, caption, caption_references, hypothesis
from .sampling import SampleContext, WorldSample
from .scenes import COLOURS, SHAPES, plural, sample_scene

CAPTION_PROMPT = "Write a short caption for the image."


def make_caption(ctx: SampleContext) -> WorldSample:
    """COCO analogue: 1-3 shapes -> canonical caption; the references add rule-made paraphrases."""
    scene = sample_scene(ctx.rng, 1, 3)
    return WorldSample(CAPTION_PROMPT, caption(scene), caption_references(scene), scene, {"scene": scene})


def make_entailment(ctx: SampleContext) -> WorldSample:
    """SNLI-VE analogue: does the image make the hypothesis true, false, or leave it open?"""
    label = ctx.balanced(ENTAILMENT_LABELS)
    scene = sample_scene(ctx.rng, 1, 3)
    hyp, template = hypothesis(scene, label, ctx.rng)
    question = f'Hypothesis: "{hyp}". Does the image entail it? Answer entailment, neutral or contradiction.'
    return WorldSample(question, label, [label], scene, {"scene": scene, "hypothesis": hyp, "template": template})


MEME_LABELS: tuple[str, ...] = ("yes", "no")
MEME_COLOUR_TEXTS = (
    "nobody likes {} things",
    "{} is the worst colour",
    "get the {} ones out of here",
    "{} things ruin everything",
)
# Shape texts take the plural ("crosses").
MEME_SHAPE_TEXTS = (
    "nobody likes {}",
    "{} ruin everything",
    "get the {} out of here",
    "{} are the worst",
)


def make_meme(ctx: SampleContext) -> WorldSample:
    """Hateful Memes analogue: every meme text mocks a colour or a shape kind; hateful iff the image shows it.

    The label is drawn first and independently of the picture, then the mocked target is drawn from
    the attributes present (yes) or absent (no). Both marginals stay uniform, so the text alone and the
    picture alone each predict the label at chance; only their combination decides it.
    """
    label = ctx.balanced(MEME_LABELS)
    kind = ctx.balanced(("colour", "shape"), stream="target")
    scene = sample_scene(ctx.rng, 1, 3)
    present = scene.colours() if kind == "colour" else scene.shape_kinds()
    vocab = COLOURS if kind == "colour" else SHAPES
    pool = sorted(present) if label == "yes" else [v for v in vocab if v not in present]
    target = ctx.rng.choice(pool)
    template = ctx.rng.choice(MEME_COLOUR_TEXTS if kind == "colour" else MEME_SHAPE_TEXTS)
    text = template.format(target if kind == "colour" else plural(target))
    question = f'Meme text: "{text}". Is this meme hateful? Answer yes or no.'
    meta = {"scene": scene, "text": text, "target": target, "target_kind": kind, "template": template}
    return WorldSample(question, label, [label], scene, meta)


GENRES: tuple[str, ...] = ("action", "comedy", "drama", "horror", "romance", "scifi")
# Poster cues: a shape of this colour anywhere on the poster adds the genre (green adds nothing).
GENRE_COLOURS = {"red": "action", "yellow": "comedy", "purple": "horror", "blue": "scifi"}
# Plot cues: any of these phrases in the plot adds the genre.
GENRE_PHRASES = {
    "action": ("a fight", "a car chase"),
    "comedy": ("a joke", "a clown"),
    "drama": ("a family secret", "a hard choice"),
    "horror": ("a ghost", "a monster"),
    "romance": ("a wedding", "a first kiss"),
    "scifi": ("a robot", "a spaceship"),
}
PLOT_SUBJECTS = ("a boy", "a girl", "an old man", "a young woman", "a teacher", "a farmer")
PLOT_VERBS = ("finds", "meets", "remembers", "follows", "escapes")
NEUTRAL_PHRASES = ("a stranger", "a letter", "a dog", "a river", "a key", "a city")


def make_genre(ctx: SampleContext) -> WorldSample:
    """MM-IMDb analogue: poster (1-2 shapes) + plot -> the union of genres cued by poster colours and plot words.

    Answers list genres comma-separated in the fixed order of :data:`GENRES`; a sample with no cue at
    all is redrawn, so every movie has at least one genre.
    """
    rng = ctx.rng
    while True:
        scene = sample_scene(rng, 1, 2)
        n_phrases = rng.choice((1, 2))
        phrases, text_genres = [], set()
        for _ in range(n_phrases):
            if rng.random() < 0.5:
                genre = rng.choice(GENRES)
                phrases.append(rng.choice(GENRE_PHRASES[genre]))
                text_genres.add(genre)
            else:
                phrases.append(rng.choice(NEUTRAL_PHRASES))
        image_genres = {GENRE_COLOURS[c] for c in scene.colours() if c in GENRE_COLOURS}
        genres = [g for g in GENRES if g in image_genres | text_genres]
        if genres and len(set(phrases)) == len(phrases):
            break
    plot = f"{rng.choice(PLOT_SUBJECTS)} {rng.choice(PLOT_VERBS)} {' and '.join(phrases)}"
    question = f'Plot: "{plot}". Which genres fit this movie poster and plot?'
    answer = ", ".join(genres)
    meta = {"scene": scene, "plot": plot, "image_genres": image_genres, "text_genres": text_genres}
    return WorldSample(question, answer, [answer], scene, meta)
