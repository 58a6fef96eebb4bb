"""Front-end mode: the route is decided here, the answer comes from any OpenAI-compatible multi-LoRA engine.

The request goes on as it came, with ``model`` set to the chosen adapter's name (an expert exported by
``routelora export peft`` and loaded by the engine under that name) or to the base model's; the engine's answer
comes back with the ``routing`` object added (to every chunk of a stream).
"""

import json
from collections.abc import AsyncIterator

import httpx
from starlette.responses import JSONResponse, Response, StreamingResponse

from routelora.serving.errors import RequestError
from routelora.serving.schema import ChatRequest


class EngineForwarder:
    """An HTTP client of one engine."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def close(self) -> None:
        await self.client.aclose()

    async def forward(self, parsed: ChatRequest, routing: dict, base_name: str) -> Response:
        """The engine's answer to ``parsed`` under the model that ``routing`` chose."""
        chosen = routing["chosen"][0]
        body = parsed.body | {"model": base_name if chosen["kind"] == "base" else chosen["name"]}
        request = self.client.build_request("POST", "/v1/chat/completions", json=body)
        try:
            answer = await self.client.send(request, stream=parsed.stream)
        except httpx.HTTPError as error:
            raise self._unreachable(error) from None
        if not parsed.stream:
            return _with_routing(answer, routing)
        if answer.status_code != 200:
            await answer.aread()
            await answer.aclose()
            return _with_routing(answer, routing)
        return StreamingResponse(self._relay(answer, routing), media_type="text/event-stream")

    async def _relay(self, answer: httpx.Response, routing: dict) -> AsyncIterator[str]:
        try:
            async for line in answer.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[len("data:") :].strip()
                if payload != "[DONE]":
                    payload = json.dumps(json.loads(payload) | {"routing": routing})
                yield f"data: {payload}\n\n"
        except httpx.HTTPError as error:
            yield f"data: {json.dumps(self._unreachable(error).body())}\n\ndata: [DONE]\n\n"
        finally:
            await answer.aclose()

    def _unreachable(self, error: Exception) -> RequestError:
        return RequestError(502, f"the engine at {self.url} did not answer ({type(error).__name__}: {error})")


def _with_routing(answer: httpx.Response, routing: dict) -> Response:
    """The engine's JSON answer, status kept, with ``routing`` added (an error body too)."""
    try:
        body = answer.json()
    except ValueError:
        body = RequestError(502, f"the engine answered {answer.status_code} without a JSON body").body()
    if isinstance(body, dict):
        body["routing"] = routing
    return JSONResponse(body, status_code=answer.status_code)
