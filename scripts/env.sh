# Sourced by the other scripts: create or reuse the local virtual environment in .venv.
# torch is installed first, pinned to the CPU build that lies on this machine's disk; an unpinned torch would pull
# a multi-GB CUDA build. Everything else comes from pyproject.toml. A stamp of pyproject.toml's hash skips the
# install when nothing changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.routelora-installed"
want="$(sha256sum pyproject.toml | cut -c1-16)-${ROUTELORA_EXTRAS:-base}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
    spec="."
    [ -n "${ROUTELORA_EXTRAS:-}" ] && spec=".[${ROUTELORA_EXTRAS}]"
    "$VENV/bin/python" -m pip install -q -e "$spec" 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -c "import routelora, torch; print('routelora', routelora.__version__, 'torch', torch.__version__)"
    echo "$want" > "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"
