"""The public API is documented in numpydoc form, read from the objects themselves.

The public API is what ``docs/reference/python-api.md`` renders (its
``::: name`` entries, minus the members its ``filters`` leave out, and the
``__all__`` of the modules it documents) plus ``hangar_git.__all__``. For each
class, its public methods, classmethods, staticmethods and properties are
walked, with those inherited from another ``hangar_git`` class, and the
protocol methods a user calls through syntax (``x[k]``, ``len(x)``,
``with x:`` ...). What Python or the standard library provides (``object``,
``Mapping`` mixins, ``NamedTuple`` machinery) is out of scope.

The rules:

* every item has a docstring (a sentence is enough for a property or a
  protocol method);
* a function, method or constructor with parameters besides ``self``/``cls``
  has a ``Parameters`` section naming each of them (``*args`` may be written
  ``args`` or ``*args``);
* a function or method whose return annotation is not ``None`` has a
  ``Returns`` or ``Yields`` section.

Objects whose module needs an optional framework (torch) are checked where
it is installed; a test of their own makes sure none was left out, skipped
where torch is missing unless ``HANGAR_REQUIRE_FRAMEWORKS`` is set (as CI
sets it, running this file again with the frameworks installed).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import hangar_git

ROOT = Path(__file__).resolve().parent.parent
API_PAGE = ROOT / "docs" / "reference" / "python-api.md"

#: protocol methods a user calls through syntax: they need a docstring
PROTOCOL = frozenset(
    {
        "__getitem__",
        "__setitem__",
        "__delitem__",
        "__contains__",
        "__iter__",
        "__len__",
        "__call__",
        "__enter__",
        "__exit__",
    }
)
#: the filters mkdocs.yml applies to every entry
GLOBAL_FILTERS = ("!^_",)
FRAMEWORKS = frozenset({"torch", "tensorflow"})
_SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]+)\n-{3,}[ \t]*$", re.MULTILINE)


# --------------------------------------------------------------------------- the API


@dataclass
class Entry:
    """One ``::: name`` entry of the API page, with the member filters it sets."""

    name: str
    filters: list[str] = field(default_factory=list)


def page_entries(text: str) -> list[Entry]:
    """The ``::: name`` entries of a mkdocstrings page, in page order."""
    entries: list[Entry] = []
    in_filters = False
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("::: "):
            entries.append(Entry(line[4:].strip()))
            in_filters = False
        elif entries and line.startswith(" ") and stripped:
            if stripped == "filters:":
                in_filters = True
            elif in_filters and stripped.startswith("- "):
                entries[-1].filters.append(stripped[2:].strip().strip("\"'"))
            elif not stripped.startswith("#"):
                in_filters = False
        elif stripped:
            in_filters = False
    return entries


def resolve(dotted: str) -> Any:
    """The object a dotted name points to: a module, or an attribute of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as exc:
            if exc.name in FRAMEWORKS:
                raise
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _excluded(name: str, filters: list[str]) -> bool:
    """Whether mkdocstrings' filters (``!regex`` excludes) leave ``name`` out."""
    for flt in [*GLOBAL_FILTERS, *filters]:
        if flt.startswith("!") and re.search(flt[1:], name):
            return True
    return False


def module_members(module: Any) -> list[str]:
    """A documented module's public names: its ``__all__``, or those it defines."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
    ]


def api_names() -> list[Entry]:
    """Every documented top-level object, as an entry (name and filters)."""
    entries = page_entries(API_PAGE.read_text())
    out: list[Entry] = []
    for entry in entries:
        try:
            obj = resolve(entry.name)
        except ModuleNotFoundError:
            out.append(entry)  # needs a framework: sorted out by the caller
            continue
        if inspect.ismodule(obj):
            out.extend(Entry(f"{entry.name}.{n}") for n in module_members(obj))
        else:
            out.append(entry)
    out.extend(Entry(f"hangar_git.{n}") for n in hangar_git.__all__)
    return out


def _ours(obj: Any) -> bool:
    """Whether ``obj`` is the package's (or a synthetic one of this test module)."""
    module = getattr(obj, "__module__", None) or ""
    return module.startswith("hangar_git") or module == __name__


def class_members(cls: type, filters: list[str]) -> Iterator[tuple[str, Any]]:
    """The members of ``cls`` to check: (name, raw attribute), MRO order.

    Members come from ``cls`` and the ``hangar_git`` classes it inherits from;
    a name is taken from the first class of the MRO that defines it.
    """
    seen: set[str] = set()
    for klass in cls.__mro__:
        for name, raw in vars(klass).items():
            if name in seen:
                continue
            seen.add(name)
            if not _ours(klass):
                continue
            if name not in PROTOCOL and _excluded(name, filters):
                continue
            if isinstance(raw, (staticmethod, classmethod)):
                func = raw.__func__
            elif isinstance(raw, property):
                func = raw.fget
            else:
                func = raw
            if not (inspect.isfunction(func) or isinstance(raw, property)):
                continue  # data attributes, NamedTuple fields, nested classes
            yield name, raw


# --------------------------------------------------------------------------- the rules


def sections(doc: str) -> dict[str, str]:
    """A numpydoc docstring's sections: title -> body (up to the next title)."""
    text = inspect.cleandoc(doc)
    found = list(_SECTION.finditer(text))
    out: dict[str, str] = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        out[m.group("title").strip()] = text[m.end() : end]
    return out


def documented_params(doc: str) -> set[str]:
    """The names a ``Parameters`` (or ``Other Parameters``) section documents."""
    names: set[str] = set()
    for title, body in sections(doc).items():
        if title not in ("Parameters", "Other Parameters"):
            continue
        for line in body.splitlines():
            if not line.strip() or line[0].isspace():
                continue  # descriptions are indented under their name
            head = line.split(" : ", 1)[0].rstrip(":").strip()
            for name in head.split(","):
                names.add(name.strip().lstrip("*"))
    return names


def _params(func: Callable[..., Any], skip_first: bool) -> list[str]:
    params = list(inspect.signature(func).parameters.values())
    if skip_first and params:
        params = params[1:]
    return [p.name for p in params]


def _returns_value(func: Callable[..., Any]) -> bool:
    ann = inspect.signature(func, eval_str=False).return_annotation
    return ann not in (inspect.Signature.empty, None, "None")


def problems_of_function(
    qualname: str, func: Callable[..., Any], *, skip_first: bool = False, doc: str | None = None
) -> list[str]:
    """What ``func``'s docstring lacks (``doc`` overrides ``func.__doc__``)."""
    doc = inspect.getdoc(func) if doc is None else doc
    if not doc or not doc.strip():
        return [f"{qualname}: no docstring"]
    out = []
    wanted = _params(func, skip_first)
    if wanted:
        missing = [p for p in wanted if p not in documented_params(doc)]
        if missing:
            out.append(f"{qualname}: Parameters section lacks {', '.join(missing)}")
    if _returns_value(func) and not {"Returns", "Yields"} & set(sections(doc)):
        out.append(f"{qualname}: no Returns/Yields section")
    return out


def _own_docstring(obj: Any) -> str | None:
    """``obj.__doc__`` without inheriting a base class's (``inspect.getdoc`` would)."""
    doc = obj.__doc__
    return doc if isinstance(doc, str) and doc.strip() else None


def problems_of_class(
    qualname: str, cls: type, filters: list[str], seen: set[int] | None = None
) -> list[str]:
    """What ``cls``, its constructor and its members lack.

    A member already in ``seen`` (checked through another class that inherits
    it) is skipped, so that each offender is reported once.
    """
    seen = set() if seen is None else seen
    out: list[str] = []
    doc = _own_docstring(cls)
    if doc is None:
        out.append(f"{qualname}: no docstring")
    init = vars(cls).get("__init__")
    if inspect.isfunction(init) and _ours(cls) and not _generated(init):
        # numpydoc: the constructor's parameters are documented on the class
        init_doc = "\n\n".join(d for d in (doc, _own_docstring(init)) if d)
        if init_doc and _params(init, True):
            missing = [p for p in _params(init, True) if p not in documented_params(init_doc)]
            if missing:
                out.append(f"{qualname}(): Parameters section lacks {', '.join(missing)}")
    for name, raw in class_members(cls, filters):
        if id(raw) in seen:
            continue
        seen.add(id(raw))
        where = f"{qualname}.{name}"
        if isinstance(raw, property):
            if not _own_docstring(raw):
                out.append(f"{where}: no docstring (property)")
        elif name in PROTOCOL:
            func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if not _own_docstring(func):
                out.append(f"{where}: no docstring")
        else:
            func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            skip = not isinstance(raw, staticmethod)
            out.extend(problems_of_function(where, func, skip_first=skip, doc=func.__doc__ or ""))
    return out


def _generated(func: Any) -> bool:
    """Whether a dataclass or NamedTuple wrote this method (not our source)."""
    return getattr(func, "__code__", None) is not None and func.__code__.co_filename in (
        "<string>",
        f"<{func.__module__}>",
    )


def problems_of(qualname: str, obj: Any, filters: list[str], seen: set[int]) -> list[str]:
    """What one documented object lacks (members in ``seen`` already checked)."""
    if inspect.isclass(obj):
        return problems_of_class(qualname, obj, filters, seen)
    if inspect.isfunction(obj):
        return problems_of_function(qualname, obj)
    return []  # data (``__version__``): nothing to document on the object


def collect() -> tuple[list[str], int, list[str]]:
    """(offenders, objects checked, names not importable for want of a framework)."""
    offenders: list[str] = []
    seen: set[int] = set()  # objects and class members already checked
    checked = 0
    unimportable: list[str] = []
    for entry in api_names():
        try:
            obj = resolve(entry.name)
        except ModuleNotFoundError as exc:
            if exc.name not in FRAMEWORKS:
                raise
            unimportable.append(entry.name)
            continue
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        checked += 1
        offenders.extend(problems_of(entry.name, obj, entry.filters, seen))
    return offenders, checked, unimportable


# --------------------------------------------------------------------------- tests


def test_api_page_lists_objects() -> None:
    names = [e.name for e in page_entries(API_PAGE.read_text())]
    assert "hangar_git.repository.Repository" in names
    assert len(names) > 30


def test_public_api_is_documented() -> None:
    """Everything importable here (the framework adapters where installed)."""
    offenders, checked, _ = collect()
    assert checked > 40
    assert not offenders, f"{len(offenders)} undocumented:\n" + "\n".join(offenders)


def test_framework_adapters_are_checked() -> None:
    """With torch installed (CI installs it), the check above left nothing out."""
    if not os.environ.get("HANGAR_REQUIRE_FRAMEWORKS"):
        pytest.importorskip("torch", reason="pip install torch==2.13.0 to check its adapter")
    _, _, unimportable = collect()
    assert not unimportable
    assert any(".torch_loader." in e.name for e in api_names())


# the checker itself flags what it should


def _bad(n: int, *rest: str, flag: bool = False) -> int:
    """Add things.

    Parameters
    ----------
    n : int
        A number.
    """
    return n


def _good(n: int, *rest: str, flag: bool = False) -> int:
    """Add things.

    Parameters
    ----------
    n : int
        A number.
    *rest
        Words.
    flag : bool, optional
        A switch.

    Returns
    -------
    int
        ``n``.
    """
    return n


class _Sample:
    """A sample class.

    Parameters
    ----------
    size : int
        The size.
    """

    def __init__(self, size: int, colour: str) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    @property
    def area(self) -> int:
        return self.size

    @staticmethod
    def make(size: int) -> _Sample:
        """Make one."""
        return _Sample(size, "red")

    def _hidden(self, x: int) -> int:
        return x


def test_checker_flags_missing_sections() -> None:
    found = problems_of_function("bad", _bad)
    assert found == [
        "bad: Parameters section lacks rest, flag",
        "bad: no Returns/Yields section",
    ]
    assert problems_of_function("good", _good) == []
    assert problems_of_function("none", lambda: 1) == ["none: no docstring"]


def test_checker_walks_class_members() -> None:
    found = sorted(problems_of_class("S", _Sample, []))
    assert found == [
        "S(): Parameters section lacks colour",
        "S.__len__: no docstring",
        "S.area: no docstring (property)",
        "S.make: Parameters section lacks size",
        "S.make: no Returns/Yields section",
    ]


def test_page_entries_read_filters() -> None:
    text = (
        "::: a.B\n    options:\n      filters:\n        # why\n"
        '        - "!^stage_"\n        - "!^x$"\n\n::: a.C\n'
    )
    assert page_entries(text) == [Entry("a.B", ["!^stage_", "!^x$"]), Entry("a.C")]
