#!/usr/bin/env bash
# Regenerate requirements/lock.txt: every package of the project and its test tools at exact versions, with their
# hashes, resolved by pip-tools (pip-compile) from pyproject.toml's ranges plus requirements/pins.in. Run it when a
# dependency changes or to move the lock forward; then rerun both README commands and re-measure the figures.
# pip-tools runs in a throwaway environment, so .venv is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$PYTHON" -m venv "$tools"
"$tools/bin/python" -m pip install -q "pip-tools==7.6.2" 2>&1 | grep -v "^WARNING: Location" || true
# Index and find-links settings stay out of the lock: they belong to the machine's pip configuration.
"$tools/bin/pip-compile" -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
    --no-emit-find-links --extra test --output-file requirements/lock.txt pyproject.toml requirements/pins.in \
    2>&1 | grep -v "^WARNING: Location" || true
echo "wrote requirements/lock.txt ($(grep -c '^[a-z]' requirements/lock.txt) packages)"
