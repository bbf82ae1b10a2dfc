"""runtime/ has no import cycles between its modules.

The graph counts every ``import`` of a ``runtime.*`` module, at the top of a file or inside a
function (a lazy import is still a dependency, and the old ``variants`` <-> ``voices`` cycle ran
through two lazy ones), but not those under ``if TYPE_CHECKING:``, which never run. Importing
``runtime.a.b`` also runs ``runtime/a/__init__.py``, so it counts as an edge to ``runtime.a`` too
(unless the importer itself lives in ``runtime.a``).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module_names(root: Path, package: str) -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name the file imports, lazily or not, outside ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (see the module docstring for the rules)."""
    modules = _module_names(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        edges: set[str] = set()
        for target in _imports(ast.parse(path.read_text(encoding="utf-8")), name,
                               path.name == "__init__.py"):
            parts = target.split(".")
            for i in range(2, len(parts) + 1):  # runtime.a, runtime.a.b, ... (not runtime itself)
                candidate = ".".join(parts[:i])
                if candidate in modules and candidate not in own_packages:
                    edges.add(candidate)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                strongconnect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return [_path_through(graph, component) for component in components]


def _path_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A closed import path inside one component, for the failure message."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if nxt not in parents:
                parents[nxt] = node
                frontier.append(nxt)
    return component


def test_runtime_has_no_import_cycles() -> None:
    graph = import_graph(REPO, "runtime")
    assert graph.get("runtime.http.app"), "the graph found no imports"
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in runtime/:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_voices_depend_on_variants_not_the_reverse() -> None:
    graph = import_graph(REPO, "runtime")
    assert "runtime.families.piper.variants" in graph["runtime.families.piper.voices"]
    assert "runtime.families.piper.voices" not in graph["runtime.families.piper.variants"]


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_cycle_through_lazy_imports_is_found(tmp_path: Path) -> None:
    """The shape of the old variants <-> voices cycle: each imported the other inside a function."""
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/voices.py": "def with_variant():\n    from pkg.variants import find_variant\n",
        "pkg/variants.py": "def main():\n    from pkg.voices import bundled_voice\n",
        "pkg/settings.py": "",
    })
    assert find_cycles(import_graph(tmp_path, "pkg")) == [["pkg.variants", "pkg.voices", "pkg.variants"]]


def test_relative_and_package_imports_count_type_checking_does_not(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "from pkg.sub.base import X\n",
        "pkg/sub/base.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.top import Y\nX = 1\n",
        "pkg/top.py": "from .sub import base\n",
        "pkg/other.py": "import pkg.top\nfrom pkg.sub.base import X\n",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.top"] == {"pkg.sub", "pkg.sub.base"}
    assert graph["pkg.sub.base"] == set()
    assert graph["pkg.sub"] == {"pkg.sub.base"}  # its own package is not an edge
    assert graph["pkg.other"] == {"pkg.top", "pkg.sub", "pkg.sub.base"}
    assert find_cycles(graph) == []
    _write(tmp_path, {"pkg/sub/base.py": "from pkg.top import Y\n"})
    assert find_cycles(import_graph(tmp_path, "pkg")) == [["pkg.sub", "pkg.sub.base", "pkg.top", "pkg.sub"]]
