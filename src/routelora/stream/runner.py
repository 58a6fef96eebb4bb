"""The continual-learning runner: every method learns the stream's tasks in order; after each step every task
of the stream (seen or still to come) and every retention benchmark is evaluated, giving each method's accuracy
matrix ``R[step][task]`` (row 0: the zero-shot base), its metrics and its costs.

Steps run method by method within a step, so a line per finished step says where every method stands. Each
(method, step) writes its row, and its state once learned, before the next begins: a stream that is stopped
continues from the last finished step of each method (``resume``) and, since every method is seeded and states
are read back bit for bit, gives the same matrices. With ``workers`` > 1 the rows are learned in worker
processes first (:mod:`routelora.stream.workers`) and read back here.
"""

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from torch import nn

from routelora import io
from routelora.data.task import TaskConfig
from routelora.environment import run_environment
from routelora.errors import RouteloraError
from routelora.evaluation.suite import base_condition, oracle_conditions, score_conditions
from routelora.experts.fingerprint import base_fingerprint
from routelora.methods.shared import SharedExperts
from routelora.stream.config import StreamConfig
from routelora.stream.result import StreamResult
from routelora.stream.steps import learn_rows, main_writes, scorer, stream_methods
from routelora.stream.workers import check_workers, learn_in_workers


def run_stream(
    config: StreamConfig,
    model: nn.Module,
    processor,
    tasks: list[TaskConfig],
    retention: list[TaskConfig],
    out: str | Path,
    resume: bool = True,
    progress: bool = True,
    prefetch: Sequence[TaskConfig] = (),
) -> StreamResult:
    """Run every method of ``config`` over ``tasks`` (the stream, in order) into ``out``; returns the result,
    also written to ``out/stream.json``. With ``resume``, rows and states already in ``out`` are reused.

    With ``config.workers`` > 1 the methods learn in that many worker processes side by side
    (:mod:`routelora.stream.workers`; ``model`` must then be the one saved in its ``name_or_path`` folder), which
    also train the experts (with gates) of ``prefetch``, tasks that later experiments use (the paper's Tables 4
    and 5); with one worker those are left to whoever asks the store for them."""
    out = Path(out)
    if not resume and out.exists():
        shutil.rmtree(out)
    base = check_workers(model) if config.workers > 1 else None  # refused before anything is evaluated
    _check_same_stream(out, config, model, tasks, retention)
    shared = SharedExperts(out / "experts")
    methods = stream_methods(config, shared, retention)
    evaluated = [*tasks, *retention]
    scores = scorer(config, model, processor, evaluated, progress)
    zero_shot = _cached(out / "zero-shot.json", lambda: {"scores": scores(base_condition(), "zero-shot")})
    if base is not None:
        learn_in_workers(config, model, base, tasks, retention, out, prefetch, progress)
        resume = True  # every row is in ``out`` now, whether or not the stream started over
    results = learn_rows(methods, model, processor, tasks, retention, out, scores, zero_shot["scores"], resume,
                         progress)  # fmt: skip
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
    main_writes(lambda: io.write_json(out / "stream.json", result.to_json(), indent=1))
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
        stored = io.read_json(path)
        stored.get("config", {}).setdefault("workers", 1)  # a stream from before workers ran in this process
        if stored != identity:
            raise RouteloraError(
                f"{out} holds a stream made with other settings, tasks or base model; give another --out, or "
                "--no-resume to start over there"
            )
    else:
        main_writes(lambda: io.write_json(path, identity))


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
    main_writes(lambda: io.write_json(path, value))
    return value
