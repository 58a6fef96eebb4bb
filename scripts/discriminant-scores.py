"""Open-world scores read off the shared-covariance discriminant itself, instead of a region per expert: the largest
softmax probability over the experts, the margin of the best expert's score over the second's, and the energy (the
log density of the experts' shared-covariance mixture). A prompt goes to its best expert where its score is at
least that expert's threshold, the 1% quantile of the scores of the expert's own held-out training prompts, and to
the base otherwise.

    python scripts/discriminant-scores.py --shrinkage 0.1

Features are the whole prompt's, pooled from the input embeddings (run 0 of ``gates.runs.run_features``); each
expert's statistics and held-out prompts are split as the default gate recipe splits them. Prints the same table as
``region-features.py`` (the demo's four experts, 100 prompts per task and split, the cached tiny base and world).
An exploration on the comparison's test splits: it chooses no setting. docs/routing.md has what it measured.
"""

import argparse
import importlib.util
import tempfile
from pathlib import Path

import torch

from routelora import load_vlm
from routelora.data.samples import load_split
from routelora.data.task import load_task
from routelora.embedded.cache import cached_base, cached_world
from routelora.gates.config import GateTrainConfig
from routelora.gates.features import FeatureStatistics
from routelora.gates.train import statistics_split
from routelora.routing.discriminant import shared_covariance

_spec = importlib.util.spec_from_file_location("region_features", Path(__file__).with_name("region-features.py"))
region_features = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(region_features)  # the same experts, tasks, splits and feature pooling
EXPERTS, GENERAL, SPLITS = region_features.EXPERTS, region_features.GENERAL, region_features.SPLITS
KINDS = ("largest probability", "margin", "energy")


def whole_prompts(model, processor, samples: list) -> torch.Tensor:
    """(prompts, F) each prompt's features pooled over all of it."""
    return torch.cat([runs.features[:, 0] for runs in region_features.prompt_runs(model, processor, samples, 0)])


class DiscriminantScores:
    """The shared-covariance rule of ``routing.discriminant`` with its quadratic term kept, so that it gives a
    density as well as scores."""

    def __init__(self, statistics: list[dict[str, torch.Tensor]], shrinkage: float) -> None:
        means, covariance = shared_covariance(statistics, shrinkage)  # (experts, F), (F, F)
        self.precision = torch.linalg.inv(covariance)  # (F, F)
        self.weights = self.precision @ means.T  # (F, experts)
        self.biases = -0.5 * (means * self.weights.T).sum(-1)  # (experts,)

    def __call__(self, features: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The best expert (prompts,) and each kind of score (prompts,)."""
        x = features.double()
        logits = x @ self.weights + self.biases  # (prompts, experts)
        top = logits.topk(2, -1).values  # (prompts, 2)
        quadratic = 0.5 * ((x @ self.precision) * x).sum(-1)  # (prompts,)
        found = {
            "largest probability": logits.softmax(-1).amax(-1),
            "margin": top[:, 0] - top[:, 1],
            "energy": torch.logsumexp(logits, -1) - quadratic,
        }
        return logits.argmax(-1), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shrinkage", type=float, default=0.1, help="the default router's is 0.1")
    parser.add_argument("--limit", type=int, default=100, help="prompts per task and split")
    args = parser.parse_args()
    world = cached_world()
    model, processor = load_vlm(cached_base())
    tasks = {name: load_task(world / f"{name}.yaml") for name in (*EXPERTS, *GENERAL)}
    recipe, statistics, held_out = GateTrainConfig(), [], []
    for name in EXPERTS:
        train = load_split(tasks[name], "train").samples
        described, held = statistics_split(train, recipe.prototype_samples, recipe.calibration_samples)
        whole = FeatureStatistics()
        whole.add(whole_prompts(model, processor, described))
        statistics.append(whole.tensors())
        held_out.append(whole_prompts(model, processor, held))
    score = DiscriminantScores(statistics, args.shrinkage)
    thresholds = {kind: torch.stack([torch.quantile(score(h)[1][kind], 0.01) for h in held_out]) for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="routelora-discriminant-scores-") as folder:
        prompts = region_features.comparison_prompts(tasks, Path(folder), args.limit)
        features = {key: score(whole_prompts(model, processor, samples)) for key, samples in prompts.items()}
    for kind in KINDS:
        print(f"{kind} (shrinkage {args.shrinkage})")
        for split in SPLITS:
            own = []
            for index, task in enumerate(EXPERTS):
                best, found = features[task, split]
                own.append(f"{((best == index) & (found[kind] >= thresholds[kind][best])).float().mean():.2f}")
            kept = []
            for task in (task for task in (*GENERAL, "probe") if (task, split) in features):
                best, found = features[task, split]
                kept.append(f"{task} {(found[kind] < thresholds[kind][best]).float().mean():.2f}")
            print(f"  {split:14s} own {' '.join(own)} | kept out {' '.join(kept)}")


if __name__ == "__main__":
    main()
