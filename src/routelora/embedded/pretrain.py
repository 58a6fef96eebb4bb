"""Pretrain the tiny VLM on the task world's general skills, so it has 'foundational capabilities'.

Its mix is the general benchmarks (direct perception questions and what kind of picture it is) and the retention
benchmarks, a quarter of each wrapped in conversation as the world writes them. The specialised tasks are left out
on purpose: the base must not know them, as a real VLM does not know a user's new task. Results are cached by
recipe (model recipe + pretraining recipe + world recipe) so later commands reuse them.
"""

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

from routelora.data.collate import VLMCollator
from routelora.data.samples import load_split
from routelora.data.task import load_task
from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.embedded.world.tasks import tasks_of_kind
from routelora.models.checkpoint import save_checkpoint
from routelora.models.layout import image_token_id
from routelora.training import TrainConfig, mixed_batches, train
from routelora.training.checkpoint import Checkpointing
from routelora.training.distributed import process_state
from routelora.training.packing import pack_batch

RETENTION_TASKS = tasks_of_kind("retention")
GENERAL_TASKS = tasks_of_kind("general")


@dataclass(frozen=True)
class PretrainRecipe:
    """How the tiny base is pretrained."""

    tasks: tuple[str, ...] = GENERAL_TASKS + RETENTION_TASKS
    """World tasks whose train splits make up the pretraining mix (mixed inside every batch): the general
    benchmarks (basics, vqa) and the retention benchmarks, never a specialised task."""
    weights: tuple[float, ...] | None = (3.0, 0.5, 1.0, 1.5, 1.5)
    """Sampling weight of each task in ``tasks`` (None: proportional to the size of its train split). The default
    draws the direct perception questions three times as often as each benchmark: on world v4, where every
    question comes in many phrasings, the proportional mix (2:1:1:1) left colour unlearnt in one run (mcq colour
    questions at chance), docs/pretraining.md. Telling a chart from a page (vqa) is easy, so it is drawn half as
    often as a benchmark; chart, the weakest benchmark, half as often again (at weight 1 the world v5 base
    reached 0.77 on it, under the 0.8 target, docs/pretraining.md)."""
    steps: int = 4000
    """Optimizer steps (about 4 minutes on 2 cores at batch 16, packed). World v4's many phrasings need more than
    world v3's 3000 (mcq 0.785 after 3000, 0.8-1.0 after 4000); 4000 is what fits the 5-minute budget."""
    batch_size: int = 16
    """Samples per step."""
    lr: float = 5e-4
    """Peak learning rate (AdamW, warm-up then cosine). At 1e-3 the tiny model stalls on the answer priors of
    mixed question types; 5e-4 learns them."""
    warmup_ratio: float = 0.05
    """Share of steps spent warming up."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    pack: bool = True
    """Pack each batch's samples into fewer rows without padding (``routelora.training.packing``); the same
    samples and loss, about 1.25x faster on the pretraining mix, where a third of the padded tokens were padding."""
    max_length: int = 160
    """Longest training sequence; longer answers are cut and counted."""
    seed: int = 0
    """Seed of batch sampling."""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("tasks must name at least one world task")
        if self.weights is not None and (len(self.weights) != len(self.tasks) or min(self.weights) < 0):
            raise ValueError(
                f"weights must give one non-negative weight per task ({len(self.tasks)} tasks, "
                f"{len(self.weights)} weights); give weights=None for a mix proportional to the tasks' sizes"
            )
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")


@dataclass
class PretrainReport:
    """What pretraining did and how well the result does."""

    model_recipe: dict
    pretrain_recipe: dict
    world: str
    seconds: float
    final_loss: float
    scores: dict[str, float] = field(default_factory=dict)
    """Test score of every world task evaluated after pretraining."""
    truncated: int = 0


def pretrain_tiny(
    world_dir: str | Path,
    out_dir: str | Path,
    model_recipe: TinyVLMRecipe | None = None,
    recipe: PretrainRecipe | None = None,
    evaluate_tasks: tuple[str, ...] | None = None,
    eval_limit: int | None = None,
    progress: bool = True,
    checkpoint: Checkpointing | None = None,
) -> PretrainReport:
    """Build the tiny VLM, pretrain it on ``recipe.tasks`` of the world in ``world_dir``, evaluate and save it.

    Args:
        world_dir: a generated task world (``routelora world generate``).
        out_dir: checkpoint directory to create.
        model_recipe: architecture of the tiny VLM.
        recipe: pretraining settings.
        evaluate_tasks: world tasks to score after pretraining (default: every task with a test split).
        eval_limit: evaluate only the first N test samples of each task.
        progress: show progress bars.
        checkpoint: save every N steps and resume from the last save.
    """
    from routelora.evaluation.evaluate import evaluate_task

    world_dir = Path(world_dir)
    model_recipe = model_recipe or TinyVLMRecipe()
    recipe = recipe or PretrainRecipe()
    model, processor = build_tiny_vlm(model_recipe)
    pools = [load_split(load_task(world_dir / f"{name}.yaml"), "train").samples for name in recipe.tasks]
    collator = VLMCollator(processor, max_length=recipe.max_length)
    config = TrainConfig(
        steps=recipe.steps,
        lr=recipe.lr,
        warmup_ratio=recipe.warmup_ratio,
        weight_decay=recipe.weight_decay,
        seed=recipe.seed,
    )
    batches = mixed_batches(pools, collator, recipe.batch_size, seed=recipe.seed, weights=recipe.weights)
    if recipe.pack:
        image_id = image_token_id(model.config)
        batches = (pack_batch(batch, image_id, collator.pad_id) for batch in batches)
    if checkpoint is not None:  # a checkpoint of other recipes or another world is refused
        identity = {"model": asdict(model_recipe), "recipe": asdict(recipe), "world": str(world_dir)}
        checkpoint = dataclasses.replace(checkpoint, identity=identity)
    shown = "pretraining" if progress else False
    result = train(model, model.parameters(), batches, config, progress=shown, checkpoint=checkpoint)
    names = evaluate_tasks if evaluate_tasks is not None else _tasks_with_test_split(world_dir)
    scores = {}
    for name in names:
        task = load_task(world_dir / f"{name}.yaml")
        scores[name] = evaluate_task(model, processor, task, limit=eval_limit, progress=progress and name).score
    report = PretrainReport(
        model_recipe=asdict(model_recipe),
        pretrain_recipe=asdict(recipe),
        world=str(world_dir),
        seconds=round(result.seconds, 1),
        final_loss=sum(result.losses[-20:]) / len(result.losses[-20:]),
        scores=scores,
        truncated=collator.stats.truncated,
    )
    extra = {"trained": True, **asdict(report), "losses": result.losses}
    state = process_state()  # under `accelerate launch`, one process writes what all of them trained
    if state.is_main_process:
        save_checkpoint(model, processor, out_dir, extra=extra)
    state.wait_for_everyone()
    return report


def _tasks_with_test_split(world_dir: Path) -> list[str]:
    return sorted(path.stem for path in world_dir.glob("*.yaml") if load_task(path).data.test is not None)
