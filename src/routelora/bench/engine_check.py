"""The serving step of the GPU check: an exported library on a multi-LoRA engine behind routelora's front end,
against routelora's own routed server, answer for answer.

``python -m routelora.bench.engine_check --engine vllm --vllm-python PATH`` (on a machine where vLLM runs, see
scripts/gpu-check.sh) exports the bench library (random tiny base, random experts with the world's routing
statistics), starts ``vllm serve`` with every exported adapter as a LoRA module, starts ``routelora serve --engine``
in front of it and a routed ``routelora serve``, sends both the same mixed greedy requests and prints the share of
equal answers and of equal routes. ``--engine routelora`` runs routelora's own server in engine mode in vLLM's place
(the test suite runs that on a CPU). Everything listens on 127.0.0.1.
"""

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from routelora.bench.config import ServeBenchConfig
from routelora.bench.generate import SHAPES, WORKLOAD, bench_library, workload
from routelora.bench.serve import ROUTED, request_body, server_process, write_base_and_library


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _vllm(python: str, base: Path, export: Path, manifest: dict, port: int, device: str) -> subprocess.Popen:
    modules = [f"{e['name']}={export / e['adapter']}" for e in manifest["experts"] if e["kind"] == "lora"]
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(base), "--served-model-name"]
    command += ["base", "--host", "127.0.0.1", "--port", str(port), "--enable-lora", "--max-lora-rank"]
    command += [str(max(8, manifest["max_lora_rank"])), "--max-loras", str(len(modules)), "--lora-modules", *modules]
    command += ["--max-model-len", "512", "--dtype", "float32" if device == "cpu" else "bfloat16"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _await_health(url: str, process: subprocess.Popen, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the engine exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise RuntimeError(f"the engine at {url} did not answer /health in {seconds:.0f} s")


def check(engine: str, vllm_python: str | None, requests: int, new_tokens: int, device: str) -> dict:
    """Equal answers and routes of the front end over ``engine`` and of routelora's routed server."""
    from routelora.embedded.cache import cached_world
    from routelora.embedded.tiny import build_tiny_vlm
    from routelora.experts.export import export_peft

    world = cached_world(progress=False)
    model, processor = build_tiny_vlm(SHAPES["tiny"])
    experts, skills = bench_library(model, processor, world, 2, 8)
    bodies = [request_body(s, ROUTED, new_tokens) | {"min_tokens": 0} for s in workload(world, WORKLOAD, requests)]
    config = ServeBenchConfig(requests=requests)
    with tempfile.TemporaryDirectory(prefix="routelora-engine-check-") as folder:
        base, library = write_base_and_library(Path(folder), model, processor, experts, skills)
        export = export_peft(library, model, Path(folder) / "export")
        manifest = json.loads((export / "manifest.json").read_text())
        extra = ("--device", device, "--base-name", "base")
        with server_process(base, library.root, config, extra) as routed:
            want = [httpx.post(f"{routed}/v1/chat/completions", json=b, timeout=120).json() for b in bodies]
            if engine == "vllm":
                port = _free_port()
                process = _vllm(vllm_python or sys.executable, base, export, manifest, port, device)
                engine_url = f"http://127.0.0.1:{port}"
                try:
                    _await_health(engine_url, process)
                    got = _through_front_end(base, library.root, config, engine_url, bodies, extra)
                finally:
                    process.terminate()
                    process.wait(timeout=60)
            else:
                with server_process(base, library.root, config, (*extra, "--plain")) as engine_url:
                    got = _through_front_end(base, library.root, config, engine_url, bodies, extra)
    answers = [(w["choices"][0]["message"]["content"], g["choices"][0]["message"]["content"].strip()) for w, g in
               zip(want, got)]  # fmt: skip
    return {
        "engine": engine,
        "requests": len(bodies),
        "equal answers": sum(a == b for a, b in answers) / len(answers),
        "equal routes": sum(w["routing"] == g["routing"] for w, g in zip(want, got)) / len(answers),
        "routes": sorted({w["routing"]["chosen"][0]["name"] for w in want}),
    }


def _through_front_end(base, library, config, engine_url: str, bodies: list[dict], extra) -> list[dict]:
    with server_process(base, library, config, (*extra, "--engine", engine_url)) as front:
        return [httpx.post(f"{front}/v1/chat/completions", json=b, timeout=300).json() for b in bodies]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=("vllm", "routelora"), default="vllm")
    parser.add_argument("--vllm-python", help="the Python of an environment with vLLM (default: this one)")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    result = check(args.engine, args.vllm_python, args.requests, args.new_tokens, args.device)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
