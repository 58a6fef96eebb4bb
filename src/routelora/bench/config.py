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
