#!/usr/bin/env bash
# Same seed, same numbers: run `routelora demo --quick` twice into fresh folders and check that the two
# results.json files are identical apart from their timings. Takes about 4-5 minutes with the base cached.
source "$(dirname "$0")/env.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
routelora demo --quick --out "$work/first" >/dev/null
routelora demo --quick --out "$work/second" >/dev/null
python - "$work/first/results.json" "$work/second/results.json" <<'EOF'
import json
import sys

TIMINGS = {"seconds", "learn_seconds", "eval_seconds", "train_seconds", "train_seconds_total", "learn_wall_seconds_total"}


def strip(value):
    if isinstance(value, dict):
        return {key: strip(item) for key, item in value.items() if key not in TIMINGS}
    if isinstance(value, list):
        return [strip(item) for item in value]
    return value


first, second = (strip(json.load(open(path))) for path in sys.argv[1:])
if first != second:
    sys.exit("the two quick runs differ beyond their timings")
print("the two quick runs wrote identical results (timings aside)")
EOF
