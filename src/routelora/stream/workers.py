"""A stream's methods learned in worker processes side by side, each on one thread.

On a CPU of few cores the tiny model's matrices are too small to keep a second thread busy: a LoRA step of 8
caption samples takes 47 ms on two threads and 72-73 ms on one, so two one-thread processes side by side learn
about 1.3 times more per second than one process of two (AMD EPYC, 2 cores, docs/demo.md). torch has no way to run
independent training runs side by side in one process, so the stream hands whole jobs to processes:

1. The main process checks the stream folder and writes the zero-shot row, as without workers.
2. The jobs are queued, longest first: the methods that train weights of their own (multi-task, sequential and
   replay, which share their first task's training and so stay together), then every stream task's expert with
   its gates, the experts of ``prefetch``, and last the methods built on those shared experts.
3. Each worker loads the base from its folder (refusing one whose weights differ from the main process's), sets
   one thread, and takes the next job until none is left: a method's job is :func:`learn_rows` for it alone,
   which writes each row and state to the stream folder as the main process would.
4. The main process shows their progress, and then reads every row back (``run_stream`` resumes them).

An expert two jobs ask for at once is trained by one and read back by the other (``SharedExperts`` holds a file
lock per expert). Every job is seeded and runs on one thread, so its result does not depend on which worker ran
it, or when.
"""

import multiprocessing
import queue
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers.utils import logging as transformers_logging

from routelora import io
from routelora.data.task import TaskConfig, load_task
from routelora.errors import RouteloraError
from routelora.experts.fingerprint import base_fingerprint
from routelora.methods import Method
from routelora.methods.multitask import MultiTaskLearning
from routelora.methods.sequential import SequentialFineTuning
from routelora.methods.shared import SharedExperts
from routelora.models import load_vlm
from routelora.models.layout import get_layout
from routelora.stream.config import StreamConfig
from routelora.stream.steps import learn_rows, method_steps, row_path, scorer, stream_methods
from routelora.training.distributed import process_state

TOGETHER = (("sequential-full", "replay"),)
"""Methods that share work in memory (replay's first task is sequential fine-tuning's), run in one job."""


def stream_jobs(methods: dict[str, Method], experts: list[TaskConfig]) -> list[tuple[str, list[str]]]:
    """The jobs of a stream's ``methods`` (by name, as :func:`stream_methods` builds them) whose shared ``experts``
    are still to train, in the order they are taken: ``("methods", names)`` or ``("expert", [task file])``."""
    own = [name for name, method in methods.items() if isinstance(method, (MultiTaskLearning, SequentialFineTuning))]
    jobs, placed = [], set()
    for name in sorted(own, key=lambda name: not getattr(methods[name], "joint", False)):  # joint ones: longest
        if name in placed:
            continue
        group = next((list(g) for g in TOGETHER if name in g and set(g) <= set(own)), [name])
        jobs.append(("methods", group))
        placed |= set(group)
    sequences = [job for job in jobs if job[1] == ["sequential-lora"]]  # its first task is the shared expert
    jobs = [job for job in jobs if job not in sequences]
    return [
        *jobs,
        *(("expert", [str(task.source)]) for task in experts),
        *sequences,
        *(("methods", [name]) for name in methods if name not in own),
    ]


def workers_refusal(model: nn.Module) -> str | None:
    """Why workers cannot learn a stream of ``model``, in one line, or None where they can: under ``accelerate
    launch`` (its processes already split each batch), a model off the CPU (one thread per worker is a CPU's
    trade), or a model with no folder to load from."""
    if process_state().num_processes > 1:
        return "workers > 1 cannot run under `accelerate launch`; give workers: 1 there"
    device = next(model.parameters()).device
    if device.type != "cpu":
        return f"workers > 1 is for a model on the CPU, and this one is on {device}; give workers: 1"
    base = getattr(model, "name_or_path", "") or ""
    if not base or not (Path(base) / "config.json").is_file():
        return (
            f"workers > 1 loads the base model from its folder, and this model has none ({base!r}); load it with "
            "routelora.load_vlm from a folder, or give workers: 1"
        )
    return None


def check_workers(model: nn.Module) -> str:
    """The folder workers load ``model`` from.

    Raises:
        RouteloraError: workers cannot learn a stream of ``model`` (:func:`workers_refusal` says why).
    """
    refusal = workers_refusal(model)
    if refusal is not None:
        raise RouteloraError(refusal)
    return model.name_or_path


def learn_in_workers(
    config: StreamConfig,
    model: nn.Module,
    base: str,
    tasks: list[TaskConfig],
    retention: list[TaskConfig],
    out: Path,
    prefetch: Sequence[TaskConfig],
    progress: bool = True,
) -> None:
    """Learn every row of the stream (and the experts of ``prefetch`` and of the stream's tasks) into ``out`` in
    ``config.workers`` processes, each loading ``model`` from ``base`` (its folder, :func:`check_workers`);
    returns when all are written.

    Raises:
        RouteloraError: a worker failed or died (its error and the job it ran are named).
    """
    with_experts = [*tasks, *(task for task in prefetch if task.name not in {t.name for t in tasks})]
    shared = SharedExperts(out / "experts")
    missing = [task for task in with_experts if not shared.has(model, task, config.expert, config.gates)]
    methods = stream_methods(config, shared, retention)
    rows = sum(
        not row_path(out, name, step).is_file()
        for name, method in methods.items()
        for step in method_steps(method, len(tasks))
    )
    if not rows and not missing:
        return  # a finished stream, resumed: nothing to learn
    jobs = stream_jobs(methods, missing)
    context = multiprocessing.get_context("spawn")  # a forked process would inherit torch's thread pool
    todo, reports = context.Queue(), context.Queue()
    count = min(config.workers, len(jobs))
    for job in [*jobs, *[None] * count]:  # one None per worker: no job left
        todo.put(job)
    sources = [[str(task.source) for task in part] for part in (tasks, retention)]
    # what the worker's own load must reproduce: the weights (fingerprint), their dtype, the adapter targets
    settings = {
        "fingerprint": base_fingerprint(model),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "targets": list(get_layout(model).targets),
    }
    workers = [
        context.Process(
            target=_work,
            args=(replace(config, workers=1), base, settings, *sources, str(out), todo, reports),
            name=f"routelora-stream-worker-{index}",
            daemon=True,  # a worker never outlives the run that started it
        )
        for index in range(count)
    ]
    bar = tqdm(total=rows + len(missing), desc=f"stream in {len(workers)} workers", disable=not progress)
    try:
        for worker in workers:
            worker.start()
        _follow(workers, reports, bar)
    finally:
        bar.close()
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()


def _follow(workers, reports, bar) -> None:
    """Show the workers' reports until every worker has stopped; raise the first failure, or a worker that died
    without one (killed, out of memory), naming its job."""
    current: dict[str, str] = {}
    while True:
        try:
            name, kind, text = reports.get(timeout=1.0)
        except queue.Empty:
            dead = [worker for worker in workers if worker.exitcode not in (0, None)]
            if dead:
                _raise_reported(reports)  # a worker that failed reports it before it exits
                job = current.get(dead[0].name, "its start")
                message = f"stream worker {dead[0].name} stopped with exit code {dead[0].exitcode} during {job}"
                raise RouteloraError(message) from None
            if any(worker.is_alive() for worker in workers) or not reports.empty():
                continue
            break
        if kind == "failed":
            raise RouteloraError(f"a stream worker failed: {text}")
        if kind == "took":
            current[name] = text
            continue
        bar.update()
        bar.set_postfix_str(text)


def _raise_reported(reports, wait: float = 5.0) -> None:
    """Raise the failure a stopped worker reported, if it is still on its way."""
    try:
        while True:
            _, kind, text = reports.get(timeout=wait)
            if kind == "failed":
                raise RouteloraError(f"a stream worker failed: {text}")
    except queue.Empty:
        return


def _work(config: StreamConfig, base: str, settings: dict, task_files, retention_files, out, todo, reports):
    """A worker: one thread, the base from its folder, then jobs until none is left."""
    me = multiprocessing.current_process().name
    where = "starting the worker"
    try:
        torch.set_num_threads(1)
        transformers_logging.disable_progress_bar()  # the main process shows the workers' progress, in one bar
        model, processor = load_vlm(base, dtype=settings["dtype"], device="cpu")
        same = base_fingerprint(model) == settings["fingerprint"]
        if not same or list(get_layout(model).targets) != settings["targets"]:
            raise RouteloraError(f"the base model in {base} is not the one in memory (weights or adapter targets); "
                                 "save it there first, or give workers: 1")  # fmt: skip
        tasks = [load_task(Path(path)) for path in task_files]
        retention = [load_task(Path(path)) for path in retention_files]
        out = Path(out)
        shared = SharedExperts(out / "experts")
        zero_shot = io.read_json(out / "zero-shot.json")["scores"]
        scores = scorer(config, model, processor, [*tasks, *retention], progress=False)
        while (job := todo.get()) is not None:
            kind, names = job
            where = f"{kind} {', '.join(Path(name).stem for name in names)}"
            reports.put((me, "took", where))
            start = time.perf_counter()
            if kind == "expert":
                task = load_task(Path(names[0]))
                shared.expert(model, processor, task, config.expert, config.gates)
                reports.put((me, "done", f"{task.name} expert {time.perf_counter() - start:.0f} s"))
                continue
            methods = stream_methods(replace(config, methods=names), shared, retention)

            def on_row(method: str, step: int, seconds: float) -> None:
                reports.put((me, "done", f"{method} step {step} {seconds:.0f} s"))

            learn_rows(methods, model, processor, tasks, retention, out, scores, zero_shot, on_row=on_row)
    except BaseException as error:  # noqa: BLE001 - every failure goes back to the main process, with its job
        if not isinstance(error, RouteloraError):  # a bug, not bad input: its traceback, on this worker's stderr
            traceback.print_exc()
        reports.put((me, "failed", f"{where}: {type(error).__name__}: {error}".replace("\n", " ")))
        raise SystemExit(1) from None
