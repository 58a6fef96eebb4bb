"""The bodies the server answers with, in OpenAI's chat-completions shapes, each with its ``routing`` object."""

import json
import time
import uuid


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(identifier: str, model: str, result: dict, routing: dict) -> dict:
    """A ``chat.completion`` object from the batcher's ``done`` result."""
    return {
        "id": identifier,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result["text"]},
                "finish_reason": result["finish_reason"],
            }
        ],
        "usage": usage(result["prompt_tokens"], result["completion_tokens"]),
        "routing": routing,
    }


def chunk(
    identifier: str, model: str, routing: dict, delta: dict | None, finish_reason: str | None = None, **extra
) -> dict:
    """A ``chat.completion.chunk`` object; ``delta`` None gives the usage chunk (no choices)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    body = {
        "id": identifier,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "routing": routing,
    }
    return body | extra


def event(body: dict | str) -> str:
    """One server-sent event: ``data: <json>`` (or ``data: [DONE]``) and a blank line."""
    return f"data: {body if isinstance(body, str) else json.dumps(body)}\n\n"


def models_list(names: list[tuple[str, str]]) -> dict:
    """``GET /v1/models``: each ``(name, kind)``, kind ``routed``, ``base`` or ``expert``."""
    created = int(time.time())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "routelora", "kind": kind}
        for name, kind in names
    ]
    return {"object": "list", "data": data}
