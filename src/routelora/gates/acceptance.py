"""An expert's region, from its own task's data only: how far an input may be from the task and still belong to it.

The open-world half of routelora's default router (docs/method.md, section 5). A task's region is the count, mean m
and scatter S of its prompts' pooled features (:mod:`routelora.gates.features`) over the run of each prompt's
sentences that holds its instruction (:mod:`routelora.gates.runs`): starting from the whole prompts' statistics,
each prompt's best-fitting run is found and the statistics are taken again over those runs, twice. Conversation
around a training instruction then widens no region (over whole prompts, a short caption request wrapped in a
greeting and thanks moved the caption region towards every wrapped question). Its own covariance, shrunk towards
a multiple of the identity,

    C = (1 - a) S / (n - 1) + a * mean(diag(S / (n - 1))) * I,

gives each input's squared distance ``d(x) = (x - m) . C^-1 (x - m)`` to the task, for the run of the input's
sentences that fits the task best. The distances of the task's own held-out training prompts (never among those
the statistics came from) are saved sorted; an expert accepts an input whose distance is at most a chosen quantile
of them, times a margin.

A run is only as good as what it leaves out. The sentences that the training prompts' instruction runs leave out
are the conversation around them (a greeting, a sentence of context, thanks); their pooled text gets statistics of
its own, the task's conversation region, calibrated the same way on the held-out prompts. A run whose remainder
lies outside it is not the task's instruction with conversation around it but part of something else (the
question of a multiple-choice prompt without its options, which can read like a caption request), and the expert
does not test it. A task whose prompts never leave a sentence out has no conversation region, and any run counts.

Nothing here reads another task's data or the library the expert joins, so a threshold never changes when experts
come and go (a shared covariance would move every threshold with each new expert).
Written by hand because neither peft nor transformers has out-of-distribution tests for adapters.
"""

import contextlib
from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from routelora.data.collate import VLMCollator
from routelora.data.samples import Sample
from routelora.experts.expert import CONVERSATION_SCATTER, REGION_SCATTER
from routelora.gates.features import COUNT_KEY, MEAN_KEY, SCATTER_KEY, FeatureStatistics, language_model_inputs
from routelora.gates.runs import PromptLayout, PromptRuns, run_features, segment_ids
from routelora.models.layout import get_layout, image_token_id, text_token_mask

SHRINKAGE = 0.6
"""Share of the identity in an expert's own covariance: the task's own prompts vary in few directions (a dozen
phrasings), and a user's wording moves in others. Chosen on training data only (docs/routing.md): the most lenient
region that still kept 98% of each retention benchmark's training prompts out, judged by how many prompts of
phrasings held out of the statistics it accepted."""
CALIBRATION_KEY, SHRINKAGE_KEY = "routing.calibration", "routing.acceptance_shrinkage"
"""Where the held-out prompts' sorted distances, and the shrinkage they were measured with, live in a prototypes
file."""
REGION_KEYS = ("routing.region_count", "routing.region_mean", REGION_SCATTER)
"""Where the region's count, mean and scatter (over the prompts' instruction runs) live; a file without them (written
by an older routelora) has its region drawn from the whole prompts' statistics."""
CONVERSATION_KEYS = ("routing.conversation_count", "routing.conversation_mean", CONVERSATION_SCATTER)
CONVERSATION_CALIBRATION_KEY = "routing.conversation_calibration"
"""Where the statistics of what the instruction runs leave out (text only), and the held-out prompts' sorted
distances to them, live; a file without them has no conversation region."""
MIN_CONVERSATION = 8
"""Fewest left-out parts (in the statistics, and in the calibration) that make a conversation region."""
REFINEMENTS = 2
"""Rounds of finding each prompt's instruction run and taking the statistics again; a third moved no threshold of
the world's tasks by more than 1%."""


def region_statistics(prototypes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The count, mean and scatter a region is drawn from, under the whole prompts' keys."""
    if all(key in prototypes for key in REGION_KEYS):
        return dict(zip((COUNT_KEY, MEAN_KEY, SCATTER_KEY), (prototypes[key] for key in REGION_KEYS)))
    return {key: prototypes[key] for key in (COUNT_KEY, MEAN_KEY, SCATTER_KEY)}


def region(statistics: dict[str, torch.Tensor], shrinkage: float = SHRINKAGE) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's mean (F,) and a root R (F, F) of its shrunk own precision: ``d(x) = |(x - m) R|^2``, from a
    prototypes file's region (:func:`region_statistics`)."""
    statistics = region_statistics(statistics)
    count = float(statistics[COUNT_KEY])
    covariance = statistics[SCATTER_KEY].double() / max(count - 1, 1.0)  # (F, F)
    ridge = covariance.diagonal().mean().clamp_min(1e-12)
    covariance = (1 - shrinkage) * covariance + shrinkage * ridge * torch.eye(len(covariance), dtype=torch.float64)
    root = torch.linalg.cholesky(torch.linalg.inv(covariance))  # (F, F) lower: C^-1 = R R^T
    return statistics[MEAN_KEY].double(), root


def best_run_distances(
    features: torch.Tensor,
    valid: torch.Tensor,
    means: torch.Tensor,
    roots: torch.Tensor,
    chunk: int = 8,
    shared_tail: int = 0,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """(batch, regions) each input's smallest squared distance to each region over its runs (inf: no run).

    features: (batch, runs, F); valid: (batch, runs) bool; means: (regions, F); roots: (regions, F, F); allowed:
    (batch, runs, regions) bool, the runs each region may test (all where None). Only the runs that exist are
    scored, ``chunk`` regions at a time, so that a large library needs no
    (batch, runs, regions, F) tensor. The last ``shared_tail`` features are the same for every run of an input (the
    image part): ``(x - m) R = x_head R_head + x_tail R_tail - m R`` projects them once per input, not once per run,
    which halves the decision's largest product for text-and-image features.
    """
    batch, runs, width = features.shape
    head = width - shared_tail
    kept = features[valid][:, :head]  # (kept runs, head)
    owner = valid.nonzero()[:, 0]  # (kept runs,) the input each kept run belongs to
    tail = features[:, 0, head:]  # (batch, shared_tail)
    permitted = allowed[valid] if allowed is not None else None  # (kept runs, regions)
    best = features.new_full((batch, len(means)), torch.inf)
    for start in range(0, len(means), chunk):
        root = roots[start : start + chunk].to(kept)  # (c, F, F)
        offset = torch.einsum("cf,cfg->cg", means[start : start + chunk].to(kept), root)  # (c, F)
        projected = torch.einsum("nf,cfg->ncg", kept, root[:, :head]) - offset  # (kept runs, c, F)
        if shared_tail:
            projected = projected + torch.einsum("bf,cfg->bcg", tail, root[:, head:])[owner]
        distances = projected.square().sum(-1)  # (kept runs, c)
        if permitted is not None:
            distances = distances.masked_fill(~permitted[:, start : start + chunk], torch.inf)
        index = owner[:, None].expand_as(distances)
        best[:, start : start + chunk] = best[:, start : start + chunk].scatter_reduce(
            0, index, distances, reduce="amin"
        )
    return best


def instruction_statistics(runs: Sequence[PromptRuns], statistics: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The region's statistics (:data:`REGION_KEYS`): starting from the whole prompts' ``statistics``, those of each
    prompt's best-fitting run, :data:`REFINEMENTS` times; with the statistics of what those runs leave out
    (:data:`CONVERSATION_KEYS`) where at least :data:`MIN_CONVERSATION` leave something out. runs: per batch, the
    runs that exist only (:func:`kept_runs`)."""
    current = {key: statistics[key] for key in (COUNT_KEY, MEAN_KEY, SCATTER_KEY)}
    for _ in range(REFINEMENTS):
        found, (mean, root) = FeatureStatistics(), region(current)
        for batch in runs:
            found.add(batch.features[best_runs(batch, mean, root)[1]])  # (batch, F) each best run
        current = found.tensors()
    result = dict(zip(REGION_KEYS, (current[key] for key in (COUNT_KEY, MEAN_KEY, SCATTER_KEY))))
    conversation, (mean, root) = FeatureStatistics(), region(current)
    for batch in runs:
        best = best_runs(batch, mean, root)[1]
        left = batch.remainders[best][batch.dropped[best]]  # (left out, W)
        if len(left):
            conversation.add(left)
    if conversation.count >= MIN_CONVERSATION:
        result |= dict(zip(CONVERSATION_KEYS, conversation.tensors().values()))
    return result


def kept_runs(runs: PromptRuns) -> PromptRuns:
    """The runs that exist, flattened (kept runs, ...), beside the batch's ``valid`` (batch, runs): the form
    :func:`instruction_statistics` keeps of every batch."""
    valid = runs.valid
    return PromptRuns(runs.features[valid].cpu(), valid.cpu(), runs.remainders[valid].cpu(), runs.dropped[valid].cpu())


def squared_distances(features: torch.Tensor, mean: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    """(n,) float64 ``|(x - m) R|^2`` of features (n, F) to one region's mean (F,) and precision root (F, F)."""
    return ((features.double() - mean) @ root).square().sum(-1)


def best_runs(runs: PromptRuns, mean: torch.Tensor, root: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each prompt's best-fitting run of a :func:`kept_runs` batch: its squared distance (batch,) and where it is
    among the kept runs (batch,)."""
    valid = runs.valid
    distances = torch.full(valid.shape, torch.inf, dtype=torch.float64)  # (batch, runs)
    distances[valid] = squared_distances(runs.features, mean, root)
    position = torch.full(valid.shape, -1, dtype=torch.long)
    position[valid] = torch.arange(int(valid.sum()))
    smallest, best = distances.min(1)
    return smallest, position[torch.arange(len(valid)), best]


@torch.no_grad()
def calibrate(
    model: nn.Module,
    processor,
    samples: Sequence[Sample],
    statistics: dict[str, torch.Tensor],
    batch_size: int = 32,
    progress: bool | str = False,
    described_runs: Sequence[PromptRuns] = (),
    layout: PromptLayout | None = None,
) -> dict[str, torch.Tensor]:
    """The region of the prompts that ``statistics`` came from (their runs, as :func:`instruction_statistics` takes
    them), the held-out prompts' sorted distances to it (``samples``, never among them), and, where the region has
    a conversation region, the sorted distances of what the held-out prompts' best runs leave out; with the prompt
    layout they were measured in (read off ``processor`` unless given); merged into the task's prototypes file.
    Without ``described_runs`` the region is the whole prompts' ``statistics``."""
    layout = layout or PromptLayout.from_processor(processor)
    found = instruction_statistics(described_runs, statistics) if described_runs else {}
    mean, root = region(found or statistics)
    conversation = conversation_region(found) if CONVERSATION_KEYS[0] in found else None  # (W,), (W, W)
    distances, left = [], []
    for runs in prompt_runs(model, processor, samples, layout, batch_size, progress):
        kept = kept_runs(runs)
        smallest, best = best_runs(kept, mean, root)
        distances.append(smallest)
        parts = kept.remainders[best][kept.dropped[best]]  # (left out, W)
        if conversation is not None and len(parts):
            left.append(squared_distances(parts, *conversation))
    result = {
        **found,
        CALIBRATION_KEY: torch.cat(distances).sort().values.float(),
        SHRINKAGE_KEY: torch.tensor([SHRINKAGE]),
        **layout.tensors(),
    }
    if left and sum(map(len, left)) >= MIN_CONVERSATION:
        result[CONVERSATION_CALIBRATION_KEY] = torch.cat(left).sort().values.float()
    else:  # too few held-out parts to place its edge: no conversation region
        result = {key: value for key, value in result.items() if key not in CONVERSATION_KEYS}
    return result


def conversation_region(prototypes: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean (W,) and precision root (W, W) of what a task's instruction runs leave out (:func:`region`), with
    the shrinkage its calibration was measured with."""
    keys = (COUNT_KEY, MEAN_KEY, SCATTER_KEY)
    shrinkage = float(prototypes[SHRINKAGE_KEY]) if SHRINKAGE_KEY in prototypes else SHRINKAGE
    return region({key: prototypes[name] for key, name in zip(keys, CONVERSATION_KEYS)}, shrinkage)


class _Stop(Exception):
    """Raised at the language model's door: calibration needs its inputs, not its forward."""


def prompt_runs(
    model: nn.Module,
    processor,
    samples: Sequence[Sample],
    layout: PromptLayout,
    batch_size: int,
    progress: bool | str = False,
):
    """Yield the :class:`~routelora.gates.runs.PromptRuns` of each batch's prompts (text and image), from a forward
    that stops before the language model's first layer."""
    collator = VLMCollator(processor)
    image_id = image_token_id(model.config)
    language_model = model.get_submodule(get_layout(model).language_model)
    seen: dict[str, torch.Tensor] = {}

    def keep(module: nn.Module, args: tuple, kwargs: dict) -> None:
        seen["embeddings"] = language_model_inputs(module, args, kwargs)
        raise _Stop

    handle = language_model.register_forward_pre_hook(keep, with_kwargs=True)
    device = next(model.parameters()).device
    model.eval()
    try:
        description = progress if isinstance(progress, str) else "calibration"
        for start in tqdm(range(0, len(samples), batch_size), desc=description, disable=not progress):
            batch = {k: v.to(device) for k, v in collator(samples[start : start + batch_size], False).items()}
            with contextlib.suppress(_Stop):
                model(**batch)
            ids = batch["input_ids"]
            text = text_token_mask(ids, batch["attention_mask"], image_id)
            image = (ids == image_id) if image_id is not None else None
            yield run_features(seen["embeddings"], segment_ids(ids, text, layout), image, "text_image")
    finally:
        handle.remove()
