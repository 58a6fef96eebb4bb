"""Load the model and the library once, and run the application on uvicorn."""

import socket
import sys
from pathlib import Path

from routelora.errors import RouteloraError
from routelora.routing.config import RouterConfig
from routelora.serving.app import Served, build_app
from routelora.serving.config import ServeConfig


def load_served(
    base: str | Path,
    library: str | Path | None,
    config: ServeConfig,
    router_config: RouterConfig | None = None,
    **load_options,
) -> Served:
    """The model (routed over ``library`` when given), its batcher and the names it answers to.

    Args:
        base: base model directory or hub id.
        library: expert library (None: the base model alone).
        config: server settings.
        router_config: routing settings (default ``RouterConfig()``).
        load_options: keyword arguments of :func:`routelora.load_vlm`.
    """
    from routelora.data.collate import VLMCollator
    from routelora.experts.library import ExpertLibrary
    from routelora.models import load_vlm
    from routelora.routing.model import attach_router
    from routelora.serving.batching import Batcher

    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    model, processor = load_vlm(base, **load_options)
    model.eval()
    router, names = None, []
    if library is not None:
        router_config = router_config or RouterConfig()
        if not router_config.shared_decision:
            raise RouteloraError(
                "routelora serve needs a router that decides once per sequence from the input embeddings "
                f"(--router routelora or text-prototypes); this one routes at granularity "
                f"{router_config.granularity!r} from {router_config.decide_from!r}"
            )
        if config.engine is not None and router_config.top_k != 1:
            raise RouteloraError("front-end mode forwards each request to one adapter: use --top-k 1")
        router = attach_router(model, ExpertLibrary(library), router_config)
        names = router.expert_names
    base_name = config.base_name or Path(str(base)).name
    taken = {config.routed_name, *names}
    if base_name in taken:
        raise RouteloraError(f"the base model's name {base_name!r} is taken by an expert or the routed model; "
                             "give another with --base-name")  # fmt: skip
    context = _context_length(model)
    batcher = Batcher(model, VLMCollator(processor), router, config, context, generate=config.engine is None)
    forwarder = None
    if config.engine is not None:
        from routelora.serving.engine import EngineForwarder

        forwarder = EngineForwarder(config.engine, config.engine_timeout)
    return Served(batcher, config, base_name, names, context, forwarder)


def _context_length(model) -> int:
    text = getattr(model.config, "text_config", model.config)
    return int(getattr(text, "max_position_embeddings", None) or 4096)


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound socket (port 0: a free one), so the port printed is the port served, with no race for it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise RouteloraError(f"cannot listen on {host}:{port} ({error.strerror}); pick another --port") from None
    return sock


def run(served: Served) -> None:
    """Serve until interrupted (SIGINT or SIGTERM end it cleanly)."""
    import uvicorn

    config = served.config
    sock = listening_socket(config.host, config.port)
    host, port = sock.getsockname()[:2]
    mode = "front end of " + config.engine if config.engine else "engine mode" if config.plain else "routed"
    names = ", ".join(name for name, _ in served.model_names())
    print(f"routelora serve: listening on http://{host}:{port} ({mode}; models: {names})", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(build_app(served), log_level="warning", access_log=False))
    server.run(sockets=[sock])
