"""The default router's decision: pooled features, per-task statistics and the shared-covariance discriminant."""

import torch

from routelora.gates.features import (
    COUNT_KEY,
    MEAN_KEY,
    SCATTER_KEY,
    FeatureStatistics,
    part_width,
    select_statistics,
    sequence_features,
)
from routelora.nn import standardise
from routelora.routing.discriminant import DiscriminantDecider, fit_discriminant


def _statistics(x: torch.Tensor, batches: int = 3) -> dict[str, torch.Tensor]:
    stats = FeatureStatistics()
    for chunk in x.chunk(batches):
        stats.add(chunk)
    return stats.tensors()


def test_statistics_added_batch_by_batch_are_the_mean_and_scatter_of_all_rows():
    x = torch.randn(50, 6, dtype=torch.float64) * 3 + 1
    stats = _statistics(x)
    centred = x - x.mean(0)
    assert float(stats[COUNT_KEY]) == 50
    torch.testing.assert_close(stats[MEAN_KEY], x.mean(0).float())
    torch.testing.assert_close(stats[SCATTER_KEY], (centred.T @ centred).float(), rtol=1e-5, atol=1e-4)
    text = select_statistics(stats, "text")
    assert text[MEAN_KEY].shape == (3,) and text[SCATTER_KEY].shape == (3, 3)


def test_features_pool_text_and_image_tokens_apart():
    embeddings = torch.randn(2, 5, 8)
    text = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    image = torch.tensor([[0, 0, 1, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    features = sequence_features(embeddings, text, image, "text_image")  # (2, 16)
    tokens = standardise(embeddings)
    torch.testing.assert_close(features[0, :8], tokens[0, :2].mean(0))
    torch.testing.assert_close(features[1, 8:], tokens[1, 0])
    # the image half is what tells apart two prompts with the same words
    other = embeddings.clone()
    other[:, ~text[0] & image[0]] += 1.0
    assert not torch.equal(sequence_features(other, text, image, "text_image")[0, 8:], features[0, 8:])
    assert torch.equal(sequence_features(other, text, image, "text")[0], features[0, :8])
    assert torch.equal(sequence_features(embeddings, text, None, "text_image")[:, 8:], torch.zeros(2, 8))
    # wide embeddings are averaged in blocks: a 2048-wide model gives 512 per part
    assert part_width(2048) == 512 and part_width(192) == 192 and part_width(1000) == 500


def test_discriminant_separates_classes_that_the_nearest_mean_confuses():
    """Two classes whose means differ along a direction of small spread, with a large spread along another: the
    shared-covariance rule separates them, the nearest mean cannot (it fails the test if the rule were Euclid)."""
    generator = torch.Generator().manual_seed(0)

    def draw(mean: float, n: int) -> torch.Tensor:
        noise = torch.randn(n, 2, generator=generator) * torch.tensor([0.1, 3.0])
        # the classes differ by 0.6 along x, but the large y spread is skewed into x, as correlated features are
        return noise @ torch.tensor([[1.0, 0.0], [0.5, 1.0]]) + torch.tensor([mean, 0.0])

    train = [draw(0.0, 400), draw(0.6, 400)]
    test, truth = torch.cat([draw(0.0, 200), draw(0.6, 200)]), torch.cat([torch.zeros(200), torch.ones(200)]).long()
    stats = [_statistics(x.double()) for x in train]

    def accuracy(shrinkage: float) -> float:
        decider = DiscriminantDecider(stats, num_experts=2, top_k=1, shrinkage=shrinkage)
        return (decider(test)[1][:, 0] == truth).float().mean().item()

    assert accuracy(0.0) > 0.97
    assert accuracy(1.0) < 0.8  # shrinkage 1 is the Euclidean nearest mean


def test_the_shared_covariance_is_the_sum_of_per_task_contributions():
    """Adding a task adds its own statistics: the fit from per-task statistics equals the fit from the pooled
    within-class covariance of all the raw data, which no task ever holds."""
    classes = [torch.randn(30 + 10 * i, 4, dtype=torch.float64) + i for i in range(3)]
    weights, biases = fit_discriminant([_statistics(x) for x in classes], shrinkage=0.0)
    within = sum((x - x.mean(0)).T @ (x - x.mean(0)) for x in classes) / (sum(len(x) for x in classes) - 3)
    means = torch.stack([x.mean(0) for x in classes])
    expected = torch.linalg.solve(within, means.T)
    torch.testing.assert_close(weights, expected.float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(biases, (-0.5 * (means * expected.T).sum(-1)).float(), rtol=1e-4, atol=1e-4)


def test_a_base_candidate_that_wins_routes_to_no_expert():
    stats = [_statistics(torch.randn(40, 3, dtype=torch.float64) + 4 * i) for i in range(3)]
    decider = DiscriminantDecider(stats, num_experts=2, top_k=1, shrinkage=0.1)
    weights, chosen = decider(torch.tensor([[0.0, 0, 0], [4.0, 4, 4], [8.0, 8, 8]]))
    assert chosen[:, 0].tolist() == [0, 1, -1] and weights[2].abs().sum() == 0


def test_twin_tasks_with_one_question_are_routed_by_their_images(tmp_path):
    """Two experts whose tasks share their question word for word: the default router sends each task's prompts to
    its own expert, from the image half of the features; the text-only router cannot (one of them is all wrong)."""
    from routelora.data.collate import VLMCollator
    from routelora.data.samples import load_split
    from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
    from routelora.experts.train import ExpertTrainConfig, train_expert
    from routelora.gates.train import GateTrainConfig, train_gates
    from routelora.routing.config import TEXT_PROTOTYPES, RouterConfig
    from routelora.routing.model import attach_router
    from tiny_tasks import CORPUS, twins

    model, processor = build_tiny_vlm(TinyVLMRecipe(), CORPUS)
    tasks = twins(tmp_path)
    config = ExpertTrainConfig(rank=4, steps=2, batch_size=4, lr=1e-2)
    experts = []
    for task in tasks:
        expert, _ = train_expert(model, processor, task, config, progress=False)
        experts.append(
            train_gates(model, processor, expert, task, GateTrainConfig(steps=1, batch_size=4), progress=False)[0]
        )
    collator = VLMCollator(processor)

    def sent_to_own(router: RouterConfig) -> list[float]:
        shares = []
        with attach_router(model, experts, router, base_candidates=False) as handle:
            for index, task in enumerate(tasks):
                handle.record()
                model(**collator(load_split(task, "test").samples, with_answers=False))
                counts = handle.sequence_counts()
                shares.append(float(counts[index] / counts.sum()))
        return shares

    assert sent_to_own(RouterConfig()) == [1.0, 1.0]
    assert min(sent_to_own(TEXT_PROTOTYPES)) == 0.0
