"""Import layers of services/ and libs/: no circles, nothing importing upwards, nothing importing tests.

Every import counts, also those inside functions and under TYPE_CHECKING: a lazy import
hides a circle from the interpreter, not from whoever reads or moves the code.
The layers, top to bottom: the CLI and the supervisor (services.cli, services.supervisor,
and the dev tools services.bench) start everything; each service (services.gateway,
services.writer, ...) and the shared service modules (services.runfile, services.admin, ...);
the library (forgeline). Tests sit beside all of them and nothing imports them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"services": ROOT / "services", "forgeline": ROOT / "libs" / "forgeline"}
# Whoever imports these starts things: only they (and the dev tools) may import them.
TOP = ("services.cli", "services.supervisor")
DEV = ("services.bench", "services.devtools")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for prefix, base in PACKAGES.items():
        for path in base.rglob("*.py"):
            parts = [prefix, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every dotted name ``module`` imports (``from a import b`` gives ``a.b``), with its line."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module → the modules of ``modules`` it imports (a name resolves to its longest known prefix)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for name, _ in _imported_names(module, path):
            while name not in modules and "." in name:
                name = name.rpartition(".")[0]
            if name in modules and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_cycle_finder_finds_circles_and_only_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}, "g": set()}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["e", "f"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_import_graph_reads_lazy_relative_and_type_checking_imports(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f() -> None:\n    from pkg import b\n")
    lazy = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n"
    (tmp_path / "pkg" / "b.py").write_text(lazy)
    modules = {"pkg": tmp_path / "pkg" / "__init__.py", "pkg.a": tmp_path / "pkg/a.py", "pkg.b": tmp_path / "pkg/b.py"}
    graph = import_graph(modules)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_no_circles_among_the_modules_of_services_and_libs() -> None:
    found = cycles(import_graph(_modules()))
    assert not found, "import circles (move the shared part into a module both import):\n" + "\n".join(
        " ⇄ ".join(c) for c in found
    )


def test_services_and_libs_never_import_tests() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for module, path in _modules().items()
        for name, line in _imported_names(module, path)
        if name == "tests" or name.startswith("tests.")
    ]
    assert not found, "services/ and libs/ must not import the test suite (use services/devtools):\n" + "\n".join(found)


def test_no_import_runs_back_up() -> None:
    """The library imports no service; a service imports neither the CLI nor the supervisor."""
    graph = import_graph(_modules())
    upward = [
        f"{module} → {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if (module.startswith("forgeline") and target.startswith("services"))
        or (_under(target, TOP) and not _under(module, TOP + DEV))
    ]
    assert not upward, "imports that run back up a layer:\n" + "\n".join(upward)
