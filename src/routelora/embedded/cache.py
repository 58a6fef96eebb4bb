"""The cache of generated worlds and pretrained tiny bases, keyed by their recipes.

Lives in ``$ROUTELORA_CACHE`` (default ``~/.cache/routelora``). Every entry is written to a temporary folder and
renamed into place, so an interrupted build leaves no half entry behind and the next call builds it again.

The key holds what makes an entry, not only its recipe: the source of the code that builds it and the versions of
the packages whose arithmetic it runs on. A base pretrained by older code or another transformers is not reused
under the same recipe (it happened: a cached base differed from a fresh build of the same recipe from step 7 of its
loss log on, cause not kept, and every figure of a demo run on it differed with it).
"""

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from routelora.embedded.pretrain import PretrainRecipe, pretrain_tiny
from routelora.embedded.tiny import TinyVLMRecipe
from routelora.training.checkpoint import Checkpointing


def cache_root() -> Path:
    """``$ROUTELORA_CACHE`` or ``~/.cache/routelora``."""
    return Path(os.environ.get("ROUTELORA_CACHE", Path.home() / ".cache" / "routelora")).expanduser()


PACKAGE = Path(__file__).resolve().parents[1]
WORLD_SOURCES = ("embedded/world",)
"""The code (and the text files beside it) that generates a world."""
BASE_SOURCES = ("embedded", "training", "data", "models")
"""The code that builds, tokenises, trains and saves a tiny base (the world's own, since the base learns it)."""
BASE_PACKAGES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "pillow", "numpy")
WORLD_PACKAGES = ("pillow", "numpy")


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@cache
def build_identity(sources: tuple[str, ...], packages: tuple[str, ...]) -> dict:
    """The source digest of ``sources`` (folders of this package, every file in them) and the versions of
    ``packages``: what a cache entry's key holds beside its recipe."""
    digest = hashlib.sha256()
    for folder in sources:
        for path in sorted((PACKAGE / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes())
    versions = {}
    for name in packages:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {"source": digest.hexdigest(), "versions": versions}


def world_path(seed: int = 0) -> Path:
    """Where the world of ``seed`` is cached (built or not)."""
    from routelora.embedded.world import WORLD_VERSION

    return cache_root() / f"world-{_key(WORLD_VERSION, seed, build_identity(WORLD_SOURCES, WORLD_PACKAGES))}"


def cached_world(seed: int = 0, progress: bool = True) -> Path:
    """The default task world for ``seed``, generated on first use."""
    from routelora.embedded.world import generate_world

    path = world_path(seed)
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
    identity = build_identity(BASE_SOURCES, BASE_PACKAGES)
    path = cache_root() / f"tiny-{_key(asdict(model_recipe), asdict(recipe), WORLD_VERSION, world_seed, identity)}"
    if not (path / "config.json").is_file():
        world = cached_world(world_seed, progress)
        # a demo killed while pretraining picks up from the last of these on its next run
        checkpoint = Checkpointing(path.with_name(f"{path.name}.checkpoint"), every=500)
        pretrain_tiny(world, path, model_recipe, recipe, evaluate_tasks, eval_limit, progress, checkpoint)
        shutil.rmtree(checkpoint.folder, ignore_errors=True)
    return path
