"""The ASGI application (Starlette): ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``.

Every refusal is an OpenAI-style error body with a 4xx status, raised before the request reaches the model, so a
bad request costs the others nothing; the model itself runs in the batcher's thread.
"""

import asyncio
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from routelora.serving import responses
from routelora.serving.batching import Batcher, Job
from routelora.serving.config import ServeConfig
from routelora.serving.errors import RequestError
from routelora.serving.images import read_image_url
from routelora.serving.routes import forced
from routelora.serving.schema import ChatRequest, parse_body, parse_chat


@dataclass
class Served:
    """What one server answers with."""

    batcher: Batcher
    config: ServeConfig
    base_name: str
    expert_names: list[str] = field(default_factory=list)
    context_length: int = 512
    forwarder: object | None = None
    """An :class:`~routelora.serving.engine.EngineForwarder` in front-end mode."""

    @property
    def routed(self) -> bool:
        return bool(self.expert_names) and not self.config.plain

    def model_names(self) -> list[tuple[str, str]]:
        routed = [(self.config.routed_name, "routed")] if self.routed else []
        return routed + [(self.base_name, "base")] + [(name, "expert") for name in self.expert_names]

    def routing_for(self, model: str) -> dict | None:
        """The forced routing object of ``model``, None when the router is to decide; 404 for an unknown name."""
        if model == self.config.routed_name and self.routed:
            return None
        router = self.batcher.router
        if model == self.base_name:
            return forced(router, model, -1)
        if model in self.expert_names:
            return forced(router, model, self.expert_names.index(model))
        known = ", ".join(name for name, _ in self.model_names())
        raise RequestError(
            404, f"model {model!r} does not exist here; use one of: {known}", "model", "model_not_found"
        )


def build_app(served: Served) -> Starlette:
    """The application; the batcher starts and stops with it."""
    config = served.config
    image_dir = Path(config.image_dir) if config.image_dir else None
    read_image = partial(read_image_url, image_dir=image_dir, max_pixels=config.max_image_pixels)
    limit = min(config.max_tokens_limit or served.context_length, served.context_length)
    default_max_tokens = min(config.default_max_tokens, limit)

    async def health(request: Request) -> Response:
        body = {"status": "ok", "models": [name for name, _ in served.model_names()]}
        return JSONResponse(body | {"waiting": served.batcher.queue.qsize()})

    async def models(request: Request) -> Response:
        _authorise(request, config.api_key)
        return JSONResponse(responses.models_list(served.model_names()))

    async def chat(request: Request) -> Response:
        _authorise(request, config.api_key)
        body = parse_body(await _read_body(request, config.max_body_bytes))
        if isinstance(body.get("model"), str):
            served.routing_for(body["model"])  # an unknown model is refused before any image is decoded
        parsed = await run_in_threadpool(parse_chat, body, default_max_tokens, limit, read_image)
        events: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        job = Job(
            parsed, served.routing_for(parsed.model), lambda item: loop.call_soon_threadsafe(events.put_nowait, item)
        )
        served.batcher.submit(job)
        routing = await _next(events, "routing")
        if served.forwarder is not None:
            await _next(events, "done")
            return await served.forwarder.forward(parsed, routing, served.base_name)
        identifier = responses.completion_id()
        if parsed.stream:
            return StreamingResponse(_stream(parsed, routing, events, identifier), media_type="text/event-stream")
        result = await _next(events, "done")
        return JSONResponse(responses.completion(identifier, parsed.model, result, routing))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        served.batcher.start()
        try:
            yield
        finally:
            served.batcher.stop()
            if served.forwarder is not None:
                await served.forwarder.close()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ]
    handlers = {RequestError: _request_error, HTTPException: _http_error, Exception: _server_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


def _authorise(request: Request, key: str | None) -> None:
    if key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        what = "no API key was sent" if not given else "the API key is wrong"
        raise RequestError(401, f"{what}; send Authorization: Bearer <key>", code="invalid_api_key")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is longer than ``limit`` (declared or sent)."""
    declared = request.headers.get("content-length")
    too_large = RequestError(
        413, f"the request body is larger than this server's limit of {limit} bytes", code="too_large"
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for piece in request.stream():
        size += len(piece)
        if size > limit:
            raise too_large
        chunks.append(piece)
    return b"".join(chunks)


async def _next(events: asyncio.Queue, expected: str):
    """The next event's value, which must be ``expected``; an error event raises its RequestError."""
    kind, value = await events.get()
    if kind == "error":
        raise value
    assert kind == expected, f"batcher sent {kind} before {expected}"
    return value


async def _stream(parsed: ChatRequest, routing: dict, events: asyncio.Queue, identifier: str) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format: the role, each piece of text, the finish, ``[DONE]``."""
    model = parsed.model
    yield responses.event(responses.chunk(identifier, model, routing, {"role": "assistant", "content": ""}))
    while True:
        kind, value = await events.get()
        if kind == "delta":
            yield responses.event(responses.chunk(identifier, model, routing, {"content": value}))
            continue
        if kind == "error":
            yield responses.event(value.body())
        else:
            yield responses.event(responses.chunk(identifier, model, routing, {}, value["finish_reason"]))
            if parsed.include_usage:
                counts = responses.usage(value["prompt_tokens"], value["completion_tokens"])
                yield responses.event(responses.chunk(identifier, model, routing, None, usage=counts))
        yield responses.event("[DONE]")
        return


async def _request_error(request: Request, error: RequestError) -> Response:
    headers = {"Retry-After": "1"} if error.status == 503 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def _http_error(request: Request, error: HTTPException) -> Response:
    message = {404: f"no such endpoint: {request.url.path}", 405: f"{request.method} is not allowed here"}
    text = message.get(error.status_code, str(error.detail))
    return JSONResponse(RequestError(error.status_code, text).body(), status_code=error.status_code)


async def _server_error(request: Request, error: Exception) -> Response:
    failure = RequestError(500, f"the server failed on this request ({type(error).__name__}: {error})")
    return JSONResponse(failure.body(), status_code=500)
