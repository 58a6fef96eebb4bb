"""Each expert's region placed by rewording it never saw, from its own task's data only: the threshold is the 99%
quantile of the distances of held-out training prompts in a phrasing left out of the statistics (one phrasing at a
time), instead of held-out prompts in phrasings the statistics saw.

    python scripts/phrasing-calibration.py

The world's training phrasings (``embedded/world/texts/instructions.yaml``) tell which phrasing each training prompt
has; a user's data carries no such label, so this is the most such a calibration could give. Prints the table of
``region-features.py`` for the default calibration and this one at margins 1.0, 1.1 and 1.2 (the demo's four
experts, 100 prompts per task and split, the cached tiny base and world). An exploration on the comparison's test
splits: it chooses no setting. docs/routing.md has what it measured.
"""

import importlib.util
import re
import sys
import tempfile
from pathlib import Path

import torch
import yaml

import routelora.gates.acceptance as acceptance
from routelora import load_vlm
from routelora.data.samples import load_split
from routelora.data.task import load_task
from routelora.embedded.cache import cached_base, cached_world
from routelora.gates.acceptance import CALIBRATION_KEY
from routelora.gates.config import GateTrainConfig
from routelora.gates.features import FeatureStatistics
from routelora.gates.runs import PromptRuns
from routelora.gates.train import statistics_split
from routelora.routing.regions import RegionTest

_spec = importlib.util.spec_from_file_location("region_features", Path(__file__).with_name("region-features.py"))
region_features = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(region_features)  # the same experts, tasks, splits and feature pooling
EXPERTS, GENERAL, SPLITS = region_features.EXPERTS, region_features.GENERAL, region_features.SPLITS
INSTRUCTIONS = Path(acceptance.__file__).parents[1] / "embedded" / "world" / "texts" / "instructions.yaml"


def phrasing_of(templates: list[str], prompt: str) -> int:
    """The index of the training phrasing that ``prompt`` was written in (-1: none)."""
    for index, template in enumerate(templates):
        if re.search(re.sub(r"\\\{\w+\\\}", ".+?", re.escape(template)), prompt, re.S):
            return index
    return -1


def regions(model, processor, task, templates: list[str]) -> tuple[dict, dict]:
    """The expert's region as ``gate train`` computes it, and the same with its calibration from left-out
    phrasings."""
    recipe = GateTrainConfig()
    train = load_split(task, "train").samples
    described, held_out = statistics_split(train, recipe.prototype_samples, recipe.calibration_samples)
    runs = region_features.prompt_runs(model, processor, described, 0)
    features = torch.cat([batch.features[:, 0] for batch in runs])  # (described, F) the whole prompts
    whole = FeatureStatistics()
    whole.add(features)
    kept_runs = [acceptance.kept_runs(batch) for batch in runs]
    found = acceptance.calibrate(model, processor, held_out, whole.tensors(), described_runs=kept_runs)
    default = {**whole.tensors(), **found}
    phrasings = torch.tensor([phrasing_of(templates, sample.prompt) for sample in described])
    held_phrasings = [phrasing_of(templates, sample.prompt) for sample in held_out]
    if (phrasings < 0).any() or min(held_phrasings) < 0:
        sys.exit(f"{task.name}: a training prompt in no phrasing of {INSTRUCTIONS}")
    distances = []
    for left_out in sorted(set(held_phrasings)):
        kept = phrasings != left_out
        statistics = FeatureStatistics()
        statistics.add(features[kept])
        masks = kept.split([len(batch.features) for batch in runs])  # the described prompts' runs, batch by batch
        other_runs = [acceptance.kept_runs(PromptRuns(*(part[mask] for part in b))) for b, mask in zip(runs, masks)]
        held = [sample for sample, phrasing in zip(held_out, held_phrasings) if phrasing == left_out]
        calibrated = acceptance.calibrate(model, processor, held, statistics.tensors(), described_runs=other_runs)
        distances.append(calibrated[CALIBRATION_KEY])
    return default, {**default, CALIBRATION_KEY: torch.cat(distances).sort().values}


def main() -> None:
    world = cached_world()
    model, processor = load_vlm(cached_base())
    tasks = {name: load_task(world / f"{name}.yaml") for name in (*EXPERTS, *GENERAL)}
    instructions = yaml.safe_load(INSTRUCTIONS.read_text())
    found = [regions(model, processor, tasks[name], instructions[name]["train"]) for name in EXPERTS]
    for name, (default, left_out) in zip(EXPERTS, found):
        quantiles = [float(torch.quantile(f[CALIBRATION_KEY].double(), 0.99)) for f in (default, left_out)]
        print(f"{name}: 99% quantile {quantiles[0]:.1f} (default), {quantiles[1]:.1f} (phrasings left out)")
    with tempfile.TemporaryDirectory(prefix="routelora-phrasing-calibration-") as folder:
        prompts = region_features.comparison_prompts(tasks, Path(folder), 100)
        runs = {key: region_features.prompt_runs(model, processor, samples, 0) for key, samples in prompts.items()}
    for label, column in (("default calibration", 0), ("phrasings left out", 1)):
        for margin in (1.0, 1.1, 1.2):
            test = RegionTest(list(EXPERTS), [pair[column] for pair in found], quantile=0.99, margin=margin)
            print(f"{label} (margin {margin})")
            for split in SPLITS:
                inside = {task: torch.cat([test(b) for b in found_runs]) <= 1.0
                          for (task, where), found_runs in runs.items() if where == split}  # fmt: skip
                own = [f"{inside[task][:, index].float().mean():.2f}" for index, task in enumerate(EXPERTS)]
                general = (task for task in (*GENERAL, "probe") if task in inside)
                kept = [f"{task} {1 - inside[task].any(1).float().mean():.2f}" for task in general]
                print(f"  {split:14s} own {' '.join(own)} | kept out {' '.join(kept)}")


if __name__ == "__main__":
    main()
