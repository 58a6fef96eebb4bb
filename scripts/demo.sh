#!/usr/bin/env bash
# The main job on the embedded default, in .venv (created if needed): `routelora demo`, the paper in miniature.
# It generates the task world, builds or reuses the pretrained tiny base, runs the continual-learning stream over
# every method and the paper's other experiments, and writes results.json, report.md and report.html, saying
# which of the paper's claims held. Outputs go to runs/demo, runs/demo-quick with --quick, runs/demo-seeds with
# --seeds (override with DEMO_DIR; a stream already there is resumed); the world and the base are cached in
# ~/.cache/routelora (override with ROUTELORA_CACHE). Extra arguments go to `routelora demo` (--quick: short
# recipes, a smoke run of the whole pipeline in minutes; --seeds 0 1 2: every claim at three seeds).
source "$(dirname "$0")/env.sh"
out=${DEMO_DIR:-}
if [ -z "$out" ]; then  # routelora demo's own defaults: a quick run never resumes or refuses the full one's folder
    case " $* " in *" --quick "*) out=runs/demo-quick ;; *) out=runs/demo ;; esac
    case " $* " in *" --seeds "*) out=$out-seeds ;; esac
fi
routelora demo --out "$out" "$@"
