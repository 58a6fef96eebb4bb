"""A procedural task world that mirrors the paper's task suite at a scale a tiny VLM learns on a CPU.

Every image is a flat-colour scene, bar chart or bitmap-font page on a 3x3 grid of 16 px cells (at the
default 48 px, one cell per image token), with small vocabularies and crisp deterministic rules:

==================  ===========  =====================  =====================================================
task                kind         metric                 rule
==================  ===========  =====================  =====================================================
caption             specialised  cider                  1-3 shapes -> "a red circle above a blue square"
text_caption        specialised  cider                  a page -> "a page reading B E K" (caption's twin)
entailment          specialised  accuracy               hypothesis true / false / about an unseen property
meme                specialised  accuracy               hateful ("yes") iff the image shows what the text mocks
genre               specialised  multilabel_precision   genres cued by poster colours and by plot words
mcq                 retention    multiple_choice        count / kind / colour / row of the shapes, fixed options
chart               retention    relaxed_accuracy       highest / lowest value, their difference, bar count
doc                 retention    anls                   read a 3-letter code or one of its letters
chart_trend         ablation     accuracy               3 bars -> rising / falling / peak / dip in the middle
text_entailment     ablation     accuracy               entailment with a caption as the premise, no image
arith_text          ablation     number_match           add / subtract word problems, numbers 0..20
arith_image         ablation     number_match           count shapes (all or one colour), add / subtract
arith_mixed         ablation     number_match           test only: text problems + problems counting the image
basics              general      accuracy               direct short perception questions (colour, count, a letter...)
vqa                 general      accuracy               what kind of picture: shapes, chart or page (open or yes/no)
==================  ===========  =====================  =====================================================

Every instruction is drawn from a family of phrasings (:mod:`.instructions`, data in ``texts/*.yaml``); a
``test_reworded`` split asks the test samples again in held-out phrasings that training never uses, and a
``test_chatter`` split wraps them in held-out conversation (a greeting, a sentence of context, thanks;
:mod:`.conversation`), as a quarter of the training samples are wrapped in the training parts. ``caption`` and
``text_caption`` share their instructions and answer style and differ only in their images. The general benchmarks
(``basics``, ``vqa``) are general skills of the base that no router's statistics ever come from.

:func:`generate_world` writes LLaVA-format JSONL + PNG + task YAML files; ``sizes`` takes a scale
factor, one ``(train, test)`` pair for all tasks, or a mapping of task name to ``(train, test)``
(see :func:`resolve_sizes`). :func:`world_corpus` gives tokenizer-training texts and
:func:`contact_sheet` draws a few samples of each task for people to look at.
"""

from .corpus import world_corpus
from .sampling import SampleContext, WorldSample, stable_seed
from .sheet import contact_sheet
from .tasks import TASK_SPECS, WORLD_TASKS, TaskSpec, resolve_sizes, tasks_of_kind
from .writer import WORLD_VERSION, TaskFiles, WorldManifest, generate_world, sample_record

__all__ = [
    "TASK_SPECS",
    "WORLD_TASKS",
    "WORLD_VERSION",
    "WorldSample",
    "SampleContext",
    "TaskFiles",
    "TaskSpec",
    "WorldManifest",
    "contact_sheet",
    "generate_world",
    "resolve_sizes",
    "sample_record",
    "stable_seed",
    "tasks_of_kind",
    "world_corpus",
]
