"""The shape of ``hangar_git.cli``: thin command modules over shared helpers, no cycle.

Read from the source with :mod:`ast` (imports under ``if TYPE_CHECKING:``
aside, as they never run): the command modules import only the helper
modules (``common``, ``render``, ``complete``) and the library, never each
other nor the package ``__init__``; ``render`` imports nothing of the CLI,
``common`` only ``render``, ``complete`` only ``common``; so the imports
inside the package form no cycle. Each module stays under 600 lines and each
function under 80.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from test_layers import runtime_nodes

CLI = Path(__file__).resolve().parents[1] / "hangar_git" / "cli"
HELPERS = {"common", "render", "complete"}
ALLOWED = {
    "render": set(),
    "common": {"render"},
    "complete": {"common"},
    "__main__": {"__init__"},
}
MODULES = sorted(p.stem for p in CLI.glob("*.py"))


def cli_imports(module: str) -> set[str]:
    """The modules of ``hangar_git.cli`` that ``module`` imports at run time."""
    tree = ast.parse((CLI / f"{module}.py").read_text())
    found: set[str] = set()
    for node in runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import a, b
                found.update(a.name if a.name in MODULES else "__init__" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[:2] == ["hangar_git", "cli"]:
                found.add(parts[2] if len(parts) > 2 else "__init__")
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[:2] == ["hangar_git", "cli"]:
                    found.add(parts[2] if len(parts) > 2 else "__init__")
    found.discard(module)
    return found


def test_the_package_has_its_modules():
    assert {"__init__", "common", "render", "staging", "history", "data", "remotes", "maint"} <= (
        set(MODULES)
    )


@pytest.mark.parametrize("module", [m for m in MODULES if m != "__init__"])
def test_modules_import_only_the_helpers(module):
    allowed = ALLOWED.get(module, HELPERS)
    assert cli_imports(module) <= allowed, f"{module} imports {cli_imports(module) - allowed}"


def test_no_import_cycle():
    from hangar_git.cli import COMMANDS_AT

    graph = {m: cli_imports(m) for m in MODULES}
    # the package imports a command module when one of its commands is looked
    # up (COMMANDS_AT): an edge too, and every command module has one
    named = {where.partition(":")[0] for where in COMMANDS_AT.values()}
    assert named == set(MODULES) - {"__init__", "__main__", "lazy"} - HELPERS
    graph["__init__"] |= named
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*path, m])}")
        if state.get(m) == 2:
            return
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            visit(n, [*path, m])
        state[m] = 2

    for m in MODULES:
        visit(m, [])


@pytest.mark.parametrize("module", MODULES)
def test_small_modules_and_functions(module):
    text = (CLI / f"{module}.py").read_text()
    assert len(text.splitlines()) < 600
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - first + 1
            assert length < 80, f"{module}.{node.name}: {length} lines"
