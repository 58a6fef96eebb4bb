"""Conversation around an instruction: a greeting and a sentence of context before it, thanks after it.

Users rarely type a benchmark's bare template. A quarter of every task's train (and tokenizer corpus) samples are
wrapped in some of the training parts of :data:`~.instructions.WRAPPER_PARTS`, so that the base, the experts and
the router's statistics all meet conversational prompts; the ``test_chatter`` split asks every test sample again
(same image, same instruction, same answer) wrapped in all three parts, drawn from the held-out parts that no
training sample uses.
"""

from __future__ import annotations

import random

from .instructions import WRAPPER_PARTS
from .sampling import CHATTER, SampleContext, stable_seed

WRAPPED_SHARE = 0.25
"""Share of train and corpus samples that are wrapped."""
PART_ODDS = {"greeting": 0.7, "context": 0.5, "thanks": 0.7}
"""Chance of each part in a wrapped training sample (at least one part is always there)."""
WRAPPED_SPLITS = ("train", "corpus")


def converse(question: str, ctx: SampleContext) -> str:
    """``question`` as sample ``ctx`` asks it: wrapped in held-out parts (all three) in the chatter split, in some
    training parts for a :data:`WRAPPED_SHARE` of train and corpus samples, as it is otherwise. Drawn from a
    generator of its own, so wrapping never changes the image, the instruction's phrasing or the answer."""
    rng = random.Random(stable_seed(ctx.seed, ctx.task, ctx.split, ctx.index, "conversation"))
    if ctx.split == CHATTER:
        parts = {part: rng.choice(WRAPPER_PARTS[part].held_out) for part in PART_ODDS}
    elif ctx.split in WRAPPED_SPLITS and rng.random() < WRAPPED_SHARE:
        chosen = [part for part, odds in PART_ODDS.items() if rng.random() < odds] or [rng.choice(list(PART_ODDS))]
        parts = {part: rng.choice(WRAPPER_PARTS[part].train) for part in chosen}
    else:
        return question
    before = " ".join(parts[part] for part in ("greeting", "context") if part in parts)
    after = parts.get("thanks")
    return " ".join(text for text in (before, question, after) if text)
