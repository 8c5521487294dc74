"""The size limits of the house style, read from the source: every module of
the package is at most 600 lines long and every function or method (nested
ones included) at most 80 lines, from its ``def`` to its last line,
docstring included. Sizes are read with :mod:`ast`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "hangar_git"

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """``(qualified name, lines)`` of each function of ``source`` longer than ``limit``."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}."
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert child.end_lineno is not None
                size = child.end_lineno - child.lineno + 1
                if size > limit:
                    found.append((name[:-1], size))
            visit(child, name)

    visit(ast.parse(source), "")
    return found


def _sources() -> dict[str, str]:
    return {str(p.relative_to(PKG.parent)): p.read_text() for p in sorted(PKG.rglob("*.py"))}


def test_modules_are_at_most_600_lines():
    long = {
        path: n
        for path, text in _sources().items()
        if (n := len(text.splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them): {long}"


def test_functions_are_at_most_80_lines():
    long = [
        f"{path}: {name} ({n} lines)"
        for path, text in _sources().items()
        for name, n in long_functions(text)
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (extract helpers):\n" + "\n".join(
        long
    )


def test_the_measure_finds_a_long_function():
    body = "".join(f"    x{i} = {i}\n" for i in range(80))
    src = (
        "def short():\n    return 1\n\n"
        f"class A:\n    def long(self):\n{body.replace('    ', '        ')}"
        f"        def inner():\n{body.replace('    ', '            ')}"
        "            return 0\n"
    )
    # long: def + 80 lines + inner's 82; inner: def + 80 + return
    assert long_functions(src) == [("A.long", 163), ("A.long.inner", 82)]
    assert long_functions("def f():\n" + body) == [("f", 81)]
    assert long_functions("def f():\n" + body, limit=81) == []
