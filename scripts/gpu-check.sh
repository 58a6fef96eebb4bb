#!/usr/bin/env bash
# The GPU check, for the day a GPU is lent: per VLM family (LLaVA, Qwen2-VL, InternVL, Idefics3), a random model
# with a 0.4 B-parameter language model in bf16: an expert trained for 10 steps and its gates, routed generation
# with that one expert against PEFT's tokens, and base vs routed generation throughput. Meant to take at most 5
# minutes on one GPU (an estimate until it has run). Extra arguments go to `python -m routelora.bench.gpu_check`.
source "$(dirname "$0")/env.sh"
python -m routelora.bench.gpu_check --shape mid --device cuda --dtype bfloat16 "$@"
