"""Open-world regions from two feature sources at once: each expert's region drawn as the library draws it (sentence
runs, conversation region, the 99% quantile of its held-out training prompts), once from the language model's input
embeddings (the default) and once from its hidden states after a layer; a prompt is accepted where both hold it.

    python scripts/region-features.py --layers 1 2
    python scripts/region-features.py --local --layers 1 2   # each sentence attends to itself only

Prints, per rule, the share of each task's prompts its own expert accepts (test, reworded, conversational and
outside-wrapped splits) and the share of each general task kept out of every region; 100 prompts per task and
split, the demo's four experts, the cached tiny base and world. An exploration on the comparison's test splits: it
chooses no setting. docs/routing.md ("Both feature sources at once") has what it measured.
"""

import argparse
import contextlib
import tempfile
from pathlib import Path

import torch

import routelora.gates.acceptance as acceptance
from routelora import load_vlm
from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.data.task import load_task
from routelora.embedded.cache import cached_base, cached_world
from routelora.experiments.outside import general_questions, wrapped_in_outside_words
from routelora.gates.config import GateTrainConfig
from routelora.gates.features import FeatureStatistics
from routelora.gates.runs import PromptLayout, run_features, segment_ids
from routelora.gates.train import statistics_split
from routelora.models.layout import get_layout, image_token_id, text_token_mask
from routelora.routing.regions import RegionTest

EXPERTS = ("caption", "entailment", "meme", "genre")
GENERAL = ("mcq", "chart", "doc", "basics", "vqa", "chart_trend")
SPLITS = ("test", "test_reworded", "test_chatter", "outside")
RULES = (((0, 1.2),), ((0, 1.5),), ((1, 1.0),), ((2, 1.0),), ((0, 1.5), (1, 1.0)), ((0, 1.5), (2, 1.0)),
         ((0, 2.0), (2, 1.0)), ((0, 1.3), (2, 1.2)), ((-1, 1.0),), ((-2, 1.0),), ((0, 1.5), (-2, 1.0)))  # fmt: skip
"""(feature source, margin) pairs that must all hold; source 0 is the input embeddings, k the hidden states after
layer k, -k the text part of layer k's beside the image part of the input embeddings, LOCAL + k the hidden states
after layer k of a forward in which each sentence (and the image, and the chat template's either end) attends to
itself only."""
LOCAL = 10
LOCAL_RULES = (((LOCAL + 1, 1.0),), ((LOCAL + 2, 1.0),), ((0, 1.5), (LOCAL + 1, 1.0)), ((0, 1.5), (LOCAL + 2, 1.0)),
               ((0, 2.0), (LOCAL + 2, 1.0)), ((0, 1.3), (LOCAL + 2, 1.2)), ((LOCAL + 2, 1.2),),
               ((-LOCAL - 1, 1.0),), ((-LOCAL - 2, 1.0),), ((0, 1.5), (-LOCAL - 2, 1.0)))  # fmt: skip


LIBRARY_PROMPT_RUNS = acceptance.prompt_runs
"""The library's runs from the input embeddings, kept before :func:`expert_region` points ``calibrate`` elsewhere."""


class _Stop(Exception):
    """Raised once the features are seen: nothing after them is needed."""


def prompt_runs(model, processor, samples: list, source: int, batch_size: int = 32) -> list:
    """The PromptRuns of ``samples`` (``gates.runs.run_features``) pooled from ``source``."""
    if source < 0:  # the text part from layer -source, the image part from the input embeddings
        texts = prompt_runs(model, processor, samples, -source, batch_size)
        images = prompt_runs(model, processor, samples, 0, batch_size)
        width = texts[0].features.shape[-1] // 2
        return [
            text._replace(features=torch.cat([text.features[..., :width], image.features[..., width:]], -1))
            for text, image in zip(texts, images)
        ]
    layout = PromptLayout.from_processor(processor)
    if source == 0:  # the library's own, as gate training pools them
        return list(LIBRARY_PROMPT_RUNS(model, processor, samples, layout, batch_size))
    language_model = model.get_submodule(get_layout(model).language_model)
    image_id, seen = image_token_id(model.config), {}

    def after(module, args, output) -> None:
        seen["hidden"] = output[0] if isinstance(output, tuple) else output
        raise _Stop

    local, layer = source > LOCAL, source - LOCAL if source > LOCAL else source
    blocks = {}

    def within_sentences(module, args, kwargs):
        """Each token attends to the earlier tokens of its own block (a sentence, the image, ...) only."""
        label = blocks["label"]  # (batch, seq)
        seq = label.shape[1]
        causal = torch.ones(seq, seq, dtype=torch.bool).tril()
        mask = (label[:, :, None] == label[:, None, :]) & causal & blocks["present"][:, None, :]
        mask |= torch.eye(seq, dtype=torch.bool)  # padding rows keep themselves, so no row is empty
        kwargs["attention_mask"] = mask[:, None]  # (batch, 1, seq, seq)
        return args, kwargs

    handle = language_model.layers[layer - 1].register_forward_hook(after)
    if local:
        pre = language_model.register_forward_pre_hook(within_sentences, with_kwargs=True)
    collator, found = VLMCollator(processor), []
    try:
        with torch.no_grad():
            for start in range(0, len(samples), batch_size):
                batch = collator(samples[start : start + batch_size], False)
                ids = batch["input_ids"]
                text = text_token_mask(ids, batch["attention_mask"], image_id)
                segments = segment_ids(ids, text, layout)
                if local:  # a block is a run of tokens of one segment id
                    change = torch.ones_like(segments)
                    change[:, 1:] = (segments[:, 1:] != segments[:, :-1]).long()
                    blocks["label"], blocks["present"] = change.cumsum(1), batch["attention_mask"].bool()
                with contextlib.suppress(_Stop):
                    model(**batch)
                found.append(run_features(seen["hidden"], segments, ids == image_id, "text_image"))
    finally:
        handle.remove()
        if local:
            pre.remove()
    return found


def expert_region(model, processor, task, source: int) -> dict[str, torch.Tensor]:
    """A task's prototypes as ``gate train`` computes them (its training prompts split as the default gate recipe
    splits them), from ``source``'s features."""
    recipe = GateTrainConfig()
    train = load_split(task, "train").samples
    described, held_out = statistics_split(train, recipe.prototype_samples, recipe.calibration_samples)
    described = prompt_runs(model, processor, described, source)
    whole = FeatureStatistics()
    for runs in described:
        whole.add(runs.features[:, 0])  # run 0 is the whole prompt
    statistics = whole.tensors()
    # calibrate() reads the held-out prompts through acceptance.prompt_runs, which pools the input embeddings
    # only; for another source it is pointed at this script's own
    acceptance.prompt_runs = lambda m, p, samples, layout, size, progress=False: iter(
        prompt_runs(m, p, list(samples), source, size)
    )
    try:
        kept = [acceptance.kept_runs(runs) for runs in described]
        found = acceptance.calibrate(model, processor, held_out, statistics, described_runs=kept)
    finally:
        acceptance.prompt_runs = LIBRARY_PROMPT_RUNS
    return {**statistics, **found}


def comparison_prompts(tasks: dict, folder: Path, limit: int) -> dict[tuple[str, str], list]:
    """The first ``limit`` prompts of every task and split, each task's also wrapped in words the world never uses
    (written under ``folder``, which must outlive the prompts' use), and general questions no world task asks."""
    prompts = {}
    for name, task in tasks.items():
        for split in SPLITS[:-1]:
            if getattr(task.data, split) is not None:
                prompts[name, split] = load_split(task, split).samples[:limit]
        prompts[name, "outside"] = load_split(wrapped_in_outside_words(task, folder, limit), "test").samples
    probe = general_questions([tasks[name] for name in ("mcq", "chart", "doc")], folder, limit)
    prompts["probe", "test"] = load_split(probe, "test").samples
    return prompts


def _source_name(source: int) -> str:
    if source == 0:
        return "embeddings"
    if abs(source) > LOCAL:
        alone = f"layer {abs(source) - LOCAL}, each sentence alone"
        return alone if source > 0 else f"{alone}: its text, the embeddings' image"
    return f"layer {source}" if source > 0 else f"layer {-source}'s text, the embeddings' image"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2], help="hidden states after these layers")
    parser.add_argument("--limit", type=int, default=100, help="prompts per task and split")
    parser.add_argument("--local", action="store_true", help="the layers' hidden states with each sentence alone")
    args = parser.parse_args()
    world = cached_world()
    model, processor = load_vlm(cached_base())
    tasks = {name: load_task(world / f"{name}.yaml") for name in (*EXPERTS, *GENERAL)}
    with tempfile.TemporaryDirectory(prefix="routelora-region-features-") as folder:
        prompts = comparison_prompts(tasks, Path(folder), args.limit)
        ratios = {}
        layers = tuple(LOCAL + layer for layer in args.layers) if args.local else args.layers
        sources = (0, *layers, *(-layer for layer in layers))
        for source in sources:
            regions = [expert_region(model, processor, tasks[name], source) for name in EXPERTS]
            test = RegionTest(list(EXPERTS), regions, quantile=0.99, margin=1.0)
            for key, samples in prompts.items():
                runs = prompt_runs(model, processor, samples, source)
                ratios[(source, *key)] = torch.cat([test(batch) for batch in runs])  # (prompts, experts)

    def inside(task: str, split: str, rule) -> torch.Tensor:
        return torch.stack([ratios[source, task, split] <= margin for source, margin in rule]).all(0)

    for rule in (rule for rule in (*RULES, *LOCAL_RULES) if all(source in sources for source, _ in rule)):
        print(" and ".join(f"{_source_name(s)} ({m})" for s, m in rule))
        for split in SPLITS:
            own = [f"{inside(t, split, rule)[:, i].float().mean():.2f}" for i, t in enumerate(EXPERTS)]
            general = [t for t in (*GENERAL, "probe") if (0, t, split) in ratios]
            kept = [f"{t} {1 - inside(t, split, rule).any(1).float().mean():.2f}" for t in general]
            print(f"  {split:14s} own {' '.join(own)} | kept out {' '.join(kept)}")


if __name__ == "__main__":
    main()
