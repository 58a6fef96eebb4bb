"""Dynamic batching: one worker thread owns the model; requests that arrive together are decided together, grouped
by route and generated together.

The worker takes the first waiting request, then whatever else arrives within ``batch_wait_ms`` (up to
``max_batch``), decides the routes of those that the router is to route (one decision pass for all of them),
and generates each group of one route and one sampling setting in one ``generate`` call, whose batch then merges
its expert and runs at the base model's speed. The queue is bounded: a request beyond ``max_queue`` is refused
with 503 at once rather than left to time out.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from routelora.data.collate import VLMCollator
from routelora.routing.grouping import route_batches
from routelora.routing.model import RoutedModel
from routelora.serving.config import ServeConfig
from routelora.serving.errors import RequestError
from routelora.serving.generation import generate_rows
from routelora.serving.routes import Route, applied, describe_routes, route_of
from routelora.serving.schema import ChatRequest

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One request in the batcher, and where its events go.

    Events, in order: ``("routing", dict)``, then for streams ``("delta", str)`` pieces, then ``("done", dict)``
    with ``text``, ``finish_reason``, ``prompt_tokens`` and ``completion_tokens``; or ``("error", RequestError)``.
    """

    request: ChatRequest
    routing: dict | None
    """The routing object when the request's ``model`` forced the route; None for the router to decide."""
    emit: Callable[[tuple], None]
    """Thread-safe: called from the worker thread."""


class Batcher:
    """The worker thread and its bounded queue."""

    def __init__(
        self,
        model: torch.nn.Module,
        collator: VLMCollator,
        router: RoutedModel | None,
        config: ServeConfig,
        context_length: int,
        generate: bool = True,
    ) -> None:
        """
        Args:
            model: the VLM, with ``router`` attached when there is one.
            collator: turns samples into model batches.
            router: the router (None: the base model alone).
            config: batch size, wait and queue bound.
            context_length: the model's limit on prompt plus answer tokens.
            generate: False in front-end mode: decide routes only.
        """
        self.model, self.collator, self.router, self.config = model, collator, router, config
        self.context_length = context_length
        self.generate = generate
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=config.max_queue)
        self.thread = threading.Thread(target=self._loop, name="routelora-batcher", daemon=True)
        self.batches = 0
        self._decided: tuple[list[Job], dict] | None = None

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.queue.put(None)  # blocking: the sentinel must get in even when the queue is full
        self.thread.join(timeout=30)

    def submit(self, job: Job) -> None:
        """Queue ``job``; a 503 when the queue is full."""
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            raise RequestError(
                503,
                f"the server is busy: {self.config.max_queue} requests are waiting; retry shortly",
                code="server_busy",
            ) from None

    def _loop(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.monotonic() + self.config.batch_wait_ms / 1000
            while len(jobs) < self.config.max_batch:
                try:
                    job = self.queue.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if job is None:
                    self.queue.put(None)  # stop after this batch
                    break
                jobs.append(job)
            self._process(jobs)

    def _process(self, jobs: list[Job]) -> None:
        self.batches += 1
        try:
            self._decide([job for job in jobs if job.routing is None])
        except Exception as error:  # a bug: fail these requests, keep serving
            log.exception("deciding routes failed")
            jobs = self._fail([j for j in jobs if j.routing is None], error) + [j for j in jobs if j.routing]
        for job in jobs:
            job.emit(("routing", job.routing))
        if not self.generate:
            for job in jobs:
                job.emit(("done", {}))
            return
        for group in self._batches(jobs):
            try:
                self._generate(group)
            except Exception as error:
                log.exception("generation failed")
                self._fail(group, error)

    def _batches(self, jobs: list[Job]) -> list[list[Job]]:
        """The generate calls: one per sampling setting and route, or with ``mixed_batches`` one per sampling
        setting, its full batches of one route first and the rest mixed (``route_batches``)."""
        by_sampling: dict[tuple, list[Job]] = {}
        for job in jobs:
            by_sampling.setdefault(job.request.sampling.key(), []).append(job)
        if self.router is None:
            return list(by_sampling.values())
        batches = []
        for group in by_sampling.values():
            routes = [route_of(job.routing) for job in group]
            if self.config.mixed_batches:
                batches += [[group[i] for i in batch] for batch in route_batches(routes, self.config.max_batch)]
            else:
                by_route: dict[Route, list[Job]] = {}
                for job, route in zip(group, routes):
                    by_route.setdefault(route, []).append(job)
                batches += list(by_route.values())
        return batches

    def _decide(self, jobs: list[Job]) -> None:
        self._decided = None
        if not jobs:
            return
        batch = self.collator([job.request.sample for job in jobs], with_answers=False)
        for job, routing in zip(jobs, describe_routes(self.router, batch)):
            job.routing = {"model": job.request.model, **routing}
        self._decided = (jobs, batch)

    def _collate(self, jobs: list[Job]) -> dict[str, torch.Tensor]:
        """The model batch of ``jobs``: the decision's own when it was made for exactly these jobs in this order."""
        if self._decided is not None and self._decided[0] == jobs:
            return self._decided[1]
        return self.collator([job.request.sample for job in jobs], with_answers=False)

    def _generate(self, jobs: list[Job]) -> None:
        batch = self._collate(jobs)
        lengths = batch["attention_mask"].sum(1).tolist()  # (batch,) prompt tokens of each row
        fits = [n + job.request.max_tokens <= self.context_length for job, n in zip(jobs, lengths)]
        if not all(fits):
            for job, n, ok in zip(jobs, lengths, fits):
                if not ok:
                    job.emit(("error", _too_long(n, job.request.max_tokens, self.context_length)))
            jobs = [job for job, ok in zip(jobs, fits) if ok]
            if not jobs:
                return
            batch = self.collator([job.request.sample for job in jobs], with_answers=False)
            lengths = batch["attention_mask"].sum(1).tolist()
        emitters = [_delta_emitter(job) if job.request.stream else None for job in jobs]
        if self.router is None:
            rows = generate_rows(self.model, self.collator, [job.request for job in jobs], emitters, batch)
        else:
            with applied(self.router, [route_of(job.routing) for job in jobs]):
                rows = generate_rows(self.model, self.collator, [job.request for job in jobs], emitters, batch)
        for job, row, prompt_tokens in zip(jobs, rows, lengths):
            result = {"text": row.text, "finish_reason": row.finish_reason, "prompt_tokens": prompt_tokens}
            job.emit(("done", result | {"completion_tokens": len(row.tokens)}))

    def _fail(self, jobs: list[Job], error: Exception) -> list[Job]:
        failure = RequestError(500, f"the server failed on this request ({type(error).__name__}: {error})")
        for job in jobs:
            job.emit(("error", failure))
        return []


def _delta_emitter(job: Job) -> Callable[[str], None]:
    return lambda text: job.emit(("delta", text))


def _too_long(prompt: int, max_tokens: int, limit: int) -> RequestError:
    return RequestError(
        400,
        f"the prompt has {prompt} tokens and max_tokens is {max_tokens}: more than this model's context of {limit} "
        "tokens; shorten the conversation or lower max_tokens",
        param="max_tokens",
        code="context_length_exceeded",
    )
