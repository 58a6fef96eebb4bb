"""The demo at several seeds: every seed of a run moved together, and the summary's verdicts and spreads on
hand-made runs (a claim that fails at one seed is not held)."""

import json

import pytest

from routelora.experiments.paper import FULL
from routelora.experiments.paper_claims import check_claims
from routelora.experiments.paper_seeds import expert_checks, seeded, seeds_report, spread, summarise
from routelora.stream.result import MethodResult, StreamResult

MACHINE = {"cpu_model": "test CPU", "cpus": 2, "torch_cpu_capability": "AVX2", "torch": "2.13.0+cpu"}


def run_of(routing: dict[str, float], multitask: dict[str, float], seconds: float) -> dict:
    """A run's results as ``run_paper`` returns them, for a stream of two methods scored once, after the last task."""
    tasks = list(routing)
    metrics = {task: "cider" if task == "caption" else "accuracy" for task in tasks}
    zero = dict.fromkeys(tasks, 0.0)
    methods = {
        name: MethodResult(name, [zero, *[None] * (len(tasks) - 1), dict(scores)])
        for name, scores in [("routelora", routing), ("multitask-lora", multitask)]
    }
    stream = StreamResult({}, tasks, [], metrics, zero, dict(routing), methods)
    stream = StreamResult.from_json(json.loads(json.dumps(stream.to_json())))
    return {
        "claims": check_claims(stream, {}),
        "stream": stream.to_json(),
        "seconds": {"total": seconds},
        "environment": MACHINE,
    }


def test_seeded_moves_every_seed_of_the_run_and_nothing_else():
    config = seeded(FULL, 7)
    stream = config.stream
    assert (stream.seed, stream.expert.seed, stream.full.seed, stream.gates.seed) == (7, 7, 7, 7)
    assert stream.world_seed == FULL.stream.world_seed and stream.expert.steps == FULL.stream.expert.steps
    assert FULL.stream.seed == 0 and FULL.stream.expert.seed == 0  # the module's constant is left as it was


def test_a_claim_is_held_only_where_it_held_at_every_seed_and_its_figures_carry_their_spread(tmp_path):
    multitask = {"caption": 4.0, "entailment": 0.70, "meme": 0.80, "genre": 0.60}
    good = {"caption": 4.0, "entailment": 0.70, "meme": 0.84, "genre": 0.60}  # mean ratio 1.0125
    bad = {"caption": 2.0, "entailment": 0.70, "meme": 0.80, "genre": 0.60}  # caption ratio 0.5
    runs = {0: run_of(good, multitask, 600.0), 1: run_of(bad, multitask, 610.0), 2: run_of(good, multitask, 620.0)}
    checks = {
        0: {"caption-1": {"score": 2.0, "baseline": 0.6, "above_baseline": True}},
        1: {"caption-2": {"score": 0.5, "baseline": 0.6, "above_baseline": False}},
        2: {},
    }
    summary = summarise(runs, checks)
    first = summary["claims"][0]
    assert first["claim"].startswith("1.") and first["held"] == [True, False, True]
    assert first["held_at_every_seed"] is False
    lowest = first["figures"]["lowest vs multitask-lora"]
    assert lowest["values"] == pytest.approx([1.0, 0.5, 1.0]) and lowest["min"] == pytest.approx(0.5)
    assert lowest["mean"] == pytest.approx(2.5 / 3)
    caption = summary["scores"]["routelora"]["caption"]
    assert caption["values"] == [4.0, 2.0, 4.0] and caption["sd"] == pytest.approx(spread([4.0, 2.0, 4.0])["sd"])
    assert list(summary["experts_not_above_baseline"][1]) == ["caption-2"]
    assert summary["experts_not_above_baseline"][0] == {} and summary["experts_checked"] == {0: 1, 1: 1, 2: 0}

    held = summarise({0: runs[0], 2: runs[2]}, {0: checks[0], 2: checks[2]})
    assert held["claims"][0]["held_at_every_seed"] is True

    markdown, page = seeds_report(summary).write(tmp_path, "seeds")
    text = markdown.read_text()
    assert "| seed 0 | seed 1 | seed 2 | held at every seed |" in text
    assert "caption-2 (0.500 vs 0.600)" in text and "1.000, 0.500, 1.000" in text
    assert page.read_text().count("<table>") == 4


def test_spread_of_one_value_and_the_expert_checks_read_from_a_store(tmp_path):
    assert spread([0.5]) == {"mean": 0.5, "sd": 0.0, "min": 0.5, "max": 0.5}
    (tmp_path / "meme-ab").mkdir()
    check = {"score": 0.5, "baseline": 0.5, "above_baseline": False}
    (tmp_path / "meme-ab" / "expert.json").write_text(json.dumps({"training": {"validation_check": check}}))
    (tmp_path / "genre-cd").mkdir()
    skipped = {"skipped": "no validation samples"}
    (tmp_path / "genre-cd" / "expert.json").write_text(json.dumps({"training": {"validation_check": skipped}}))
    assert expert_checks(tmp_path) == {"meme-ab": check}
