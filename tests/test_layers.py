"""The layers of DESIGN.md, read from the source: no runtime import cycle in
the package, and each layer imports only the layers below it.

Imports are read with :mod:`ast`, those inside functions included, those
under ``if TYPE_CHECKING:`` left out (they never run). A module's import of
its own package's ``__init__`` is not an edge (Python runs the package first
anyway).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "hangar_git"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: the tree without ``if TYPE_CHECKING:`` bodies."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in MODULES}
    if node.level:
        is_pkg = MODULES[module].name == "__init__.py"
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_pkg else 0)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    if not prefix.startswith("hangar_git"):
        return set()
    found = set()
    for a in node.names:
        sub = f"{prefix}.{a.name}"
        found.add(sub if sub in MODULES else prefix)
    return {t for t in found if t in MODULES}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports at run time."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges: set[str] = set()
        for node in runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _targets(module, node)
        # a package's own __init__ is no edge of its modules
        graph[module] = {t for t in edges if t != module and not module.startswith(t + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (found := visit(n)) is not None:
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)) is not None:
            return found
    return None


def test_no_runtime_import_cycle_in_the_package():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


#: layer -> modules (prefixes) it must never import at run time
FORBIDDEN = {
    "hangar_git.store": (
        "hangar_git.records",
        "hangar_git.checkout",
        "hangar_git.repository",
        "hangar_git.diff",
        "hangar_git.merge",
        "hangar_git.cli",
        "hangar_git.remotes",
    ),
    "hangar_git.records": (
        "hangar_git.checkout",
        "hangar_git.repository",
        "hangar_git.userdiff",
        "hangar_git.diff",
        "hangar_git.merge",
        "hangar_git.cli",
        "hangar_git.remotes",
    ),
    "hangar_git.diff": ("hangar_git.checkout", "hangar_git.repository", "hangar_git.cli"),
    "hangar_git.merge": ("hangar_git.checkout", "hangar_git.repository", "hangar_git.cli"),
    "hangar_git.commits": ("hangar_git.checkout", "hangar_git.repository", "hangar_git.cli"),
}


def test_layers_import_only_what_is_below_them():
    graph = import_graph()
    wrong = [
        f"{m} -> {t}"
        for m, targets in graph.items()
        for layer, banned in FORBIDDEN.items()
        if m == layer or m.startswith(layer + ".")
        for t in targets
        if any(t == b or t.startswith(b + ".") for b in banned)
    ]
    assert not wrong, wrong
