"""Generators of the specialised tasks (the ones LoRA experts learn): caption, text_caption, entailment, meme, genre.

Each generator maps a :class:`SampleContext` to a :class:`WorldSample`; labels are drawn with
``ctx.balanced`` first and the content is then built to fit the label, so classes are balanced.
"""

from __future__ import annotations

from .docs import DocPage, sample_code
from .language import ENTAILMENT_LABELS, caption, caption_references, hypothesis
from .sampling import SampleContext, WorldSample
from .scenes import COLOURS, SHAPES, plural, sample_scene


def make_caption(ctx: SampleContext) -> WorldSample:
    """COCO analogue: 1-3 shapes -> canonical caption; the references add rule-made paraphrases."""
    scene = sample_scene(ctx.rng, 1, 3)
    question = ctx.phrase("caption")
    return WorldSample(question, caption(scene), caption_references(scene), scene, {"scene": scene})


def make_text_caption(ctx: SampleContext) -> WorldSample:
    """TextCaps analogue, the caption task's twin: the same instructions and answer style, on pages of text.

    Only the image tells the two tasks apart, so a router that reads the words alone cannot route them.
    """
    code = " ".join(sample_code(ctx.rng))
    answer = f"a page reading {code}"
    references = [answer, f"a page with the letters {code}", f"the letters {code} on a page", f"text reading {code}"]
    return WorldSample(ctx.phrase("caption"), answer, references, DocPage(code.replace(" ", "")), {"code": code})


def make_entailment(ctx: SampleContext) -> WorldSample:
    """SNLI-VE analogue: does the image make the hypothesis true, false, or leave it open?"""
    label = ctx.balanced(ENTAILMENT_LABELS)
    scene, hyp, template = hypothesis(label, ctx.rng)
    question = ctx.phrase("entailment", hypothesis=hyp)
    return WorldSample(question, label, [label], scene, {"scene": scene, "hypothesis": hyp, "template": template})


MEME_LABELS: tuple[str, ...] = ("yes", "no")
# Texts take the plural of a shape kind ("crosses"); the kind named does not matter to the label.
MEME_MOCKING_TEXTS = ("nobody likes {}", "{} ruin everything", "get the {} out of here", "{} are the worst")
MEME_FRIENDLY_TEXTS = ("everybody loves {}", "{} make everything better", "welcome the {} here", "{} are the best")
MEME_CASES = ("hateful", "hateful again", "mocking one", "friendly group")
"""A meme's case, balanced: hateful (drawn twice, so half the memes are), mocking text under one shape, friendly
text under a group."""


def make_meme(ctx: SampleContext) -> WorldSample:
    """Hateful Memes analogue: a meme is hateful iff its text mocks and its picture shows a group (2-3 shapes).

    The same mocking words under a single shape, or friendly words under a group, are not hateful, so the text alone
    and the picture alone each reach 0.75 at best (the test checks it) and only their combination decides. World v3
    asked whether the mocked colour or kind was in the picture, a check of a word against the objects that the tiny
    base cannot make (docs/pretraining.md): its experts stayed at chance.
    """
    case = ctx.balanced(MEME_CASES)
    mocking, group = case != "friendly group", case != "mocking one"
    scene = sample_scene(ctx.rng, 2, 3) if group else sample_scene(ctx.rng, n=1)
    template = ctx.rng.choice(MEME_MOCKING_TEXTS if mocking else MEME_FRIENDLY_TEXTS)
    text = template.format(plural(ctx.rng.choice(SHAPES)))
    label = "yes" if mocking and group else "no"
    question = ctx.phrase("meme", text=text)
    meta = {"scene": scene, "text": text, "mocking": mocking, "group": group, "template": template}
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
    """MM-IMDb analogue: poster (1-2 shapes of one colour) + plot -> the union of the genre its colour cues and the
    genres its plot words cue.

    Posters have one colour, a property of the picture as a whole; world v3's posters mixed colours, and finding
    every colour of a mixed scene is what the tiny base does not learn (its experts' precision stayed at 0.4).
    Answers list genres comma-separated in the fixed order of :data:`GENRES`; a sample with no cue at
    all is redrawn, so every movie has at least one genre.
    """
    rng = ctx.rng
    while True:
        scene = sample_scene(rng, 1, 2, colours=(rng.choice(tuple(COLOURS)),))
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
    question = ctx.phrase("genre", plot=plot)
    answer = ", ".join(genres)
    meta = {"scene": scene, "plot": plot, "image_genres": image_genres, "text_genres": text_genres}
    return WorldSample(question, answer, [answer], scene, meta)
