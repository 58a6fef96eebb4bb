"""The continual-learning runner: every method learns the stream's tasks in order; after each step every task
of the stream (seen or still to come) and every retention benchmark is evaluated, giving each method's accuracy
matrix ``R[step][task]`` (row 0: the zero-shot base), its metrics and its costs.

Steps run method by method within a step, so a line per finished step says where every method stands. Each
(method, step) writes its row, and its state once learned, before the next begins: a stream that is stopped
continues from the last finished step of each method (``resume``) and, since every method is seeded and states
are read back bit for bit, gives the same matrices.
"""

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from torch import nn
from tqdm.auto import tqdm

from routelora import io
from routelora.data.samples import Sample, load_split
from routelora.data.task import TaskConfig
from routelora.environment import run_environment
from routelora.errors import RouteloraError
from routelora.evaluation.suite import base_condition, oracle_conditions, score_conditions
from routelora.experts.fingerprint import base_fingerprint
from routelora.methods import METHODS, Method, method_condition
from routelora.methods.shared import SharedExperts
from routelora.stream.config import StreamConfig
from routelora.stream.result import MethodResult, StreamResult
from routelora.stream.state_io import load_state, save_state, tensor_bytes
from routelora.training import tally
from routelora.training.distributed import process_state

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


def run_stream(
    config: StreamConfig,
    model: nn.Module,
    processor,
    tasks: list[TaskConfig],
    retention: list[TaskConfig],
    out: str | Path,
    resume: bool = True,
    progress: bool = True,
) -> StreamResult:
    """Run every method of ``config`` over ``tasks`` (the stream, in order) into ``out``; returns the result,
    also written to ``out/stream.json``. With ``resume``, rows and states already in ``out`` are reused."""
    out = Path(out)
    if not resume and out.exists():
        shutil.rmtree(out)
    _check_same_stream(out, config, model, tasks, retention)
    shared = SharedExperts(out / "experts")
    methods = stream_methods(config, shared, retention)
    evaluated = [*tasks, *retention]
    names = [task.name for task in evaluated]
    say = tqdm.write if progress else (lambda line: None)

    def scores(condition, label: str) -> dict[str, float]:
        shown = (lambda c, t: f"{label}: {t.name}") if progress else (lambda c, t: False)
        suite = score_conditions(model, processor, [condition], evaluated, config.split, config.eval_limit,
                                 progress=shown)  # fmt: skip
        return {name: suite.score(condition.label, name) for name in names}

    zero_shot = _cached(out / "zero-shot.json", lambda: {"scores": scores(base_condition(), "zero-shot")})
    results = {name: MethodResult(name, [zero_shot["scores"]]) for name in methods}
    states: dict[str, object] = {}
    for step, task in enumerate(tasks, start=1):
        start = time.perf_counter()
        bar = tqdm(methods.items(), desc=f"step {step}/{len(tasks)}: {task.name}", disable=not progress)
        for name, method in bar:
            joint = getattr(method, "joint", False)
            if joint and step < len(tasks):
                continue
            folder = out / "methods" / name
            row_path = folder / f"step-{step}.json"
            if resume and row_path.is_file():
                results[name].add(step, io.read_json(row_path))
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
            _main_writes(save_state, state, state_folder)
            evaluation_start = time.perf_counter()
            row = {
                "scores": scores(method_condition(method, state), name),
                "learn_seconds": learned,
                "eval_seconds": time.perf_counter() - evaluation_start,
                "cost": asdict(cost),
                "stored_bytes": tensor_bytes(state_folder) + _kept(state)[1],
                "kept_samples": _kept(state)[0],
            }
            _main_writes(_write_row, row_path, row, folder, state_folder)
            results[name].add(step, row)
            states[name] = state
        say(_step_line(step, len(tasks), task.name, results, names, time.perf_counter() - start))
    specialists = _cached(out / "specialists.json", lambda: _specialists(model, processor, config, shared, tasks))
    result = StreamResult(
        config=asdict(config),
        tasks=[task.name for task in tasks],
        retention=[task.name for task in retention],
        metrics={task.name: task.metric for task in evaluated},
        zero_shot=zero_shot["scores"],
        specialists=specialists["scores"],
        methods=results,
        environment=run_environment(),
    )
    _main_writes(lambda: io.write_json(out / "stream.json", result.to_json(), indent=1))
    return result


def _check_same_stream(out: Path, config: StreamConfig, model: nn.Module, tasks, retention) -> None:
    """Refuse to resume into a folder made by another stream (other settings, tasks or base model), whose rows
    would otherwise be mixed into this one's."""
    identity = {
        "config": asdict(config),
        "tasks": [str(task.source) for task in [*tasks, *retention]],
        "base": base_fingerprint(model),
    }
    identity = json.loads(json.dumps(identity, default=str))
    path = out / "stream-identity.json"
    if path.is_file():
        if io.read_json(path) != identity:
            raise RouteloraError(
                f"{out} holds a stream made with other settings, tasks or base model; give another --out, or "
                "--no-resume to start over there"
            )
    else:
        _main_writes(lambda: io.write_json(path, identity))


def _specialists(model, processor, config: StreamConfig, shared: SharedExperts, tasks: list[TaskConfig]) -> dict:
    """Each stream task scored by its own expert alone (the oracle; it needs the task id)."""
    experts = [shared.expert(model, processor, task, config.expert) for task in tasks]
    suite = score_conditions(
        model,
        processor,
        oracle_conditions(experts),
        tasks,
        config.split,
        config.eval_limit,
        progress=lambda c, t: False,
    )
    return {"scores": {task.name: suite.score("oracle", task.name) for task in tasks}}


def _cached(path: Path, compute) -> dict:
    if path.is_file():
        return io.read_json(path)
    value = compute()
    _main_writes(lambda: io.write_json(path, value))
    return value


def _write_row(path: Path, row: dict, folder: Path, newest: Path) -> None:
    io.write_json(path, row)
    for earlier in folder.glob("state-*"):  # only the newest state is needed to go on
        if earlier.name != newest.name:
            shutil.rmtree(earlier, ignore_errors=True)


def _main_writes(write, *arguments) -> None:
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
