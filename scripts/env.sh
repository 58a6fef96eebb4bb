# Sourced by the other scripts: create or reuse the local virtual environment in .venv, installed from the lock.
# requirements/lock.txt pins every package (the CPU build of torch 2.13.0 among them) with its hashes, so every
# machine gets the versions the README's figures were measured with; scripts/lock.sh regenerates it. The project
# itself is installed last, editable and without dependencies of its own choosing, and `pip check` then confirms
# that the lock satisfies pyproject.toml. A stamp of both files' hashes skips all of this when nothing changed;
# when they change, an environment that this script made is rebuilt from scratch, so nothing outside the lock
# lingers in it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
LOCK=requirements/lock.txt
stamp="$VENV/.routelora-installed"
want="$(cat "$LOCK" pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    if [ -f "$stamp" ]; then
        echo "routelora: $LOCK or pyproject.toml changed; rebuilding $VENV" >&2
        rm -rf "$VENV"
    fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
    quiet "$VENV/bin/python" -m pip install -q --require-hashes --no-deps -r "$LOCK"
    quiet "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
    "$VENV/bin/python" -m pip check
    "$VENV/bin/python" -c "import routelora, torch, transformers; print('routelora', routelora.__version__, \
'torch', torch.__version__, 'transformers', transformers.__version__)"
    echo "$want" > "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"
