#!/usr/bin/env bash
# The main job on the embedded default, in .venv (created if needed): generate the task world, build or reuse the
# pretrained tiny base, train a LoRA expert and its gates for each of the five specialised tasks, and evaluate
# every task on the test split and on the reworded one, routed, with the routing report. Outputs go to runs/demo
# (override with DEMO_DIR); the world and the base are cached in ~/.cache/routelora (override with ROUTELORA_CACHE).
source "$(dirname "$0")/env.sh"
out=${DEMO_DIR:-runs/demo}
python -m routelora.experiments.demo --out "$out" "$@"
