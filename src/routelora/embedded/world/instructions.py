"""The world's instruction families: every question type is asked in many phrasings, some kept for testing only.

Real instruction data is rarely one template per task, and a router or a base that has only seen one wording fails
on the next. Each family lists the phrasings that train, test and corpus samples draw from, and a disjoint set of
held-out phrasings that only the ``test_reworded`` split uses. Held-out phrasings are new sentences, but every word
in them occurs somewhere in the training phrasings (a test checks it): a model that never read a word cannot know
its meaning, so they test rewording, not vocabulary. Placeholders (``{hypothesis}``, ``{text}``...) are filled by
the task's generator. The phrasings live in data files (``texts/*.yaml``), read here once.
"""

from __future__ import annotations

from .phrasings import Phrasings, load_families

SPECIALISED_FAMILIES: dict[str, Phrasings] = load_families("instructions")
"""The specialised and ablation tasks' families (``texts/instructions.yaml``)."""
GENERAL_FAMILIES: dict[str, Phrasings] = load_families("general")
"""The general skills' families: the retention benchmarks and the general benchmarks (``texts/general.yaml``)."""
WRAPPER_PARTS: dict[str, Phrasings] = load_families("wrappers")
"""Conversation around an instruction: ``greeting``, ``context`` and ``thanks`` (``texts/wrappers.yaml``,
:mod:`.conversation`)."""

FAMILIES: dict[str, Phrasings] = {**SPECIALISED_FAMILIES, **GENERAL_FAMILIES}
"""Every instruction family by name."""
