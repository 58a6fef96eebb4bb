#!/usr/bin/env bash
# Run the test suite against the newest releases that pyproject.toml's ranges allow, in a throwaway environment,
# and print which versions differ from requirements/lock.txt. Not part of CI: a new upstream release must not turn
# CI red. Run it before closing work that touches dependencies or generation, record the result in the README's
# development section, and when it finds a break, fix the code or bound the range in pyproject.toml and say why.
#
# torch stays at the CPU build 2.13.0 (override with TORCH_SPEC): the newest torch in range is a CUDA build of
# several GB. The project is installed as a wheel, not editable, so missing package data shows up here too. Lint
# is left to the locked ruff: a newer ruff's new rules are not a break of routelora. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
env=$(mktemp -d)
trap 'rm -rf "$env"' EXIT
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
"$PYTHON" -m venv "$env"
quiet "$env/bin/python" -m pip install -q --upgrade pip
echo "$TORCH_SPEC" > "$env/torch-constraint.txt"
# Built from a clean copy of the tracked and unignored files: setuptools would reuse a stale build/ folder here.
mkdir "$env/project"
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$env/project"
quiet "$env/bin/python" -m pip install -q -c "$env/torch-constraint.txt" --upgrade --upgrade-strategy eager \
    "$env/project[test]"
"$env/bin/python" -m pip check
echo "check-latest $(date -u +%Y-%m-%d): versions that differ from requirements/lock.txt:"
"$env/bin/python" - <<'PY'
import re
from importlib.metadata import distributions

locked = dict(re.findall(r"^([a-z0-9._-]+)==(\S+)", open("requirements/lock.txt").read(), re.M))
normal = lambda name: re.sub(r"[-_.]+", "-", name).lower()
locked = {normal(name): version for name, version in locked.items()}
newer = []
for dist in sorted(distributions(), key=lambda d: normal(d.metadata["Name"])):
    name = normal(dist.metadata["Name"])
    if name != "routelora" and locked.get(name) != dist.version:
        newer.append(f"{name} {locked.get(name, '(not locked)')} -> {dist.version}")
print("  " + ("\n  ".join(newer) if newer else "none: the lock is at the newest allowed versions"))
PY
cd "$env" && "$env/bin/python" -c "import routelora, transformers; print('  imports routelora from', \
routelora.__file__.rsplit('/site-packages/', 1)[0], 'with transformers', transformers.__version__)"
cd - > /dev/null
"$env/bin/python" -m pytest -q -p no:cacheprovider "$@"
