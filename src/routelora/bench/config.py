"""Settings of ``routelora bench routing`` (no torch here: the command line builds its flags from them)."""

from dataclasses import dataclass

from routelora.errors import RouteloraError


class BenchConfigError(RouteloraError, ValueError):
    """A benchmark setting that cannot be run."""


@dataclass
class RoutingBenchConfig:
    """What ``run_routing_bench`` measures: every combination of size, expert count and top-k."""

    sizes: tuple[int, ...] = (1024, 2048)
    """Layer sizes d (d_in = d_out = d)."""
    tokens: int = 2048
    """Tokens in the input, all in one (tokens, d) batch."""
    rank: int = 16
    """LoRA rank r of every expert."""
    experts: tuple[int, ...] = (1, 2, 4, 8, 16)
    """Numbers of experts n at the layer."""
    top_k: tuple[int, ...] = (1, 2)
    """Experts kept per token; where k > n, all n are kept (as ``RoutedLinear`` does)."""
    repeats: int = 7
    """Timed calls per peer; the figure is their median."""
    warmup: int = 2
    """Untimed calls per peer first (allocator, Arrow's lazily built prototypes)."""
    threads: int | None = None
    """``torch.set_num_threads`` for the run; None leaves torch's default."""
    seed: int = 0
    """Seed of the weights and the input."""

    def __post_init__(self) -> None:
        for name in ("sizes", "experts", "top_k"):
            values = tuple(getattr(self, name))
            if not values or any(int(v) != v or v < 1 for v in values):
                raise BenchConfigError(f"{name} must be a non-empty list of positive integers, got {values}")
            setattr(self, name, values)
        for name in ("tokens", "rank", "repeats"):
            if getattr(self, name) < 1:
                raise BenchConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise BenchConfigError(f"warmup must be at least 0, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise BenchConfigError(f"threads must be at least 1, got {self.threads}")


DECISION_SHAPES = ("tiny", "realistic")


@dataclass
class DecisionBenchConfig:
    """What ``routelora bench decision`` measures: prefills of the base and of every router preset."""

    shapes: tuple[str, ...] = DECISION_SHAPES
    """Model shapes: ``tiny`` (the embedded base) and ``realistic`` (a 24-layer, 2048-wide language model)."""
    experts: int = 4
    """Random experts in the library."""
    rank: int = 8
    """LoRA rank of every expert."""
    batch: int = 4
    """Prompts per prefill, one image each."""
    words: int = 60
    """Words of text per prompt (about as many tokens)."""
    repeats: int = 5
    """Timed prefills per condition; the figure is their median."""
    warmup: int = 1
    """Untimed prefills per condition first."""
    threads: int | None = None
    """``torch.set_num_threads`` for the run; None leaves torch's default."""

    def __post_init__(self) -> None:
        _check_model_bench(self, ("experts", "rank", "batch", "words", "repeats"))


def _check_model_bench(config, positive: tuple[str, ...]) -> None:
    """The checks every whole-model benchmark's settings share: known shapes, positive counts, warm-up, threads."""
    config.shapes = tuple(config.shapes)
    unknown = [shape for shape in config.shapes if shape not in DECISION_SHAPES]
    if not config.shapes or unknown:
        raise BenchConfigError(f"shapes must be some of {DECISION_SHAPES}, got {config.shapes}")
    for name in positive:
        if getattr(config, name) < 1:
            raise BenchConfigError(f"{name} must be at least 1, got {getattr(config, name)}")
    if config.warmup < 0 or (config.threads is not None and config.threads < 1):
        raise BenchConfigError("warmup must be at least 0 and threads at least 1")


@dataclass
class GenerateBenchConfig:
    """What ``routelora bench generate`` measures: greedy generation of mixed prompts under every condition."""

    shapes: tuple[str, ...] = DECISION_SHAPES
    """Model shapes: ``tiny`` (the embedded base) and ``realistic`` (a language model 1024 wide with 8 layers)."""
    prompts: int = 256
    """Prompts on the tiny shape, caption and mcq taking turns."""
    realistic_prompts: int = 64
    """Prompts on the realistic shape (its prefills take seconds each on a CPU)."""
    batch: int = 32
    """Prompts per ``generate`` call."""
    new_tokens: int = 16
    """Tokens generated per prompt, exactly (min = max new tokens)."""
    experts: int = 4
    """Experts in the library every router routes over (at most 4 of them have their own task's statistics)."""
    large_library: int = 64
    """Experts in the large library, whose default-router throughput is compared with the small one's."""
    rank: int = 8
    """LoRA rank of every expert."""
    repeats: int = 3
    """Timed runs of the whole workload per condition; the figure is their median."""
    warmup: int = 1
    """Untimed runs per condition first."""
    threads: int | None = None
    """``torch.set_num_threads`` for the run; None leaves torch's default."""

    def __post_init__(self) -> None:
        _check_model_bench(self, ("prompts", "realistic_prompts", "batch", "new_tokens", "experts", "rank", "repeats"))
        if self.large_library < self.experts:
            raise BenchConfigError(f"large_library ({self.large_library}) must be at least experts ({self.experts})")


@dataclass
class ServeBenchConfig:
    """What ``routelora bench serve`` measures: a loopback load test of ``routelora serve`` on the tiny base."""

    requests: int = 256
    """Requests per condition, caption and mcq prompts taking turns (the world's test samples, with images)."""
    concurrency: int = 32
    """Clients sending at once in the concurrent conditions (each sends its next request when answered)."""
    new_tokens: int = 16
    """Tokens generated per request, exactly (min_tokens = max_tokens)."""
    experts: int = 4
    """Random experts in the library (at most 4 of them have their own task's statistics)."""
    rank: int = 8
    """LoRA rank of every expert."""
    max_batch: int = 32
    """The server's --max-batch."""
    batch_wait_ms: float = 5.0
    """The server's --batch-wait-ms."""
    threads: int | None = None
    """Each server's --threads (None: torch's default)."""
    mixed_batches: bool = True
    """The routed server's --mixed-batches (off: one generate call per route)."""
    rounds: int = 3
    """Timed rounds of every condition, alternating between the servers; the figures are their medians."""
    warmup: int = 8
    """Untimed requests to each server first."""
    timeout: float = 120.0
    """Seconds a client waits for one answer before counting it a failure."""

    def __post_init__(self) -> None:
        for name in ("requests", "concurrency", "new_tokens", "experts", "rank", "max_batch", "rounds"):
            if getattr(self, name) < 1:
                raise BenchConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise BenchConfigError(f"threads must be at least 1, got {self.threads}")
        if self.warmup < 0 or self.batch_wait_ms < 0 or self.timeout <= 0:
            raise BenchConfigError("warmup and batch_wait_ms must be at least 0, and timeout above 0")
