#!/usr/bin/env bash
# Install the locked environment into .venv (created if needed) and run the whole test suite: lint, then pytest.
source "$(dirname "$0")/env.sh"
ruff check src tests scripts
ruff format --check src tests scripts
python -m pytest -q "$@"
