#!/usr/bin/env bash
# Install the locked environment into .venv (created if needed) and Chromium where it is missing (for the HTML
# report's browser test), then run the whole test suite: lint, then pytest.
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/browser.sh"
ruff check src tests scripts
ruff format --check src tests scripts
python -m pytest -q "$@"
