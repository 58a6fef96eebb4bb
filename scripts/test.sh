#!/usr/bin/env bash
# Install the test dependencies into .venv (created if needed) and run the whole test suite: lint, then pytest.
ROUTELORA_EXTRAS=test
source "$(dirname "$0")/env.sh"
ruff check src tests scripts
ruff format --check src tests scripts
python -m pytest -q "$@"
