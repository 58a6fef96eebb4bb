"""The steps of a stream's methods: each method built from the stream's recipes, then learned task by task,
each (method, step) evaluated and written with its state as it finishes, in this process or in a worker
(:mod:`routelora.stream.workers`)."""

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from torch import nn
from tqdm.auto import tqdm

from routelora import io
from routelora.data.samples import Sample, load_split
from routelora.data.task import TaskConfig
from routelora.errors import RouteloraError
from routelora.evaluation.suite import Condition, score_conditions
from routelora.methods import METHODS, Method, method_condition
from routelora.methods.shared import SharedExperts
from routelora.stream.config import StreamConfig
from routelora.stream.result import MethodResult
from routelora.stream.state_io import load_state, save_state, tensor_bytes
from routelora.training import tally
from routelora.training.distributed import process_state

Scores = Callable[[Condition, str], dict[str, float]]
"""``scores(condition, label)``: a condition's score on every evaluated task, by task name."""


ROUTED = ("routelora", "text-prototypes", "paper")


def stream_methods(config: StreamConfig, shared: SharedExperts, retention: list[TaskConfig]) -> dict[str, Method]:
    """The stream's methods, each given the recipes of ``config`` that it takes."""
    common = {"expert": config.expert, "shared": shared}
    # the default router is open-world: no general data enters its statistics, so the retention benchmarks it is
    # scored on are inputs it never saw; the earlier default is closed-world and keeps the retention benchmarks'
    # statistics as base candidates
    options = {name: {**common, "gates": config.gates} for name in ROUTED}
    options["text-prototypes"]["general"] = retention
    options |= {name: common for name in ("averaging", "ties")}
    options |= {"dare": {**common, "seed": config.seed}, "arrow": {**common, "seed": config.seed}}
    options["task-arithmetic"] = {**common, "validation": config.expert.holdout}
    options["sequential-full"] = {"recipe": config.full, "shared": shared}
    options["sequential-lora"] = {"recipe": config.expert, "shared": shared}
    options["replay"] = {"recipe": config.full, "replay": config.replay, "seed": config.seed, "shared": shared}
    options |= {"multitask-lora": {"recipe": config.expert}, "multitask-full": {"recipe": config.full}}
    unknown = [name for name in config.methods if name not in METHODS]
    if unknown:
        raise RouteloraError(f"methods: unknown {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if "task-arithmetic" in config.methods and config.expert.holdout < 1:
        raise RouteloraError("task-arithmetic needs expert.holdout >= 1: the training samples it chooses lambda on")
    return {name: METHODS[name](**options.get(name, {})) for name in config.methods}


def learn_rows(
    methods: dict[str, Method],
    model: nn.Module,
    processor,
    tasks: list[TaskConfig],
    retention: list[TaskConfig],
    out: Path,
    scores: Scores,
    zero_shot: dict[str, float],
    resume: bool = True,
    progress: bool = False,
    on_row: Callable[[str, int, float], None] = lambda method, step, seconds: None,
) -> dict[str, MethodResult]:
    """Every step of ``methods`` over ``tasks``, step by step: each (method, step) row already in ``out`` is read
    back (with ``resume``), every other one learned, evaluated by ``scores(condition, label)`` and written with its
    state; ``on_row(method, step, seconds)`` is told of each learned one. A worker process runs it for its share
    of the methods (:mod:`routelora.stream.workers`)."""
    names = [task.name for task in [*tasks, *retention]]
    say = tqdm.write if progress else (lambda line: None)
    results = {name: MethodResult(name, [zero_shot]) for name in methods}
    states: dict[str, object] = {}
    for step, task in enumerate(tasks, start=1):
        start = time.perf_counter()
        bar = tqdm(methods.items(), desc=f"step {step}/{len(tasks)}: {task.name}", disable=not progress)
        for name, method in bar:
            joint = getattr(method, "joint", False)
            if step not in method_steps(method, len(tasks)):
                continue
            path = row_path(out, name, step)
            folder = path.parent
            if resume and path.is_file():
                results[name].add(step, io.read_json(path))
                continue
            previous = states.pop(name, None)
            if previous is None and step > 1 and not joint:
                previous = load_state(folder / f"state-{step - 1}")
            learn_start = time.perf_counter()
            with tally() as cost:
                if joint:
                    state = method.learn_jointly(model, processor, tasks)
                else:
                    state = method.learn(model, processor, task, previous)
            learned = time.perf_counter() - learn_start
            state_folder = folder / f"state-{step}"
            main_writes(save_state, state, state_folder)
            evaluation_start = time.perf_counter()
            row_scores = scores(method_condition(method, state), name)
            kept_samples, kept_bytes = _kept(state)
            row = {
                "scores": row_scores,
                "learn_seconds": learned,
                "eval_seconds": time.perf_counter() - evaluation_start,
                "cost": asdict(cost),
                "stored_bytes": tensor_bytes(state_folder) + kept_bytes,
                "kept_samples": kept_samples,
            }
            main_writes(_write_row, path, row, folder, state_folder)
            results[name].add(step, row)
            states[name] = state
            on_row(name, step, learned + row["eval_seconds"])
        say(_step_line(step, len(tasks), task.name, results, names, time.perf_counter() - start))
    return results


def method_steps(method: Method, tasks: int) -> range:
    """The steps after which ``method`` has a row: every one, or the last only for a method that learns every
    task at once (``joint``)."""
    return range(tasks, tasks + 1) if getattr(method, "joint", False) else range(1, tasks + 1)


def row_path(out: Path, method: str, step: int) -> Path:
    """Where ``method``'s row after ``step`` is written in the stream folder ``out``."""
    return out / "methods" / method / f"step-{step}.json"


def scorer(config: StreamConfig, model: nn.Module, processor, evaluated: list[TaskConfig], progress: bool) -> Scores:
    """``scores(condition, label)``: the condition's score on every task of ``evaluated``, by task name."""
    names = [task.name for task in evaluated]

    def scores(condition, label: str) -> dict[str, float]:
        shown = (lambda c, t: f"{label}: {t.name}") if progress else (lambda c, t: False)
        suite = score_conditions(model, processor, [condition], evaluated, config.split, config.eval_limit,
                                 progress=shown)  # fmt: skip
        return {name: suite.score(condition.label, name) for name in names}

    return scores


def _write_row(path: Path, row: dict, folder: Path, newest: Path) -> None:
    io.write_json(path, row)
    for earlier in folder.glob("state-*"):  # only the newest state is needed to go on
        if earlier.name != newest.name:
            shutil.rmtree(earlier, ignore_errors=True)


def main_writes(write: Callable[..., None], *arguments) -> None:
    """Under ``accelerate launch`` every process runs the stream (training and evaluation are split between
    them); one writes its files, and the others wait until they are there."""
    state = process_state()
    if state.is_main_process:
        write(*arguments)
    state.wait_for_everyone()


def _kept(state) -> tuple[int, int]:
    """Training samples a state keeps (replay buffers, validation splits, a multi-task model's data) and their
    bytes (text and image files)."""
    samples = list(_samples(state))
    images = {s.image for s in samples if s.image is not None}
    image_bytes = sum(len(i) if isinstance(i, bytes) else i.stat().st_size for i in images)
    return len(samples), image_bytes + sum(len(s.prompt) + len(s.answer) for s in samples)


def _samples(value):
    if isinstance(value, Sample):
        yield value
    elif isinstance(value, TaskConfig):
        return
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _samples(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _samples(item)
    elif hasattr(value, "__dataclass_fields__"):
        tasks = getattr(value, "tasks", None)
        if isinstance(tasks, list) and tasks and isinstance(tasks[0], TaskConfig):
            for task in tasks:  # a multi-task model keeps every task's training data
                yield from load_split(task, "train").samples
        for name in value.__dataclass_fields__:
            if name != "tasks":
                yield from _samples(getattr(value, name))


def _step_line(step: int, steps: int, task: str, results: dict[str, MethodResult], names: list[str], seconds) -> str:
    parts = []
    for name, result in results.items():
        row = result.rows[step] if step < len(result.rows) else None
        if row is not None:
            parts.append(f"{name} " + " ".join(f"{row[n]:.2f}" for n in names))
    return f"step {step}/{steps} ({task}) done in {seconds:.0f} s; scores on {', '.join(names)}: " + "; ".join(parts)
