"""A bounded load test of ``routelora serve`` on loopback: requests per second, tokens per second, latency.

Plain functions behind ``routelora bench serve``: it prints figures, it never asserts a speed. The tiny base (random
weights) and a library of random experts whose routing statistics are the world's tasks' (as in ``bench
generate``: caption prompts go to the caption expert, mcq prompts to the base model) are written to a temporary
folder; two servers run in processes of their own, one routed over the library and one serving the base model
alone, and asyncio clients send them the same mixed requests, one at a time and ``concurrency`` at once, each
generating exactly ``new_tokens`` tokens. Every request, connection and server stays on 127.0.0.1, the number
of requests is fixed, and each has a timeout.
"""

import asyncio
import base64
import collections
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from routelora.bench.config import ServeBenchConfig
from routelora.bench.generate import SHAPES, WORKLOAD, bench_library, workload
from routelora.data.samples import IMAGE_MARKER, Sample

if TYPE_CHECKING:
    from routelora.experts.library import ExpertLibrary

ROUTED = "routelora"


def request_body(sample: Sample, model: str, new_tokens: int) -> dict:
    """A chat-completions body for ``sample``: its text around an ``image_url`` part where its marker is."""
    before, _, after = sample.prompt.partition(IMAGE_MARKER)
    parts = [{"type": "text", "text": before.strip()}] if before.strip() else []
    if sample.image is not None:
        url = "data:image/png;base64," + base64.b64encode(Path(sample.image).read_bytes()).decode()
        parts.append({"type": "image_url", "image_url": {"url": url}})
    parts += [{"type": "text", "text": after.strip()}] if after.strip() else []
    messages = [{"role": "user", "content": parts}]
    return {"model": model, "messages": messages, "max_tokens": new_tokens, "min_tokens": new_tokens}


def serve_arguments(
    base: Path, library: Path | None, config: ServeBenchConfig, extra: tuple[str, ...] = ()
) -> list[str]:
    """The ``routelora serve`` options of one bench server (``extra`` appended)."""
    arguments = ["--base", str(base), *(["--library", str(library)] if library is not None else [])]
    arguments += ["--max-batch", str(config.max_batch), "--batch-wait-ms", str(config.batch_wait_ms)]
    arguments += ["--max-queue", str(max(config.requests, config.concurrency)), *extra]
    arguments += [] if config.mixed_batches else ["--no-mixed-batches"]
    return arguments + (["--threads", str(config.threads)] if config.threads is not None else [])


@contextlib.contextmanager
def serve_processes(*arguments: list[str], seconds: float = 180) -> Iterator[list[str]]:
    """``routelora serve --port 0 ARGUMENTS`` (a ``--port`` among them wins) for each list, in processes of their
    own started together; yields their URLs once all listen, and ends every process when the block ends."""
    logs = []
    try:
        for argv in arguments:
            command = [sys.executable, "-m", "routelora.cli.main", "serve", "--port", "0", *argv]
            process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
            logs.append(_ServerLog(process))
        deadline = time.monotonic() + seconds
        yield [log.url(deadline, argv) for log, argv in zip(logs, arguments)]
    finally:
        for log in logs:
            log.process.terminate()
        for log in logs:
            try:
                log.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.process.kill()
                log.process.wait()
        for log in logs:
            log.reader.join(timeout=30)
            log.process.stderr.close()


class _ServerLog:
    """Reads a server's stderr to its end in a thread of its own, so that no server ever blocks on a full pipe
    (while another one starts, or once it is serving), and keeps its last lines for an error."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.lines, self.listening = process, collections.deque(maxlen=20), threading.Event()
        self.address: str | None = None
        self.closed = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            found = self.address is None and re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if found:
                self.address = found.group(1)
                self.listening.set()
        self.closed = True  # the process closed its stderr: it has ended, or is ending
        self.listening.set()

    def url(self, deadline: float, argv: list[str]) -> str:
        """Its URL once it listens; an error naming the server, its state and its last lines otherwise."""
        self.listening.wait(max(deadline - time.monotonic(), 0))
        if self.address is not None:
            return self.address
        if self.closed:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        code = self.process.poll()
        state = f"exited with code {code}" if code is not None else "still running"
        raise RuntimeError(
            f"routelora serve {' '.join(argv)} did not start ({state}); its last lines: " + "".join(self.lines)
        )


@contextlib.contextmanager
def server_process(
    base: Path, library: Path | None, config: ServeBenchConfig, extra: tuple[str, ...] = ()
) -> Iterator[str]:
    """One bench server in a process of its own; yields its URL."""
    with serve_processes(serve_arguments(base, library, config, extra)) as (url,):
        yield url


async def _load(url: str, bodies: list[dict], concurrency: int, timeout: float) -> dict:
    """Send every body with ``concurrency`` clients; latencies, tokens and failures."""
    import httpx

    latencies, tokens, failures = [], 0, []
    pending = iter(range(len(bodies)))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def client_loop() -> None:
            nonlocal tokens
            for index in pending:
                start = time.perf_counter()
                try:
                    answer = await client.post("/v1/chat/completions", json=bodies[index])
                    if answer.status_code != 200:
                        failures.append(f"{answer.status_code}: {answer.text[:200]}")
                        continue
                    tokens += answer.json()["usage"]["completion_tokens"]
                    latencies.append(time.perf_counter() - start)
                except httpx.HTTPError as error:
                    failures.append(f"{type(error).__name__}: {error}")

        start = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"latencies": latencies, "tokens": tokens, "failures": failures, "wall_s": wall}


def _row(condition: str, clients: int, rounds: list[dict]) -> dict:
    """One condition's figures: medians over its rounds (latency percentiles within each round)."""

    def median_of(figure: Callable[[dict], float]) -> float:
        return statistics.median(figure(measured) for measured in rounds)

    def percentile(measured: dict, share: float) -> float:
        latencies = sorted(measured["latencies"]) or [float("nan")]
        return 1000 * latencies[min(len(latencies) - 1, round(share * (len(latencies) - 1)))]

    failures = [failure for measured in rounds for failure in measured["failures"]]
    return {
        "condition": condition,
        "clients": clients,
        "rounds": len(rounds),
        "requests": sum(len(m["latencies"]) + len(m["failures"]) for m in rounds),
        "failures": len(failures),
        "failure_examples": failures[:3],
        "wall_s": median_of(lambda m: m["wall_s"]),
        "requests_per_s": median_of(lambda m: len(m["latencies"]) / m["wall_s"]),
        "tokens_per_s": median_of(lambda m: m["tokens"] / m["wall_s"]),
        "p50_ms": median_of(lambda m: percentile(m, 0.5)),
        "p99_ms": median_of(lambda m: percentile(m, 0.99)),
    }


def write_base_and_library(
    folder: Path, model, processor, experts: list, skills: dict
) -> tuple[Path, "ExpertLibrary"]:
    """``folder/base`` (the checkpoint) and ``folder/library`` (the experts, the base skills' statistics)."""
    from routelora.experts.library import ExpertLibrary, save_base_prototypes
    from routelora.models.checkpoint import save_checkpoint

    base = save_checkpoint(model, processor, folder / "base")
    library = ExpertLibrary(folder / "library")
    for expert in experts:
        library.add(expert)
    for skill, prototypes in skills.items():
        save_base_prototypes(library.root, skill, prototypes)
    return base, library


def run_serve_bench(config: ServeBenchConfig, world: Path, progress: Callable[[str], None] = print) -> list[dict]:
    """Rows of every condition: the routed server and the base alone, one client and ``concurrency`` clients.

    Both servers run side by side and the rounds alternate between them, so that a machine whose load changes
    (other processes on its cores) weighs on both alike."""
    from routelora.embedded.tiny import build_tiny_vlm

    progress("building the tiny base and the library")
    model, processor = build_tiny_vlm(SHAPES["tiny"])
    experts, skills = bench_library(model, processor, world, config.experts, config.rank)
    samples = workload(world, WORKLOAD, config.requests)
    conditions = {"routed": ROUTED, "base alone": "base"}
    bodies = {name: [request_body(s, model_name, config.new_tokens) for s in samples] for name, model_name in
              conditions.items()}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="routelora-bench-serve-") as folder:
        base, library = write_base_and_library(Path(folder), model, processor, experts, skills)
        servers = serve_processes(serve_arguments(base, library.root, config), serve_arguments(base, None, config))
        with servers as (routed, alone):
            urls = {"routed": routed, "base alone": alone}
            for name, url in urls.items():
                progress(f"{name}: warming up {url}")
                asyncio.run(
                    _load(url, bodies[name][: config.warmup], max(min(config.warmup, config.concurrency), 1), 60)
                )
            measured: dict[tuple[str, int], list[dict]] = {}
            for clients in (1, config.concurrency):
                for round_ in range(config.rounds):
                    for name, url in urls.items():
                        progress(f"{name}: {config.requests} requests from {clients} client(s), round {round_ + 1}")
                        result = asyncio.run(_load(url, bodies[name], clients, config.timeout))
                        measured.setdefault((name, clients), []).append(result)
    return [_row(name, clients, rounds) for (name, clients), rounds in measured.items()]


def target_lines(rows: list[dict], concurrency: int) -> list[str]:
    """The targets, each met or not, in words."""
    by = {(row["condition"], row["clients"]): row for row in rows}
    routed_one, routed_many = by[("routed", 1)], by[("routed", concurrency)]
    base_many = by[("base alone", concurrency)]
    failures = sum(row["failures"] for row in rows)
    ratio = routed_many["requests_per_s"] / routed_one["requests_per_s"]
    overhead = routed_many["p50_ms"] / base_many["p50_ms"] - 1
    one_overhead = routed_one["p50_ms"] / by[("base alone", 1)]["p50_ms"] - 1

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return [
        f"failures: {failures} in {sum(row['requests'] for row in rows)} requests (target 0: {met(failures == 0)})",
        f"throughput at {concurrency} clients / one at a time (routed): {ratio:.2f}x "
        f"(target >= 3x: {met(ratio >= 3)})",
        f"routing's p50 latency against the base alone at {concurrency} clients: {100 * overhead:+.1f}% "
        f"(target <= 10%: {met(overhead <= 0.10)}); one client at a time: {100 * one_overhead:+.1f}%",
    ]


def markdown_table(rows: list[dict]) -> str:
    head = "| server | clients | rounds | requests | failures | req/s | tokens/s | p50 ms | p99 ms |\n|" + " --- |" * 9
    lines = [head]
    for row in rows:
        lines.append(
            f"| {row['condition']} | {row['clients']} | {row['rounds']} | {row['requests']} | {row['failures']} | "
            f"{row['requests_per_s']:.1f} | {row['tokens_per_s']:.0f} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} |"
        )
    return "\n".join(lines)
