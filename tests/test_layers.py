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
        "hangar_git.checkout_reader",
        "hangar_git.repository",
        "hangar_git.diff",
        "hangar_git.merge",
        "hangar_git.cli",
        "hangar_git.remotes",
    ),
    "hangar_git.records": (
        "hangar_git.checkout",
        "hangar_git.checkout_reader",
        "hangar_git.repository",
        "hangar_git.userdiff",
        "hangar_git.diff",
        "hangar_git.merge",
        "hangar_git.cli",
        "hangar_git.remotes",
    ),
    "hangar_git.diff": (
        "hangar_git.checkout",
        "hangar_git.checkout_reader",
        "hangar_git.repository",
        "hangar_git.cli",
    ),
    "hangar_git.merge": (
        "hangar_git.checkout",
        "hangar_git.checkout_reader",
        "hangar_git.repository",
        "hangar_git.cli",
    ),
    "hangar_git.commits": (
        "hangar_git.checkout",
        "hangar_git.checkout_reader",
        "hangar_git.repository",
        "hangar_git.cli",
    ),
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


# ---- objects talk through public methods, not each other's private attributes ----

#: underscore names that are public API of their objects (namedtuples)
_PUBLIC_UNDERSCORE = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in _PUBLIC_UNDERSCORE


def reach_ins(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of each use of another object's private attribute in ``source``.

    ``x._name`` counts unless ``x`` is ``self``, ``cls``, ``super()`` or a class
    of the module itself; ``from .m import _name`` counts unless ``_name`` is
    a private submodule of the importer's own package (``from . import _m``).
    Imports under ``if TYPE_CHECKING:`` count too: they name private types.
    """
    tree = ast.parse(source)
    own = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            v = node.value
            if isinstance(v, ast.Name) and (v.id in ("self", "cls") or v.id in own):
                continue
            if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "super":
                continue
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").startswith("hangar_git")
        ):
            where = "." * node.level + (node.module or "")
            for a in node.names:
                if _is_private(a.name) and not (node.level == 1 and node.module is None):
                    found.append((node.lineno, f"from {where} import {a.name}"))
    return found


#: module -> reach-ins still allowed there, each with the reason it stays.
#: Remove an entry when its reach-in goes (test_reach_in_allow_list_is_current
#: insists); never add one without a reason.
_OWN_JOURNAL = "same class: Journal's own classmethods and sync() setting up a Journal they made"
ALLOWED_REACH_INS: dict[str, dict[str, str]] = {
    "hangar_git.io_formats.scan": {
        "fmt._read_array_header": "numpy has no public reader of version 3.0 .npy headers",
    },
    "hangar_git.records.staging": {
        "fresh._replay_bytes": _OWN_JOURNAL,
        "j._fd": _OWN_JOURNAL,
        "j._replay": _OWN_JOURNAL,
        "j._set_aside": _OWN_JOURNAL,
        "j._size": _OWN_JOURNAL,
    },
}


def _reach_ins_by_module() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        texts = {t for _, t in reach_ins(path.read_text())}
        if texts:
            out[module] = texts
    return out


def test_no_object_reaches_into_another_ones_private_attributes():
    wrong = [
        f"{m}: {t}"
        for m, texts in _reach_ins_by_module().items()
        for t in sorted(texts)
        if t not in ALLOWED_REACH_INS.get(m, {})
    ]
    assert not wrong, "use (or add) a public method or a small Protocol instead:\n" + "\n".join(
        wrong
    )


def test_reach_in_allow_list_is_current():
    found = _reach_ins_by_module()
    stale = [
        f"{m}: {t}"
        for m, allowed in ALLOWED_REACH_INS.items()
        for t in allowed
        if t not in found.get(m, set())
    ]
    assert not stale, "these reach-ins are gone: drop them from ALLOWED_REACH_INS\n" + "\n".join(
        stale
    )


def test_the_reach_in_finder_finds_them():
    src = (
        "from .m import _f, g\n"
        "from hangar_git.checkout import _LIVE\n"
        "from . import _private_module\n"
        "class A:\n"
        "    _memo = None\n"
        "    def f(self, other):\n"
        "        self._x = A._memo\n"
        "        super()._g()\n"
        "        return other._y, self._co._z, t._replace(a=1)\n"
    )
    assert [t for _, t in reach_ins(src)] == [
        "from .m import _f",
        "from hangar_git.checkout import _LIVE",
        "other._y",
        "self._co._z",
    ]
