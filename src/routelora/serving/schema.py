"""A chat-completions request body, checked field by field and turned into a :class:`Sample` and its settings.

Written by hand rather than with pydantic models: every refusal must be one sentence naming the field and what to
send instead, in OpenAI's error shape, and the conversation must become exactly the sample that ``routelora
predict`` builds for the same prompt (so a served answer equals the offline one).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from routelora.data.samples import IMAGE_MARKER, Sample
from routelora.serving.errors import bad_request

STOP_STRINGS = 4
"""Most stop strings a request may give (OpenAI's limit)."""
IGNORED = {"user": None, "n": 1, "presence_penalty": 0, "frequency_penalty": 0, "logprobs": False}
"""Fields accepted at their neutral value only (what OpenAI clients send by default)."""
KNOWN = {"model", "messages", "max_tokens", "max_completion_tokens", "min_tokens", "temperature", "top_p", "stop"}
KNOWN |= {"seed", "stream", "stream_options", *IGNORED}


@dataclass
class Sampling:
    """How one request's tokens are drawn; requests with equal settings share a generate call."""

    temperature: float | None = None
    """None or 0: greedy; above 0: sampling at this temperature."""
    top_p: float | None = None
    """Nucleus sampling mass (sampling at temperature 1 when given without a temperature)."""
    min_tokens: int = 0
    """Tokens generated before the end of turn may end the answer (vLLM's extension)."""
    seed: int | None = None
    """Seed of the sampling; equal seeds and settings give equal answers."""

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or (self.temperature is None and self.top_p is None)

    def key(self) -> tuple:
        """Equal keys can be generated together."""
        if self.greedy:
            return ("greedy", self.min_tokens)
        return ("sample", self.temperature, self.top_p, self.min_tokens, self.seed)


@dataclass
class ChatRequest:
    """One checked chat-completions request."""

    model: str
    sample: Sample
    """The conversation as a sample: the last user turn, the earlier turns, the image (encoded bytes) if any."""
    max_tokens: int
    stop: tuple[str, ...] = ()
    sampling: Sampling = field(default_factory=Sampling)
    stream: bool = False
    include_usage: bool = False
    """``stream_options.include_usage``: end a stream with a chunk that holds the token counts."""
    body: dict = field(default_factory=dict)
    """The body as received, for forwarding to an engine."""


def parse_body(raw: bytes) -> dict:
    """The request body as a JSON object, or a 400 saying why not."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request(f"the request body is not valid JSON ({error})", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, not {type(body).__name__}", code="invalid_json")
    return body


def parse_chat(
    body: dict, default_max_tokens: int, max_tokens_limit: int, read_image: Callable[[str], bytes]
) -> ChatRequest:
    """Check every field of a chat-completions body; ``read_image(url)`` gives an ``image_url``'s bytes."""
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise bad_request(
            f"unsupported field(s) {', '.join(unknown)}; routelora serve takes {', '.join(sorted(KNOWN))}",
            unknown[0],
        )
    for name, neutral in IGNORED.items():
        if name != "user" and body.get(name, neutral) not in (neutral, None):
            raise bad_request(f"{name} must be {neutral!r} here (got {body[name]!r}); it is not supported", name)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model is required: a name from GET /v1/models", "model")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = default_max_tokens if max_tokens is None else max_tokens
    if not _is_int(max_tokens) or not 1 <= max_tokens <= max_tokens_limit:
        raise bad_request(
            f"max_tokens must be an integer from 1 to {max_tokens_limit} (this model's limit), got {max_tokens!r}",
            "max_tokens",
        )
    stream = body.get("stream", False)
    options = body.get("stream_options") or {}
    if not isinstance(stream, bool) or not isinstance(options, dict):
        raise bad_request("stream must be true or false, and stream_options an object", "stream")
    return ChatRequest(
        model=model,
        sample=_conversation(body.get("messages"), read_image),
        max_tokens=min(max_tokens, max_tokens_limit),
        stop=_stop(body.get("stop")),
        sampling=_sampling(body, max_tokens),
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
        body=body,
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise bad_request(f"{name} must be a number from {low} to {high}, got {value!r}", name)
    return float(value)


def _sampling(body: dict, max_tokens: int) -> Sampling:
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise bad_request("top_p must be above 0 (1 keeps every token)", "top_p")
    min_tokens = body.get("min_tokens", 0)
    if not _is_int(min_tokens) or not 0 <= min_tokens <= max_tokens:
        raise bad_request(f"min_tokens must be an integer from 0 to max_tokens ({max_tokens})", "min_tokens")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise bad_request(f"seed must be an integer, got {seed!r}", "seed")
    return Sampling(temperature, top_p, min_tokens, seed)


def _stop(value) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else value if value is not None else []
    if not isinstance(stops, list) or len(stops) > STOP_STRINGS or not all(isinstance(s, str) and s for s in stops):
        raise bad_request(f"stop must be a non-empty string or a list of up to {STOP_STRINGS} of them", "stop")
    return tuple(stops)


def _conversation(messages, read_image: Callable[[str], bytes]) -> Sample:
    """User and assistant turns, alternating and ending with the user's, as one sample (at most one image)."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list of {role, content} objects", "messages")
    turns, images = [], []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request(f"messages[{index}] must be an object with a role and a content", "messages")
        role = message["role"]
        if role not in ("user", "assistant"):
            raise bad_request(
                f"messages[{index}] has role {role!r}; routelora serves user and assistant turns, the format its "
                "experts were trained on (put any instructions into the user's turn)",
                "messages",
            )
        expected = "user" if index % 2 == 0 else "assistant"
        if role != expected:
            raise bad_request(f"messages[{index}] must be a {expected} turn: turns alternate, user first", "messages")
        turns.append(_text(message.get("content"), index, role, images, read_image))
    if len(turns) % 2 == 0:
        raise bad_request("the last message must be the user's: it is the turn to answer", "messages")
    history = [(turns[i], turns[i + 1]) for i in range(0, len(turns) - 1, 2)]
    image = images[0] if images else None
    return Sample(
        id="request", prompt=turns[-1], answer="", references=[], image=image, origin="request", history=history
    )


def _text(content, index: int, role: str, images: list[bytes], read_image: Callable[[str], bytes]) -> str:
    """A message's text, with the image marker where its image part was."""
    where = f"messages[{index}].content"
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list) or not parts:
        raise bad_request(f"{where} must be a string or a non-empty list of parts", "messages")
    pieces = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if IMAGE_MARKER in part["text"]:
                raise bad_request(f"{where} holds the text {IMAGE_MARKER!r}; send the image as an image_url part")
            pieces.append(part["text"])
        elif kind == "image_url":
            if role != "user":
                raise bad_request(f"{where}: only user turns may hold an image", "messages")
            if images:
                raise bad_request("a request may hold one image (the model takes one per conversation)", "messages")
            url = part["image_url"].get("url") if isinstance(part.get("image_url"), dict) else part.get("image_url")
            if not isinstance(url, str):
                raise bad_request(f"{where}: an image_url part needs image_url.url", "messages")
            images.append(read_image(url))
            pieces.append(IMAGE_MARKER)
        else:
            raise bad_request(
                f"{where}: each part must be {{type: text, text}} or {{type: image_url, ...}}", "messages"
            )
    text = "\n".join(pieces)
    if not text.replace(IMAGE_MARKER, "").strip() and IMAGE_MARKER not in text:
        raise bad_request(f"{where} is empty", "messages")
    return text
