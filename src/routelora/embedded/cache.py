"""The cache of generated worlds and pretrained tiny bases, keyed by their recipes.

Lives in ``$ROUTELORA_CACHE`` (default ``~/.cache/routelora``). Every entry is written to a temporary folder and
renamed into place, so an interrupted build leaves no half entry behind and the next call builds it again.
"""

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from routelora.embedded.pretrain import PretrainRecipe, pretrain_tiny
from routelora.embedded.tiny import TinyVLMRecipe
from routelora.training.checkpoint import Checkpointing


def cache_root() -> Path:
    """``$ROUTELORA_CACHE`` or ``~/.cache/routelora``."""
    return Path(os.environ.get("ROUTELORA_CACHE", Path.home() / ".cache" / "routelora")).expanduser()


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def cached_world(seed: int = 0, progress: bool = True) -> Path:
    """The default task world for ``seed``, generated on first use."""
    from routelora.embedded.world import WORLD_VERSION, generate_world

    path = cache_root() / f"world-{_key(WORLD_VERSION, seed)}"
    if not (path / "world.json").is_file():
        generate_world(path, seed=seed, progress=progress)
    return path


def cached_base(
    model_recipe: TinyVLMRecipe | None = None,
    recipe: PretrainRecipe | None = None,
    world_seed: int = 0,
    progress: bool = True,
    evaluate_tasks: tuple[str, ...] | None = None,
    eval_limit: int | None = None,
) -> Path:
    """The pretrained tiny base for these recipes, pretrained on first use (a few minutes on a CPU).

    ``evaluate_tasks`` and ``eval_limit`` choose what is scored after a fresh pretraining (default: every world
    task's whole test split); the scores are saved in the checkpoint's ``routelora.json``.
    """
    from routelora.embedded.world import WORLD_VERSION

    model_recipe = model_recipe or TinyVLMRecipe()
    recipe = recipe or PretrainRecipe()
    path = cache_root() / f"tiny-{_key(asdict(model_recipe), asdict(recipe), WORLD_VERSION, world_seed)}"
    if not (path / "config.json").is_file():
        world = cached_world(world_seed, progress)
        # a demo killed while pretraining picks up from the last of these on its next run
        checkpoint = Checkpointing(path.with_name(f"{path.name}.checkpoint"), every=500)
        pretrain_tiny(world, path, model_recipe, recipe, evaluate_tasks, eval_limit, progress, checkpoint)
        shutil.rmtree(checkpoint.folder, ignore_errors=True)
    return path
