"""``routelora serve``: served answers equal offline ones token for token, routed, forced and batched; streams;
sampling settings; and every bad request gets its 4xx while the server keeps serving."""

import base64
import io
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from routelora.bench.serve import serve_processes
from routelora.cli.predict import predict
from routelora.serving.config import ServeConfig
from routelora.serving.server import load_served
from served_library import chat_body, running
from tiny_tasks import bomb_png

COLOUR = "What colour is the square?"
SHAPE = "What shape is it?"


def _image(setup, name: str) -> Path:
    return setup["root"] / "data" / "images" / f"{name}.png"


def _requests(setup) -> list[tuple[str, str, str]]:
    """(model, prompt, image) cases: routed to each expert and to the base, and forced."""
    routed = [("routelora", COLOUR, "colour0"), ("routelora", COLOUR, "colour1"), ("routelora", SHAPE, "shape0")]
    routed += [("routelora", "What is this?", "general0")]
    return routed + [("base", COLOUR, "colour0"), ("shape", COLOUR, "colour1"), ("colour", SHAPE, "shape1")]


def _offline(setup, cases) -> tuple[list[str], list[str]]:
    """Each case's greedy answer by the Python API (``routelora predict`` for routed ones) and its route."""
    from routelora.data.collate import VLMCollator
    from routelora.data.samples import Sample
    from routelora.evaluation.evaluate import generate_answers
    from routelora.experts import ExpertLibrary
    from routelora.models import load_vlm
    from routelora.routing.config import ONE_EXPERT
    from routelora.routing.grouping import decide_routes
    from routelora.routing.model import attach_router

    model, processor = load_vlm(setup["base"])
    collator = VLMCollator(processor)
    library = ExpertLibrary(setup["library"])
    answers, routes = [], []
    for model_name, prompt, image in cases:
        sample = Sample("s", prompt, "", [], _image(setup, image), "test")
        if model_name == "routelora":
            answers.append(
                predict(str(setup["base"]), prompt, _image(setup, image), setup["library"], max_new_tokens=6)[0]
            )
            with attach_router(model, library) as router:
                chosen = decide_routes(router, collator([sample], with_answers=False))[0, 0].item()
            routes.append(router.expert_names[chosen] if chosen >= 0 else "base")
            continue
        if model_name == "base":
            answers.append(generate_answers(model, collator, [sample], 6, progress=False)[0])
        else:
            with attach_router(model, library.load([model_name]), ONE_EXPERT):
                answers.append(generate_answers(model, collator, [sample], 6, progress=False)[0])
        routes.append(model_name)
    return answers, routes


@pytest.fixture(scope="module")
def server(served_library):
    served = load_served(served_library["base"], served_library["library"], ServeConfig(batch_wait_ms=50))
    with running(served) as url:
        yield url, served


def _ask(url: str, body: dict, **options) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60, **options)


def _routed_to(routing: dict) -> str:
    return routing["chosen"][0]["name"]


def test_served_greedy_answers_equal_offline_ones_one_at_a_time_and_batched(served_library, server):
    url, served = server
    cases = _requests(served_library)
    want, routes = _offline(served_library, cases)
    assert any(want) and len(set(routes)) >= 3, f"the cases must reach several routes with answers: {routes} {want}"
    bodies = [chat_body(m, p, _image(served_library, i), max_tokens=6) for m, p, i in cases]
    alone = [_ask(url, body).json() for body in bodies]
    batches = served.batcher.batches
    with ThreadPoolExecutor(len(bodies)) as pool:
        together = list(pool.map(lambda body: _ask(url, body).json(), bodies))
    assert served.batcher.batches - batches < len(bodies), "requests sent together were batched"
    for answers in (alone, together):
        assert [a["choices"][0]["message"]["content"] for a in answers] == want
        assert [_routed_to(a["routing"]) for a in answers] == routes
    routed = alone[0]["routing"]
    assert routed["decided_by"] == "router" and set(routed["scores"]) == {"colour", "shape", "base:general"}
    assert abs(sum(routed["scores"].values()) - 1) < 1e-6 or _routed_to(routed) == "base"
    base = {"name": "base", "kind": "base", "index": -1, "weight": 0.0}
    assert alone[4]["routing"] == {"decided_by": "request", "model": "base", "scores": None, "chosen": [base]}


def test_stream_is_openai_chunks_ending_with_done_and_equals_the_answer(served_library, server):
    url, _ = server
    body = chat_body("routelora", COLOUR, _image(served_library, "colour0"), max_tokens=6)
    whole = _ask(url, body).json()
    options = {"stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body | options, timeout=60) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in answer.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["routing"] == whole["routing"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["usage"] == whole["usage"] and chunks[-1]["choices"] == []


def test_max_tokens_stop_and_sampling_are_honoured(served_library, server):
    url, _ = server
    image = _image(served_library, "colour0")
    greedy = _ask(url, chat_body("colour", COLOUR, image, max_tokens=8)).json()
    text = greedy["choices"][0]["message"]["content"]
    assert len(text) >= 2, f"the colour expert answers something: {text!r}"
    short = _ask(url, chat_body("colour", COLOUR, image, max_tokens=1)).json()
    assert short["usage"]["completion_tokens"] == 1 and short["choices"][0]["finish_reason"] == "length"
    stopped = _ask(url, chat_body("colour", COLOUR, image, max_tokens=8, stop=[text[1:]])).json()
    assert stopped["choices"][0]["message"]["content"] == text[:1]
    assert stopped["choices"][0]["finish_reason"] == "stop"
    long = _ask(url, chat_body("base", COLOUR, image, max_tokens=12, min_tokens=12)).json()
    assert long["usage"]["completion_tokens"] == 12
    hot = chat_body("base", COLOUR, image, max_tokens=8, temperature=2.0)
    seeded = [_ask(url, hot | {"seed": 7}).json()["choices"][0]["message"]["content"] for _ in range(2)]
    assert seeded[0] == seeded[1], "one seed, one answer"
    drawn = {_ask(url, hot | {"seed": seed}).json()["choices"][0]["message"]["content"] for seed in range(6)}
    assert len(drawn) > 1, "sampling at temperature 2 draws different answers"


def _with_image(url: str, prompt: str = COLOUR, model: str = "routelora", images: int = 1) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": url}}] * images + [{"type": "text", "text": prompt}]
    return {"model": model, "messages": [{"role": "user", "content": parts}]}


def _data(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 48), "red").save(out, format="PNG")
    return out.getvalue()


HI = [{"role": "user", "content": "hi"}]
CASES = {
    # name: (body: dict, or raw bytes; status; code or a word of the message)
    "malformed JSON": (b'{"model": "routelora", "messages": [', 400, "invalid_json"),
    "a body that is not an object": (b"[1, 2]", 400, "invalid_json"),
    "missing messages": ({"model": "routelora"}, 400, "messages"),
    "empty messages": ({"model": "routelora", "messages": []}, 400, "messages"),
    "a system turn": ({"model": "routelora", "messages": [{"role": "system", "content": "x"}, *HI]}, 400, "system"),
    "an assistant turn last": (
        {"model": "routelora", "messages": [*HI, {"role": "assistant", "content": "a"}]},
        400,
        "last message",
    ),  # fmt: skip
    "an image that is not an image": (_with_image(_data(b"not a png at all")), 400, "invalid_image"),
    "a decompression bomb": (_with_image(_data(bomb_png())), 400, "decompression bomb"),
    "an image URL that is not a data URI": (_with_image("http://example.com/a.png"), 400, "fetches nothing"),
    "a file URL without an allowed folder": (_with_image("file:///etc/hostname"), 400, "--image-dir"),
    "two images": (_with_image(_data(_png()), images=2), 400, "one image"),
    "an unknown model": ({"model": "gpt-9", "messages": HI}, 404, "model_not_found"),
    "max_tokens beyond the model's limit": ({"model": "routelora", "messages": HI, "max_tokens": 100000}, 400, "512"),
    "max_tokens of 0": ({"model": "routelora", "messages": HI, "max_tokens": 0}, 400, "max_tokens"),
    "a prompt that leaves no room for max_tokens": (
        {"model": "base", "messages": [{"role": "user", "content": "red " * 400}], "max_tokens": 200},
        400,
        "context_length_exceeded",
    ),  # fmt: skip
    "temperature out of range": ({"model": "routelora", "messages": HI, "temperature": 5}, 400, "temperature"),
    "n above 1": ({"model": "routelora", "messages": HI, "n": 2}, 400, "n must be"),
    "an unsupported field": ({"model": "routelora", "messages": HI, "tools": []}, 400, "tools"),
    "five stop strings": ({"model": "routelora", "messages": HI, "stop": list("abcde")}, 400, "stop"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_requests_get_an_openai_error_and_the_server_keeps_serving(name, served_library, server):
    url, _ = server
    body, status, needle = CASES[name]
    options = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) else {}
    answer = httpx.post(f"{url}/v1/chat/completions", json=None if options else body, timeout=60, **options)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert needle in error["message"] or needle == error["code"], error
    assert "\n" not in error["message"]
    good = _ask(url, chat_body("routelora", COLOUR, _image(served_library, "colour0"), max_tokens=2))
    assert good.status_code == 200, "the server keeps serving"


def test_oversized_bodies_unknown_paths_and_methods(server):
    url, served = server
    limit = served.config.max_body_bytes
    big = {"model": "routelora", "messages": [{"role": "user", "content": "x" * (limit + 1)}]}
    assert _ask(url, big).status_code == 413
    streamed = httpx.post(f"{url}/v1/chat/completions", content=iter([b"{" + b" " * limit, b"}"]), timeout=60)
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "too_large"
    assert httpx.get(f"{url}/v1/nothing").status_code == 404
    assert httpx.get(f"{url}/v1/chat/completions").status_code == 405
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_api_key_image_folder_and_a_full_queue(served_library, tmp_path):
    folder = served_library["root"] / "data" / "images"
    config = ServeConfig(api_key="sesame", image_dir=str(folder), max_queue=1, max_batch=1, batch_wait_ms=0)
    served = load_served(served_library["base"], served_library["library"], config)
    key = {"authorization": "Bearer sesame"}
    with running(served) as url:
        assert httpx.get(f"{url}/v1/models").status_code == 401
        wrong = httpx.get(f"{url}/v1/models", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{url}/health").status_code == 200, "health needs no key"
        names = [m["id"] for m in httpx.get(f"{url}/v1/models", headers=key).json()["data"]]
        assert names == ["routelora", "base", "colour", "shape"]
        inside = _ask(url, _with_image((folder / "colour0.png").as_uri()) | {"max_tokens": 2}, headers=key)
        assert inside.status_code == 200, inside.text
        (tmp_path / "x.png").write_bytes((folder / "colour0.png").read_bytes())
        outside = _ask(url, _with_image((tmp_path / "x.png").as_uri()), headers=key)
        assert outside.status_code == 400 and "allowed image folder" in outside.json()["error"]["message"]
        slow = {"model": "base", "messages": HI, "max_tokens": 150, "min_tokens": 150}
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: _ask(url, slow, headers=key), range(6)))
        codes = sorted(a.status_code for a in answers)
        assert 503 in codes and 200 in codes and set(codes) <= {200, 503}, codes
        busy = next(a for a in answers if a.status_code == 503)
        assert busy.json()["error"]["code"] == "server_busy" and busy.headers["retry-after"] == "1"
        assert _ask(url, slow | {"max_tokens": 2, "min_tokens": 0}, headers=key).status_code == 200


def test_the_error_table_in_the_docs_lists_every_case():
    table = (Path(__file__).parent.parent / "docs" / "serving.md").read_text()
    for name in [*CASES, "a wrong or missing API key", "an oversized body", "a full queue"]:
        assert f"| {name} |" in table, f"docs/serving.md has no row for {name!r}"


def test_a_router_that_cannot_decide_ahead_is_refused(served_library, capsys):
    from routelora.cli.main import main

    argv = ["serve", "--base", str(served_library["base"]), "--library", str(served_library["library"])]
    assert main([*argv, "--router", "paper"]) == 2
    assert "decides once per sequence" in capsys.readouterr().err


def test_front_end_routes_here_and_forwards_to_an_engine_in_plain_mode(served_library, server):
    """Two real processes on loopback: routelora in engine mode (the adapter named by ``model``), and a front end
    that decides each route and forwards; its answers are the routed server's, with the same routing."""
    url, _ = server
    base, library = str(served_library["base"]), str(served_library["library"])
    cases = [case for case in _requests(served_library) if case[0] == "routelora"]
    bodies = [chat_body(m, p, _image(served_library, i), max_tokens=6) for m, p, i in cases]
    want = [_ask(url, body).json() for body in bodies]
    with socket.socket() as probe:  # a free port for the engine, so that both processes start at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine_url = f"http://127.0.0.1:{port}"
    plain = ["--base", base, "--library", library, "--plain", "--port", str(port)]
    with serve_processes(plain, ["--base", base, "--library", library, "--engine", engine_url]) as (engine, front):
        names = [m["id"] for m in httpx.get(f"{engine}/v1/models").json()["data"]]
        assert names == ["base", "colour", "shape"], "engine mode serves the adapters by name only"
        assert _ask(engine, bodies[0]).status_code == 404
        got = [_ask(front, body).json() for body in bodies]
        body = bodies[0] | {"stream": True}
        with httpx.stream("POST", f"{front}/v1/chat/completions", json=body, timeout=60) as answer:
            lines = [line for line in answer.iter_lines() if line]
    for served, forwarded in zip(want, got):
        assert forwarded["choices"][0]["message"]["content"] == served["choices"][0]["message"]["content"]
        assert forwarded["routing"] == served["routing"]
        assert forwarded["model"] == _routed_to(served["routing"]), "the engine was asked for the chosen adapter"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert lines[-1] == "data: [DONE]" and all(c["routing"] == want[0]["routing"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == want[0]["choices"][0]["message"]["content"]


def test_a_server_that_does_not_start_is_named_with_its_exit_code_and_last_lines(tmp_path):
    """The bench and these tests start servers with ``serve_processes``: one that ends before it listens raises at
    once (not after the whole wait) with its arguments, its exit code and what it printed."""
    missing = str(tmp_path / "no-such-base")
    with pytest.raises(RuntimeError) as error, serve_processes(["--base", missing], seconds=120):
        pass
    message = str(error.value)
    assert f"serve --base {missing} did not start (exited with code " in message
    assert "no-such-base" in message.split("its last lines:", 1)[1], "the server's own error is shown"


def test_a_batch_decided_ahead_is_not_decided_again_and_generates_the_same(served_library, monkeypatch):
    """The server decides a batch's routes once (``describe_routes``); the generation that follows applies them
    without testing the regions again, and gives the tokens of a generation that decides for itself."""
    import torch

    from routelora.data.collate import VLMCollator
    from routelora.data.samples import Sample
    from routelora.experts import ExpertLibrary
    from routelora.models import load_vlm
    from routelora.routing.model import attach_router
    from routelora.routing.regions import RegionTest
    from routelora.serving.routes import applied, describe_routes, route_of

    model, processor = load_vlm(served_library["base"])
    collator = VLMCollator(processor)
    cases = [(COLOUR, "colour0"), (SHAPE, "shape0"), ("What is this?", "general0"), (COLOUR, "colour1")]
    samples = [Sample(f"s{i}", p, "", [], _image(served_library, im), "test") for i, (p, im) in enumerate(cases)]
    batch = collator(samples, with_answers=False)
    tests = []
    original = RegionTest.forward
    monkeypatch.setattr(RegionTest, "forward", lambda self, *args: tests.append(1) or original(self, *args))
    options = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": collator.pad_id}
    with attach_router(model, ExpertLibrary(served_library["library"])) as router:
        routes = [route_of(routing) for routing in describe_routes(router, batch)]
        assert len({route.chosen for route in routes}) >= 2, f"the batch must mix routes: {routes}"
        tests.clear()
        with applied(router, routes), torch.no_grad():
            ahead = model.generate(**batch, **options)
        assert tests == [], "the regions were tested again inside applied()"
        with torch.no_grad():
            decided = model.generate(**batch, **options)
        assert tests, "a plain generation decides for itself"
    assert torch.equal(ahead, decided)
