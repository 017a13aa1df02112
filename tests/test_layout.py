"""The folder tree tells the event's journey: packages import only the packages below them.

    core < ingress < delivery < mapping < sync < ops < console < app, local < cli, bench

`workers/` is RQ wiring on top of the stages (below cli), and no module of `hub` imports it but
the CLI. No two modules import each other, directly or around a cycle, even from inside a
function: a lazy import is how a cycle hides.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# package -> the packages its modules may import (besides themselves)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "ingress": {"core"},
    "delivery": {"core"},
    "mapping": {"core", "ingress", "delivery"},
    "sync": {"core", "ingress", "delivery", "mapping"},
    "ops": {"core", "ingress", "delivery", "mapping", "sync"},
    "console": {"core", "ingress", "delivery", "mapping", "sync", "ops"},
    "app": {"core", "ingress", "delivery", "mapping", "sync", "ops", "console"},
    "local": {"core", "ingress", "delivery", "mapping", "sync", "ops", "console", "app"},
    "workers": {"core", "ingress", "delivery", "mapping", "sync", "ops"},
    "bench": {"core", "ingress", "delivery", "mapping", "sync", "ops", "console", "app", "local"},
    "cli": {
        "core",
        "ingress",
        "delivery",
        "mapping",
        "sync",
        "ops",
        "console",
        "app",
        "local",
        "bench",
        "workers",
    },
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "workers":
        return "workers"
    if parts[0] != "hub" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ALLOWED else None


def imports_of(path: Path) -> set[str]:
    """Every hub or workers module `path` imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from hub.core import logs` imports the module hub.core.logs
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("hub", "workers")}


def import_graph() -> dict[str, set[str]]:
    files = sorted((ROOT / "hub").rglob("*.py")) + sorted((ROOT / "workers").rglob("*.py"))
    modules = {module_name(path): path for path in files}
    return {
        name: {target for target in imports_of(path) if target in modules and target != name}
        for name, path in modules.items()
    }


def test_no_package_imports_a_higher_one() -> None:
    wrong = []
    for module, targets in import_graph().items():
        source = package_of(module)
        for target in sorted(targets):
            dest = package_of(target)
            if source and dest and dest != source and dest not in ALLOWED[source]:
                wrong.append(f"{module} imports {target} ({source} may not import {dest})")
    assert wrong == [], "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles: list[str] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == [], "\n".join(cycles)


def test_every_package_says_what_it_owns_and_may_import() -> None:
    missing = []
    for package in ("core", "ingress", "delivery", "mapping", "sync", "ops", "console", "local"):
        doc = ast.get_docstring(ast.parse((ROOT / "hub" / package / "__init__.py").read_text()))
        if not doc or "May import" not in doc:
            missing.append(package)
    assert missing == [], f"packages without a docstring naming what they may import: {missing}"


def test_the_checks_catch_an_upward_import(tmp_path: Path) -> None:
    """The graph sees imports made inside functions, where cycles hide."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from hub.ops import replay\n    import workers.jobs\n")
    assert imports_of(module) == {"hub.ops", "hub.ops.replay", "workers.jobs"}


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by file name (no packages under tests/): two files of the same
    name in different folders break collection of the whole suite."""
    seen: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    clashes = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert clashes == {}, f"rename one of each: {clashes}"
