"""Routing prototypes: per adapted layer, the mean standardised input activation over a task's prompt tokens.

An alternative to trained gates as routing vectors, computed from the task's own training data only (the
continual-learning constraint holds: no other task's data, no task id at inference). Computed on the base model,
so every expert's prototypes live in the same activation space the router sees. Prototypes of general data give
the base model itself a place among the candidates.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from routelora.data.collate import VLMCollator
from routelora.data.samples import Sample, load_split
from routelora.data.task import TaskConfig
from routelora.experts.expert import EMBEDDINGS_KEY
from routelora.experts.library import base_prototypes_path, save_base_prototypes
from routelora.gates.acceptance import calibrate, kept_runs
from routelora.gates.features import FeatureStatistics, language_model_inputs, sequence_features
from routelora.gates.runs import PromptLayout, PromptRuns, run_features, segment_ids
from routelora.models.layout import get_layout, image_token_id, text_token_mask
from routelora.nn import standardise


@torch.no_grad()
def compute_prototypes(
    model: nn.Module,
    processor,
    samples: Sequence[Sample],
    targets: Sequence[str],
    batch_size: int = 32,
    progress: bool | str = True,
    held_out: Sequence[Sample] = (),
) -> dict[str, torch.Tensor]:
    """Mean standardised input of each target linear over the prompts' text tokens (image and padding excluded).

    Returns one float32 (d_in,) tensor per target name, under :data:`EMBEDDINGS_KEY` the same mean of the
    language model's input embeddings, and the statistics of the prompts' pooled text and image features
    (:class:`~routelora.gates.features.FeatureStatistics`), which the default router decides from. Given
    ``held_out`` prompts of the same task (none of ``samples``), also the expert's open-world region, drawn from the
    runs of these prompts' sentences that this forward pools, and the held-out prompts' distances to it
    (:func:`~routelora.gates.acceptance.calibrate`).
    """
    collator = VLMCollator(processor)
    image_id = image_token_id(model.config)
    sums: dict[str, torch.Tensor] = {}
    count = 0
    mask_holder: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def accumulate(module: nn.Module, inputs: tuple) -> None:
            u = standardise(inputs[0].float())  # (batch, seq, d_in)
            mask = mask_holder["mask"][..., None]  # (batch, seq, 1)
            total = (u * mask).sum(dim=(0, 1))  # (d_in,)
            sums[name] = sums[name] + total if name in sums else total

        return accumulate

    handles = [model.get_submodule(name).register_forward_pre_hook(hook(name)) for name in targets]
    embed = hook(EMBEDDINGS_KEY)  # the embeddings' output is what the whole-model decision pools
    embeddings = model.get_input_embeddings()
    handles.append(embeddings.register_forward_hook(lambda module, inputs, output: embed(module, (output,))))
    statistics = FeatureStatistics()
    # the runs of every prompt's sentences, from this same forward, which the region is drawn from
    layout = PromptLayout.from_processor(processor) if held_out else None
    runs: list[PromptRuns] = []

    def pool_features(module: nn.Module, args: tuple, kwargs: dict) -> None:
        # the language model's inputs hold the projector's outputs at the image positions
        inputs = language_model_inputs(module, args, kwargs)
        text, image = mask_holder["mask"].bool(), mask_holder["image"]
        statistics.add(sequence_features(inputs, text, image, "text_image"))
        if layout is not None:
            segments = segment_ids(mask_holder["ids"], text, layout)
            runs.append(kept_runs(run_features(inputs, segments, image, "text_image")))

    language_model = model.get_submodule(get_layout(model).language_model)
    handles.append(language_model.register_forward_pre_hook(pool_features, with_kwargs=True))
    device = next(model.parameters()).device
    model.eval()
    try:
        description = progress if isinstance(progress, str) else "prototypes"
        for start in tqdm(range(0, len(samples), batch_size), desc=description, disable=not progress):
            batch = collator(samples[start : start + batch_size], with_answers=False)
            mask = text_token_mask(batch["input_ids"], batch["attention_mask"], image_id)
            mask_holder["mask"] = mask.to(device).float()
            mask_holder["ids"] = batch["input_ids"].to(device)
            mask_holder["image"] = (batch["input_ids"] == image_id).to(device) if image_id is not None else None
            count += int(mask.sum())
            model(**{key: value.to(device) for key, value in batch.items()})
    finally:
        for handle in handles:
            handle.remove()
    found = {name: (total / max(count, 1)).cpu() for name, total in sums.items()} | statistics.tensors()
    if held_out:
        found |= calibrate(model, processor, held_out, found, batch_size, progress and "calibration", runs, layout)
    return found


def general_prototypes(
    model: nn.Module, processor, tasks: Sequence[TaskConfig], samples: int = 256, progress: bool = True
) -> dict[str, dict[str, torch.Tensor]]:
    """The base model's prototypes of each general-skill task (skill name -> prototypes), from up to ``samples``
    prompts of its train split (else its test split). The data is general data of the base model, never a
    continual-learning task's."""
    targets = get_layout(model).targets
    found = {}
    for task in tasks:
        split = "train" if task.data.train is not None else "test"
        data = load_split(task, split, limit=samples).samples
        shown = f"prototypes {task.name}" if progress else False
        found[task.name] = compute_prototypes(model, processor, data, targets, progress=shown)
    return found


def store_base_prototypes(
    library_root: str | Path,
    model: nn.Module,
    processor,
    tasks: Sequence[TaskConfig],
    samples: int = 256,
    skip_existing: bool = False,
) -> list[Path]:
    """Compute :func:`general_prototypes` and store each skill's in a library; ``skip_existing`` keeps a skill
    already stored. Returns the files written."""
    if skip_existing:
        tasks = [task for task in tasks if not base_prototypes_path(library_root, task.name).is_file()]
    found = general_prototypes(model, processor, tasks, samples)
    return [save_base_prototypes(library_root, skill, prototypes) for skill, prototypes in found.items()]
