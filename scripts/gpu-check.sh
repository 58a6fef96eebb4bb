#!/usr/bin/env bash
# The GPU check, for the day a GPU is lent: per VLM family (LLaVA, Qwen2-VL, InternVL, Idefics3), a random model
# with a 0.4 B-parameter language model in bf16: an expert trained for 10 steps and its gates, routed generation
# with that one expert against PEFT's tokens, and base vs routed generation throughput. Meant to take at most 5
# minutes on one GPU (an estimate until it has run). Extra arguments go to `python -m routelora.bench.gpu_check`.
source "$(dirname "$0")/env.sh"
python -m routelora.bench.gpu_check --shape mid --device cuda --dtype bfloat16 "$@"
# The serving step: an exported library on vLLM (multi-LoRA, one adapter per request) behind `routelora serve
# --engine`, against routelora's own routed server, answer for answer (src/routelora/bench/engine_check.py). It
# needs vLLM, which the lock does not hold: give the Python of an environment that has it as VLLM_PYTHON.
if [ -n "${VLLM_PYTHON:-}" ]; then
    python -m routelora.bench.engine_check --engine vllm --vllm-python "$VLLM_PYTHON" --device cuda
else
    echo "gpu-check: serving step skipped (set VLLM_PYTHON to the python of an environment with vLLM)"
fi
