"""Tests of the procedural task world (routelora.embedded.world)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from routelora.data.task import load_task
from routelora.embedded.world import (
    TASK_SPECS,
    WORLD_TASKS,
    WorldManifest,
    contact_sheet,
    generate_world,
    resolve_sizes,
    world_corpus,
)
from routelora.embedded.world.charts import chart_geometry
from routelora.embedded.world.conversation import WRAPPED_SHARE
from routelora.embedded.world.instructions import FAMILIES, WRAPPER_PARTS
from routelora.embedded.world.phrasings import parse_families
from routelora.embedded.world.scenes import COLOURS, GRID, OUTLINE, SHAPES, cell_box
from routelora.embedded.world.specialised import MEME_MOCKING_TEXTS
from routelora.embedded.world.vqa import PICTURES
from routelora.metrics import METRICS

TINY = (20, 10)
SPLITS_FIXED = ("train", "test", "test_chatter")
"""The splits of a task asked in fixed phrasings (no reworded split)."""
TEXT_ONLY = {"text_entailment", "arith_text"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> WorldManifest:
    return generate_world(tmp_path_factory.mktemp("w") / "world", seed=0, sizes=TINY, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _samples(task: str, n: int, seed: int = 0, split: str = "train") -> list:
    return [TASK_SPECS[task].sample(seed, split, i) for i in range(n)]


def test_task_names_and_kinds() -> None:
    assert list(WORLD_TASKS) == [
        "caption",
        "text_caption",
        "entailment",
        "meme",
        "genre",
        "mcq",
        "chart",
        "doc",
        "chart_trend",
        "text_entailment",
        "arith_text",
        "arith_image",
        "arith_mixed",
        "basics",
        "vqa",
    ]
    assert Counter(WORLD_TASKS.values()) == {"specialised": 5, "retention": 3, "ablation": 5, "general": 2}


def test_determinism(world: WorldManifest, tmp_path: Path) -> None:
    again = generate_world(tmp_path / "again", seed=0, sizes=TINY, progress=False)
    assert _files(world.root) == _files(again.root)
    other = generate_world(tmp_path / "other", seed=1, sizes=TINY, progress=False)
    for task in WORLD_TASKS:
        assert (world.root / task / "test.jsonl").read_bytes() != (other.root / task / "test.jsonl").read_bytes()


def test_sample_does_not_depend_on_split_size(world: WorldManifest, tmp_path: Path) -> None:
    small = generate_world(tmp_path / "small", seed=0, sizes=(5, 3), tasks=["mcq", "arith_text"], progress=False)
    for task in ("mcq", "arith_text"):
        big_lines = (world.root / task / "train.jsonl").read_text().splitlines()
        assert (small.root / task / "train.jsonl").read_text().splitlines() == big_lines[:5]


def test_layout_and_yaml_schema(world: WorldManifest) -> None:
    info = json.loads((world.root / "world.json").read_text())
    assert info["seed"] == 0 and info["image_size"] == 48 and info["version"].startswith("routelora-world")
    assert list(info["tasks"]) == list(WORLD_TASKS)
    for name, kind in WORLD_TASKS.items():
        doc = yaml.safe_load((world.root / f"{name}.yaml").read_text())
        assert list(doc) == ["name", "description", "kind", "data", "metric", "labels", "max_new_tokens"]
        assert doc["name"] == name and doc["kind"] == kind and doc["metric"] in METRICS
        assert isinstance(doc["description"], str) and "\n" not in doc["description"]
        assert isinstance(doc["max_new_tokens"], int) and doc["max_new_tokens"] > 0
        splits = ("train", "test", "test_reworded", "test_chatter") if TASK_SPECS[name].reworded else SPLITS_FIXED
        assert set(doc["data"]) == set(splits)
        for split in splits:
            rel = doc["data"][split]
            if name == "arith_mixed" and split == "train":
                assert rel is None and not (world.root / name / "train.jsonl").exists()
                continue
            lines = (world.root / rel).read_text().splitlines()
            assert len(lines) == (TINY[0] if split == "train" else TINY[1])
            assert load_task(world.root / f"{name}.yaml").split(split) == (world.root / rel).resolve()
        if doc["metric"] in ("accuracy", "multilabel_precision") and name != "basics":  # basics: open answers
            assert doc["labels"] and len(set(doc["labels"])) == len(doc["labels"])
        else:
            assert doc["labels"] is None
    assert world.tasks["arith_mixed"].train is None and world.tasks["caption"].n_train == TINY[0]


def test_jsonl_records_and_images(world: WorldManifest) -> None:
    for name in WORLD_TASKS:
        spec = TASK_SPECS[name]
        for split in ("train", "test"):
            path = world.root / name / f"{split}.jsonl"
            if not path.exists():
                continue
            for i, rec in enumerate(_records(path)):
                assert rec["id"] == f"{name}-{split}-{i}"
                human, gpt = rec["conversations"]
                assert human["from"] == "human" and gpt["from"] == "gpt"
                assert rec["references"] and gpt["value"] in rec["references"]
                if spec.labels and spec.metric == "accuracy":
                    assert gpt["value"] in spec.labels
                if "image" in rec:
                    assert human["value"].startswith("<image>\n") and human["value"].count("<image>") == 1
                    with Image.open(path.parent / rec["image"]) as img:
                        assert img.size == (48, 48) and img.mode == "RGB"
                else:
                    assert "<image>" not in human["value"]
                    assert name in TEXT_ONLY | {"arith_mixed"}
                if name in TEXT_ONLY:
                    assert "image" not in rec
                # The tiny model trains on sequences of at most 160 tokens: prompts and answers stay short,
                # conversation around a prompt included.
                bare = _unwrapped(human["value"].removeprefix("<image>\n"))
                assert len(bare.split()) <= 27 and len(gpt["value"].split()) <= 10
                assert len(human["value"].split()) <= 50


def test_arith_mixed_has_both_modalities(world: WorldManifest) -> None:
    recs = _records(world.root / "arith_mixed" / "test.jsonl")
    assert {("image" in r) for r in recs} == {True, False}


@pytest.mark.parametrize("task", ["entailment", "meme", "chart_trend", "text_entailment"])
def test_label_balance(task: str) -> None:
    labels = TASK_SPECS[task].labels
    counts = Counter(s.answer for s in _samples(task, 300))
    assert set(counts) == set(labels)
    for label in labels:
        assert abs(counts[label] / 300 - 1 / len(labels)) < 0.05


def _occupied_cells(img: Image.Image) -> list[tuple[int, int]]:
    """Grid cells (row, col) holding any non-background pixel."""
    px = np.asarray(img)
    boxes = {(r, c): cell_box(r, c, img.size[0]) for r in range(GRID) for c in range(GRID)}
    return [cell for cell, (x0, y0, x1, y1) in boxes.items() if (px[y0:y1, x0:x1] != 255).any()]


def test_mcq_fixed_options_balanced_answers_and_true_to_the_image() -> None:
    samples = _samples("mcq", 400)
    by_type = defaultdict(list)
    for s in samples:
        by_type[s.meta["qtype"]].append(s)
    assert {k: len(v) for k, v in by_type.items()} == {"colour": 100, "shape": 100, "count": 100, "row": 100}
    vocab = {
        "colour": list(COLOURS),
        "shape": list(SHAPES),
        "count": ["1", "2", "3", "4"],
        "row": ["top", "middle", "bottom"],
    }
    for qtype, group in by_type.items():
        answers = Counter(s.answer for s in group)
        assert set(answers) == set("ABCDE"[: len(vocab[qtype])]) and max(answers.values()) - min(answers.values()) <= 1
        for s in group:
            options = re.findall(r"^([A-E])\. (.+)$", s.question, flags=re.M)
            assert [v for _, v in options] == vocab[qtype]  # the same list in the same order every time
            chosen = dict(options)[s.answer]
            img = s.image.render(48)
            cells = _occupied_cells(img)
            colours = {name for name, rgb in COLOURS.items() if (np.asarray(img) == rgb).all(axis=2).any()}
            if qtype == "count":
                assert chosen == str(len(cells))
            elif qtype == "colour":
                assert colours == {chosen}
            elif qtype == "shape":
                assert s.meta["scene"].shape_kinds() == {chosen}
            else:
                assert len(cells) == 1 and vocab["row"][cells[0][0]] == chosen


def test_meme_needs_both_modalities() -> None:
    samples = _samples("meme", 4000)
    fit, held_out = samples[:2000], samples[2000:]

    def held_out_accuracy(feature) -> float:
        """Accuracy on held-out samples of the majority label per feature value, learnt on the rest."""
        votes = defaultdict(Counter)
        for s in fit:
            votes[feature(s)][s.answer] += 1
        hits = [votes[feature(s)].most_common(1)[0][0] == s.answer for s in held_out if votes[feature(s)]]
        return float(np.mean(hits))

    text_features = [lambda s: s.meta["text"], lambda s: s.meta["template"]]
    image_features = [
        lambda s: frozenset(s.meta["scene"].colours()),
        lambda s: frozenset(s.meta["scene"].shape_kinds()),
        lambda s: len(s.meta["scene"].shapes),
        lambda s: (frozenset(s.meta["scene"].colours()), frozenset(s.meta["scene"].shape_kinds())),
    ]
    # either modality alone: at best 0.75 (the target for an expert is 0.8)
    for feature in text_features + image_features:
        assert held_out_accuracy(feature) < 0.78
    assert Counter(s.answer for s in samples) == {"yes": 2000, "no": 2000}
    # together they decide it: mocking words under a picture of two or three shapes
    assert held_out_accuracy(lambda s: (s.meta["template"], len(s.meta["scene"].shapes))) == 1.0
    for s in samples:
        mocking = s.meta["template"] in MEME_MOCKING_TEXTS
        assert (mocking and len(s.meta["scene"].shapes) >= 2) == (s.answer == "yes")


def test_entailment_hypotheses_are_true_false_or_unknowable_from_the_image() -> None:
    samples = _samples("entailment", 300)
    for s in samples:
        scene, hyp, template = s.meta["scene"], s.meta["hypothesis"], s.meta["template"]
        if template == "hidden":
            assert s.answer == "neutral" and any(shape.name in hyp for shape in scene.shapes)
            continue
        truth = {
            "there is only one shape": len(scene.shapes) == 1,
            "there are several shapes": len(scene.shapes) > 1,
            "all the shapes are red": {sh.colour for sh in scene.shapes} == {"red"},
            "all the shapes are blue": {sh.colour for sh in scene.shapes} == {"blue"},
            "every shape is a circle": {sh.shape for sh in scene.shapes} == {"circle"},
            "every shape is a square": {sh.shape for sh in scene.shapes} == {"square"},
        }[hyp]
        assert s.answer == ("entailment" if truth else "contradiction")
    # the claim alone never gives the label away
    for claim in {s.meta["hypothesis"] for s in samples if s.meta["template"] != "hidden"}:
        answers = Counter(s.answer for s in samples if s.meta["hypothesis"] == claim)
        assert set(answers) == {"entailment", "contradiction"}


def test_genre_uses_image_and_text() -> None:
    samples = _samples("genre", 500)
    genres = TASK_SPECS["genre"].labels
    for s in samples:
        answer = s.answer.split(", ")
        assert answer and answer == [g for g in genres if g in answer]
    assert all(len(s.meta["scene"].colours()) == 1 for s in samples)
    assert any(s.meta["image_genres"] - s.meta["text_genres"] for s in samples)
    assert any(s.meta["text_genres"] - s.meta["image_genres"] for s in samples)


def test_caption_references() -> None:
    for s in _samples("caption", 200):
        assert len(s.references) >= 3 and len(set(s.references)) == len(s.references)
        assert s.references[0] == s.answer and all(r.strip() for r in s.references)


def _read_bars(img: Image.Image) -> dict[str, int]:
    """Bar values read back from pixels: in the middle column of each bar, the rows of its fill or outline
    colour, divided by the unit height."""
    px = np.asarray(img)
    unit = chart_geometry(img.size[0]).unit
    bars = {}
    for name, rgb in COLOURS.items():
        cols = np.nonzero((px == rgb).all(axis=2).any(axis=0))[0]
        if len(cols):
            column = px[:, (cols[0] + cols[-1]) // 2]
            rows = int(((column == rgb).all(axis=1) | (column == OUTLINE).all(axis=1)).sum())
            assert rows % unit == 0
            bars[name] = rows // unit
    return bars


def test_chart_answers_match_pixels(tmp_path: Path) -> None:
    root = generate_world(tmp_path / "w", sizes=(60, 1), tasks=["chart", "chart_trend"], progress=False).root
    kinds, bar_counts = Counter(), Counter()
    for rec in _records(root / "chart" / "train.jsonl"):
        values = _read_bars(Image.open(root / "chart" / rec["image"]).convert("RGB")).values()
        question, answer = rec["conversations"][0]["value"], rec["conversations"][1]["value"]
        expected = {
            "highest": max(values),
            "lowest": min(values),
            "range": max(values) - min(values),
            "count": len(values),
        }
        kind = next(
            k for k in expected if _unwrapped(question.removeprefix("<image>\n")) in FAMILIES[f"chart_{k}"].train
        )
        assert answer == str(expected[kind])
        kinds[kind] += 1
        bar_counts[len(values)] += 1
    assert set(kinds) == set(expected) and set(bar_counts) == {1, 2, 3}
    for rec in _records(root / "chart_trend" / "train.jsonl"):
        img = Image.open(root / "chart_trend" / rec["image"]).convert("RGB")
        px = np.asarray(img)
        bars = _read_bars(img)
        left_to_right = sorted(bars, key=lambda c: np.nonzero((px == COLOURS[c]).all(axis=2).any(axis=0))[0][0])
        a, b, c = (bars[k] for k in left_to_right)
        expected = {(True, True): "rising", (False, False): "falling", (True, False): "peak in the middle"}
        assert expected.get((a < b, b < c), "dip in the middle") == rec["conversations"][1]["value"]


def test_doc_answers() -> None:
    for s in _samples("doc", 100):
        code = s.meta["code"]
        assert s.answer in (" ".join(code), code[0], code[1], code[-1])


def test_image_size_option(tmp_path: Path) -> None:
    root = generate_world(tmp_path / "big", sizes=(2, 2), tasks=["mcq", "doc"], image_size=96, progress=False).root
    with Image.open(root / "mcq" / "images" / "train_000000.png") as img:
        assert img.size == (96, 96)
    assert json.loads((root / "world.json").read_text())["image_size"] == 96


def test_sizes_resolution() -> None:
    default = resolve_sizes(None, list(WORLD_TASKS))
    assert (
        default["caption"] == (2000, 200) and default["mcq"] == (3000, 200) and default["arith_mixed"] == (None, 200)
    )
    assert resolve_sizes(0.01, ["caption"])["caption"] == (20, 2)
    assert resolve_sizes({"meme": (7, 3)}, ["meme", "doc"]) == {"meme": (7, 3), "doc": (3000, 200)}
    with pytest.raises(ValueError):
        resolve_sizes({"nope": (1, 1)}, ["meme"])
    with pytest.raises(ValueError):
        generate_world("/nonexistent-never-written", tasks=["nope"], progress=False)


def test_atomic_write_leaves_nothing_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(ctx):
        if ctx.index == 5:
            raise RuntimeError("injected")
        return TASK_SPECS["caption"].generate(ctx)

    monkeypatch.setitem(TASK_SPECS, "meme", dataclasses.replace(TASK_SPECS["meme"], generate=boom))
    with pytest.raises(RuntimeError, match="injected"):
        generate_world(tmp_path / "world", sizes=TINY, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_replaces_a_world_but_not_other_folders(tmp_path: Path) -> None:
    out = tmp_path / "world"
    generate_world(out, sizes=(2, 2), tasks=["doc"], progress=False)
    generate_world(out, sizes=(3, 2), tasks=["mcq"], progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["mcq", "mcq.yaml", "world.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        generate_world(precious, sizes=(2, 2), tasks=["doc"], progress=False)
    assert (precious / "keep.txt").read_text() == "x"


def test_world_corpus() -> None:
    corpus = world_corpus(seed=0)
    assert len(corpus) > 3000 and all(isinstance(t, str) and t for t in corpus)
    assert not any("<image>" in t for t in corpus)
    assert corpus == world_corpus(seed=0)
    words = set(re.findall(r"[a-z]+", " ".join(corpus)))
    assert {"circle", "entailment", "hateful", "scifi", "highest", "written"} <= words


def test_contact_sheet(world: WorldManifest, tmp_path: Path) -> None:
    out = contact_sheet(world.root, tmp_path / "sheet.png", per_task=3)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 400 and img.size[1] > 400 * 3


def test_basics_questions_are_direct_and_balanced() -> None:
    samples = _samples("basics", 70)
    kinds = Counter(s.meta["kind"] for s in samples)
    assert len(kinds) == 7 and set(kinds.values()) == {10}
    single = [s for s in samples if s.meta["kind"] in ("colour", "shape", "row")]
    assert all(len(s.image.shapes) == 1 and len(s.answer.split()) == 1 for s in single)
    bars = [s for s in samples if s.meta["kind"] == "bar_value"]
    assert all(len(s.image.bars) == 1 and s.answer == str(s.image.bars[0].value) for s in bars)


def _template(phrasing: str) -> re.Pattern:
    return re.compile(".+".join(re.escape(part) for part in re.split(r"{\w+}", phrasing)))


def _matches(line: str, phrasings) -> bool:
    return any(_template(p).fullmatch(line) for p in phrasings)


ALL_TRAIN = [p for family in FAMILIES.values() for p in family.train]
ALL_HELD_OUT = [p for family in FAMILIES.values() for p in family.held_out]
WRAPPERS = {name: parts.train + parts.held_out for name, parts in WRAPPER_PARTS.items()}


def _wrapping(question: str) -> tuple[list[str], str]:
    """The conversation parts around ``question`` (greeting, context, thanks, in order) and the bare question."""
    found = []
    for part in ("greeting", "context"):
        for text in sorted(WRAPPERS[part], key=len, reverse=True):
            if question.startswith(text + " "):
                found.append(text)
                question = question[len(text) + 1 :]
                break
    for text in sorted(WRAPPERS["thanks"], key=len, reverse=True):
        if question.endswith(" " + text):
            found.append(text)
            question = question[: -len(text) - 1]
            break
    return found, question


def _unwrapped(question: str) -> str:
    return _wrapping(question)[1]


def test_phrasing_families_are_large_and_held_out_phrasings_are_never_trained() -> None:
    assert all(len(f.train) >= 8 and len(f.held_out) >= 4 for f in FAMILIES.values())
    # across families too: no held-out phrasing reads as any family's training phrasing
    assert not [p for p in ALL_HELD_OUT if _matches(p, ALL_TRAIN)]


def test_reworded_split_is_the_test_split_in_held_out_phrasings() -> None:
    for name, spec in TASK_SPECS.items():
        if not spec.reworded:
            assert not spec.has_train or name.startswith("arith")
            continue
        seen = set()
        for i in range(12):
            train, test, reworded = (spec.sample(0, split, i) for split in ("train", "test", "test_reworded"))
            assert reworded.answer == test.answer and reworded.references == test.references
            if test.image is not None:
                assert np.array_equal(np.asarray(reworded.image.render(48)), np.asarray(test.image.render(48)))
            for sample, trained in ((train, True), (test, True), (reworded, False)):
                lines = _unwrapped(sample.question).splitlines()
                assert any(_matches(line, ALL_TRAIN if trained else ALL_HELD_OUT) for line in lines), (name, lines)
                assert not any(_matches(line, ALL_HELD_OUT if trained else ALL_TRAIN) for line in lines), (name, lines)
            seen.add(_unwrapped(train.question).splitlines()[0])
        assert len(seen) > 1, f"{name} asks in one phrasing only"


def test_world_corpus_holds_no_held_out_phrasing() -> None:
    corpus = world_corpus(per_task=40)
    assert not [t for t in corpus for line in t.splitlines() if _matches(line, ALL_HELD_OUT)]


def test_every_word_of_a_held_out_phrasing_is_trained_somewhere() -> None:
    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z']+", re.sub(r"{\w+}", " ", text).lower()))

    trained = set().union(*(words(p) for p in ALL_TRAIN))
    assert not {w for p in ALL_HELD_OUT for w in words(p)} - trained


def test_chatter_split_is_the_test_split_wrapped_in_held_out_conversation() -> None:
    held_out = {text for parts in WRAPPER_PARTS.values() for text in parts.held_out}
    for name, spec in TASK_SPECS.items():
        for i in range(6):
            test, chatter = spec.sample(0, "test", i), spec.sample(0, "test_chatter", i)
            assert chatter.answer == test.answer and chatter.references == test.references
            if test.image is not None:
                assert np.array_equal(np.asarray(chatter.image.render(48)), np.asarray(test.image.render(48)))
            parts, bare = _wrapping(chatter.question)
            assert bare == test.question and len(parts) == 3 and set(parts) <= held_out, (name, chatter.question)


def test_a_quarter_of_training_samples_are_wrapped_in_training_parts_only() -> None:
    trained = {text for parts in WRAPPER_PARTS.values() for text in parts.train}
    for name in ("caption", "mcq", "basics"):
        for split in ("train", "corpus"):
            wrapped = 0
            for sample in _samples(name, 400, split=split):
                parts, _ = _wrapping(sample.question)
                assert set(parts) <= trained, (name, sample.question)
                wrapped += bool(parts)
            assert abs(wrapped / 400 - WRAPPED_SHARE) < 0.07, (name, split, wrapped)
    # the test and reworded splits are never wrapped
    assert not any(_wrapping(s.question)[0] for s in _samples("caption", 100, split="test"))
    assert not any(_wrapping(s.question)[0] for s in _samples("caption", 100, split="test_reworded"))


def test_wrapper_parts_are_held_out_like_phrasings() -> None:
    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z']+", text.lower()))

    trained = set().union(*(words(p) for parts in WRAPPER_PARTS.values() for p in parts.train))
    for name, parts in WRAPPER_PARTS.items():
        assert not set(parts.train) & set(parts.held_out), name
        assert not {w for p in parts.held_out for w in words(p)} - trained, name


def test_vqa_answers_the_kind_of_picture_and_balances_yes_and_no() -> None:
    samples = _samples("vqa", 180)
    kinds = [s for s in samples if s.meta["qtype"] == "kind"]
    assert Counter(s.meta["picture"] for s in kinds) == {picture: 20 for picture in PICTURES}
    for qtype in ("chart", "page"):
        assert Counter(s.answer for s in samples if s.meta["qtype"] == qtype) == {"yes": 30, "no": 30}
    for sample in samples:
        kind = {"Scene": "shapes", "BarChart": "chart", "DocPage": "page"}[type(sample.image).__name__]
        assert kind == sample.meta["picture"]
        if sample.meta["qtype"] == "kind":
            assert sample.answer == kind
        else:
            assert (kind == sample.meta["qtype"]) == (sample.answer == "yes"), sample.question


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["a list"], "expected a mapping"),
        ({"fam": {"train": ["x"] * 8}}, "exactly the keys train and held_out"),
        ({"fam": {"train": "x", "held_out": ["y"] * 4}}, "must be lists"),
        ({"fam": {"train": ["x"] * 3, "held_out": ["y"] * 4}}, ">= 8 training"),
        ({"fam": {"train": [f"a {i}" for i in range(8)], "held_out": [3, "b", "c", "d"]}}, "not a string"),
    ],
)
def test_phrasing_files_are_checked_with_the_file_and_family_named(data, message) -> None:
    with pytest.raises(ValueError, match=message) as error:
        parse_families(data, "texts/broken.yaml")
    assert str(error.value).startswith("texts/broken.yaml:")
