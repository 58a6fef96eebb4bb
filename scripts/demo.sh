#!/usr/bin/env bash
# The main job on the embedded default, in .venv (created if needed). Today: build the tiny VLM and show what
# routelora sees in it. Outputs go to runs/demo (override with DEMO_DIR).
source "$(dirname "$0")/env.sh"
out=${DEMO_DIR:-runs/demo}
rm -rf "$out/tiny-untrained"
routelora tiny build --out "$out/tiny-untrained"
routelora info "$out/tiny-untrained"
