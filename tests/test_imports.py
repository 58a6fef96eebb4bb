"""The floor plan holds: no import circles, and the core never reaches up into the kit, the CLI or experiments."""

import ast
from pathlib import Path

import routelora

PACKAGE = Path(routelora.__file__).parent
CORE = {"data", "models", "metrics", "training", "experts", "gates", "routing", "evaluation", "methods", "stream"}
CORE |= {"reports"}
CORE |= {"io", "nn", "errors", "environment", "_version", "_lazy"}
ABOVE_THE_CORE = {"embedded", "experiments", "cli", "bench", "serving"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere (functions included), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {target for target in found if target in modules and target != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_module_imports_itself_through_others():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_folder_circles_and_the_core_stays_below_the_kit_and_the_cli():
    edges = {(_part(a), _part(b)) for a, targets in _graph().items() for b in targets if _part(a) != _part(b)}
    edges = {(a, b) for a, b in edges if a and b}  # the package face imports lazily from everywhere
    assert not {(a, b) for a, b in edges if (b, a) in edges}, "two folders import each other"
    upward = sorted((a, b) for a, b in edges if a in CORE and b in ABOVE_THE_CORE)
    assert not upward, f"the core imports the kit, the CLI, a benchmark or an experiment: {upward}"
    assert {a for a, _ in edges} | {b for _, b in edges} <= CORE | ABOVE_THE_CORE, "a folder missing from the plan"


def test_core_folders_import_only_earlier_floors():
    """The order of docs/layout.md: each core folder imports only the ground floor and folders before it."""
    ground = {"errors", "io", "nn", "_version", "_lazy", "environment"}
    floors = ["metrics", "data", "models", "training", "experts", "gates", "routing", "evaluation", "methods"]
    floors += ["stream", "reports"]
    edges = {(_part(a), _part(b)) for a, targets in _graph().items() for b in targets}
    wrong = sorted(
        (a, b)
        for a, b in edges
        if a in floors and b in floors and a != b and floors.index(b) > floors.index(a) or a in ground and b in floors
    )
    assert not wrong, f"a folder imports one on a later floor: {wrong}"
