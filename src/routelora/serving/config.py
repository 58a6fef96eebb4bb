"""Settings of ``routelora serve`` (no torch here: the command line builds its flags from them)."""

from dataclasses import dataclass

from routelora.errors import RouteloraError


class ServeConfigError(RouteloraError, ValueError):
    """A server setting that cannot be served with."""


ROUTED_NAME = "routelora"


@dataclass
class ServeConfig:
    """How the server listens, batches and limits requests."""

    host: str = "127.0.0.1"
    """Address to listen on; the default answers this machine only (0.0.0.0 exposes the server to the network)."""
    port: int = 8000
    """TCP port to listen on (0 picks a free one, printed at start)."""
    api_key: str | None = None
    """When set, every /v1 request must send ``Authorization: Bearer KEY``; /health stays open."""
    routed_name: str = ROUTED_NAME
    """The ``model`` name under which the server routes each request to an expert or the base."""
    base_name: str | None = None
    """The ``model`` name that forces the base model (default: the base's directory name)."""
    plain: bool = False
    """Engine mode: no routed model; ``model`` names the base or an expert, as on vLLM with LoRA modules."""
    engine: str | None = None
    """Front-end mode: decide each route here and forward the request to this OpenAI-compatible engine URL."""
    engine_timeout: float = 300.0
    """Seconds to wait for the engine's answer in front-end mode."""
    max_batch: int = 32
    """Most requests generated together in one batch."""
    batch_wait_ms: float = 5.0
    """How long the batcher waits for more requests once one has arrived, in milliseconds."""
    mixed_batches: bool = True
    """Generate the requests of one batch together whatever their routes (each row its own experts), full
    batches of one route first (``route_batches``, as ``routelora eval`` does); off: one generate call per route."""
    max_queue: int = 256
    """Requests waiting for a batch beyond which new ones get 503 (server busy)."""
    max_body_bytes: int = 8 * 1024 * 1024
    """Largest request body accepted; a larger one gets 413."""
    max_image_pixels: int = 4096 * 4096
    """Largest image (width x height) accepted; a larger one, or a decompression bomb, gets 400."""
    image_dir: str | None = None
    """A folder whose files requests may name by ``file://`` URL; without it only ``data:`` URIs are read."""
    default_max_tokens: int = 64
    """Tokens generated when a request gives no ``max_tokens``."""
    max_tokens_limit: int | None = None
    """Largest ``max_tokens`` a request may ask for (default and upper bound: the model's context length)."""
    threads: int | None = None
    """``torch.set_num_threads`` for the model (None: torch's default); 1 keeps a busy machine's cores apart."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ServeConfigError(f"port must be between 0 and 65535, got {self.port}")
        if self.plain and self.engine is not None:
            raise ServeConfigError("plain (engine mode) and engine (front-end mode) exclude each other; give one")
        if self.engine is not None and not self.engine.startswith(("http://", "https://")):
            raise ServeConfigError(f"engine must be an http:// or https:// URL, got {self.engine!r}")
        for name in ("max_batch", "max_queue", "max_body_bytes", "max_image_pixels", "default_max_tokens"):
            if getattr(self, name) < 1:
                raise ServeConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ServeConfigError(f"threads must be at least 1, got {self.threads}")
        if self.max_tokens_limit is not None and self.max_tokens_limit < 1:
            raise ServeConfigError(f"max_tokens_limit must be at least 1, got {self.max_tokens_limit}")
        if self.batch_wait_ms < 0 or self.engine_timeout <= 0:
            raise ServeConfigError("batch_wait_ms must be at least 0 and engine_timeout above 0")
        if self.api_key is not None and not self.api_key.strip():
            raise ServeConfigError("api_key is empty; give a key or leave it out")
