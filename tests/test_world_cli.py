"""The world, tiny and cache commands end to end, on small sizes."""

import json

import pytest

from routelora.cli.main import main
from routelora.data.task import load_task
from routelora.embedded.cache import cached_base, cached_world
from routelora.embedded.pretrain import PretrainRecipe
from routelora.models import load_vlm


def test_world_generate_and_sheet(tmp_path, capsys):
    out = tmp_path / "world"
    assert (
        main(
            [
                "world",
                "generate",
                "--out",
                str(out),
                "--size",
                "8,4",
                "--tasks",
                "mcq,caption",
                "--sheet",
                str(tmp_path / "sheet.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "sheet.png").stat().st_size > 1000
    task = load_task(out / "caption.yaml")
    assert task.metric == "cider" and len(task.split("train").read_text().splitlines()) == 8
    assert not (out / "doc.yaml").exists()


def test_world_size_is_validated(tmp_path, capsys):
    assert main(["world", "generate", "--out", str(tmp_path / "w"), "--size", "lots"]) == 2
    assert "--size must be a scale" in capsys.readouterr().err


def test_tiny_build_writes_a_loadable_checkpoint(tmp_path, capsys):
    assert main(["tiny", "build", "--out", str(tmp_path / "tiny"), "--seed", "3"]) == 0
    model, processor = load_vlm(tmp_path / "tiny")
    meta = json.loads((tmp_path / "tiny" / "routelora.json").read_text())
    assert meta["recipe"]["seed"] == 3 and meta["trained"] is False
    assert processor.tokenizer("a red circle").input_ids  # the processor came back too
    assert main(["info", str(tmp_path / "tiny")]) == 0
    assert "llava" in capsys.readouterr().out


def test_tiny_pretrain_command(tmp_path, capsys):
    world = tmp_path / "world"
    tasks = "basics,vqa,mcq,chart,doc"
    assert main(["world", "generate", "--out", str(world), "--size", "16,4", "--tasks", tasks]) == 0
    assert main(["tiny", "pretrain", "--world", str(world), "--out", str(tmp_path / "base"), "--steps", "3"]) == 0
    printed = capsys.readouterr().out
    assert "pretrained in" in printed and "mcq" in printed and "doc" in printed
    meta = json.loads((tmp_path / "base" / "routelora.json").read_text())
    assert (
        meta["trained"] is True
        and len(meta["losses"]) == 3
        and set(meta["scores"]) == {"basics", "vqa", "mcq", "chart", "doc"}
    )


def test_cache_builds_once_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELORA_CACHE", str(tmp_path))
    recipe = PretrainRecipe(steps=2, batch_size=4)
    first = cached_base(recipe=recipe, progress=False, evaluate_tasks=("mcq",), eval_limit=2)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = cached_base(recipe=recipe, progress=False, evaluate_tasks=("mcq",), eval_limit=2)
    assert again == first and (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert cached_world(progress=False) == cached_world(progress=False)
    assert (
        cached_base(recipe=PretrainRecipe(steps=3, batch_size=4), progress=False, evaluate_tasks=(), eval_limit=1)
        != first
    )


def test_pretrain_recipe_weights_must_match_tasks():
    assert PretrainRecipe(weights=(4, 1, 3, 3, 1.5)).weights == (4, 1, 3, 3, 1.5)
    for bad in ((1, 1), (1, 1, 1, 1, -1)):
        with pytest.raises(ValueError, match="weights"):
            PretrainRecipe(weights=bad)


def test_the_cache_key_holds_the_code_and_the_package_versions(tmp_path, monkeypatch):
    from routelora.embedded import cache

    identity = cache.build_identity(cache.BASE_SOURCES, cache.BASE_PACKAGES)
    assert len(identity["source"]) == 64 and identity["versions"]["torch"].startswith("2.")
    world, source = cache.world_path(), cache.build_identity(cache.WORLD_SOURCES, ())["source"]
    monkeypatch.setattr(cache, "version", lambda name: "0.0.0")  # another pillow and numpy
    cache.build_identity.cache_clear()
    try:
        assert cache.world_path() != world and cache.world_path(1) != cache.world_path()
        other = tmp_path / "package"
        (other / "embedded" / "world").mkdir(parents=True)
        (other / "embedded" / "world" / "tasks.py").write_text("# one line of other code\n")
        monkeypatch.setattr(cache, "PACKAGE", other)
        assert cache.build_identity(cache.WORLD_SOURCES, ())["source"] != source
    finally:
        cache.build_identity.cache_clear()
