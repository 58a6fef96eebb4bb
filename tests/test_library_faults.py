"""Libraries through faults: a process killed in the middle of `library add` leaves the whole new expert or none
of it, two processes adding at once both succeed, and the package writes files only through atomic paths."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from routelora.embedded.tiny import TinyVLMRecipe, build_tiny_vlm
from routelora.experts import ExpertLibrary, save_expert
from routelora.experts.train import ExpertTrainConfig, train_expert
from tiny_tasks import CORPUS, colour_and_shape

SLOW_ADD = """
import shutil, sys, time
from routelora.experts import ExpertLibrary
copy = shutil.copyfile
def slow(source, target, *args, **kwargs):
    time.sleep(0.3)  # a slow disk: the kill lands while the expert's files are being copied in
    return copy(source, target, *args, **kwargs)
shutil.copyfile = slow
ExpertLibrary(sys.argv[1]).add(sys.argv[2], name=sys.argv[3])
"""

ADD_AT = """
import sys, time
from pathlib import Path
from routelora.experts import ExpertLibrary
while not Path(sys.argv[4]).exists():
    time.sleep(0.001)
ExpertLibrary(sys.argv[1]).add(sys.argv[2], name=sys.argv[3])
"""


@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    model, processor = build_tiny_vlm(TinyVLMRecipe(text_layers=1), CORPUS)
    found = {}
    for task in colour_and_shape(root / "data"):
        expert, _ = train_expert(model, processor, task, ExpertTrainConfig(rank=2, steps=1, batch_size=4))
        found[task.name] = save_expert(expert, root / "experts" / task.name)
    return found


def test_a_kill_in_the_middle_of_library_add_leaves_all_or_nothing(experts, tmp_path):
    library = ExpertLibrary(tmp_path / "lib")
    library.add(experts["colour"], name="kept")
    victim = subprocess.Popen([sys.executable, "-c", SLOW_ADD, str(library.root), str(experts["shape"]), "new"])
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".new.tmp-") and any(p.iterdir()) for p in library.root.iterdir()):
        assert victim.poll() is None and time.monotonic() < deadline, "the add should still be copying"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert library.names() == ["kept"], "none of the new expert is visible"
    assert [e.name for e in library.load()] == ["kept"], "the library still loads"
    library.add(experts["shape"], name="new")  # the leftover staging folder does not get in the way
    assert library.names() == ["kept", "new"] and len(library.load()) == 2


def test_two_processes_adding_at_the_same_moment_both_succeed(experts, tmp_path):
    library = tmp_path / "lib"
    go = tmp_path / "go"
    adders = [
        subprocess.Popen([sys.executable, "-c", ADD_AT, str(library), str(experts[name]), name, str(go)])
        for name in ("colour", "shape")
    ]
    time.sleep(3)  # both imported and waiting
    go.touch()
    assert [adder.wait(timeout=120) for adder in adders] == [0, 0]
    assert ExpertLibrary(library).names() == ["colour", "shape"]
    assert len(ExpertLibrary(library).load()) == 2


def test_two_processes_adding_one_name_leave_one_whole_expert(experts, tmp_path):
    library = tmp_path / "lib"
    go = tmp_path / "go"
    adders = [
        subprocess.Popen(
            [sys.executable, "-c", ADD_AT, str(library), str(experts[name]), "same", str(go)], stderr=subprocess.PIPE
        )
        for name in ("colour", "shape")
    ]
    time.sleep(3)
    go.touch()
    codes = [adder.wait(timeout=120) for adder in adders]
    errors = [adder.stderr.read().decode() for adder in adders]
    assert sorted(codes) == [0, 1], errors
    assert "already has an expert named 'same'" in errors[codes.index(1)]
    assert ExpertLibrary(library).names() == ["same"] and ExpertLibrary(library).load()[0].name == "same"


def test_the_package_writes_files_only_through_atomic_paths():
    """Direct writes appear only where the target is a fresh temporary folder that is renamed into place."""
    package = Path(__file__).parent.parent / "src" / "routelora"
    staged = {"io.py", "embedded/world/writer.py", "models/checkpoint.py", "experts/train.py", "bench/routing.py"}
    pattern = re.compile(r"\.write_text\(|\.write_bytes\(|open\([^)]*['\"][wa]b?['\"]|save_file\(|\.savefig\(")
    direct = set()
    for path in package.rglob("*.py"):
        relative = path.relative_to(package).as_posix()
        lines = [line for line in path.read_text().splitlines() if "io.write_with" not in line]  # atomic already
        if relative not in staged and any(pattern.search(line) for line in lines):
            direct.add(relative)
    assert not direct, f"files written outside routelora.io's atomic helpers: {sorted(direct)}"
    assert os.path.exists(package / "io.py")
