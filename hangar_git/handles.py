"""Handles a checkout gives out, and how they go stale when it closes.

The arraysets, arrayset accessors, metadata and diff objects of a checkout
are only valid while it is open (the reference hands them out as weakref
proxies "which can be invalidated"). Rather than a proxy in front of every
call, a checkout remembers what it handed out, and on close turns each of
those objects into a stale handle: the object keeps its identity, but every
use of it, attribute access included, raises
:class:`~hangar_git.errors.ClosedError` (a ``ReferenceError``). Nothing on
the read and write paths pays for this while the checkout is open.
"""

from __future__ import annotations

import weakref
from typing import Any, NoReturn

from .errors import ClosedError

#: original class -> its stale counterpart
_STALE: dict[type, type] = {}


def _closed(obj: object) -> NoReturn:
    name = type(obj).__name__
    raise ClosedError(
        f"this {name} belongs to a checkout that was closed; open a new checkout "
        "with Repository.checkout() and take it from there"
    )


class StaleHandle:
    """What a handed-out object becomes when its checkout closes.

    Every attribute and every operation raises :class:`ClosedError`; only
    ``repr`` (for tracebacks) and identity (``is``, hashing) still work.
    """

    def __getattribute__(self, name: str) -> Any:
        if name == "__class__":  # isinstance() and type checks
            return object.__getattribute__(self, name)
        _closed(self)

    def __setattr__(self, name: str, value: object) -> None:
        _closed(self)

    def __delattr__(self, name: str) -> None:
        _closed(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} (checkout closed)>"

    def __getitem__(self, key: object) -> NoReturn:
        _closed(self)

    def __setitem__(self, key: object, value: object) -> NoReturn:
        _closed(self)

    def __delitem__(self, key: object) -> NoReturn:
        _closed(self)

    def __contains__(self, key: object) -> NoReturn:
        _closed(self)

    def __len__(self) -> NoReturn:
        _closed(self)

    def __iter__(self) -> NoReturn:
        _closed(self)

    def __enter__(self) -> NoReturn:
        _closed(self)

    def __exit__(self, *exc: object) -> NoReturn:
        _closed(self)

    def __call__(self, *args: object, **kwargs: object) -> NoReturn:
        _closed(self)

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        _closed(self)


def _stale_class(cls: type) -> type:
    """A subclass of ``cls`` whose every use raises (``isinstance`` checks still
    see the original class, and then meet the error)."""
    stale = _STALE.get(cls)
    if stale is None:
        stale = _STALE[cls] = type(cls.__name__, (StaleHandle, cls), {"__module__": cls.__module__})
    return stale


class HandleSet:
    """The objects one checkout handed out, made stale together by :meth:`close`."""

    def __init__(self) -> None:
        self._objs: weakref.WeakSet[Any] = weakref.WeakSet()

    def add(self, obj: Any) -> Any:
        """Remember ``obj`` (returned, for chaining)."""
        self._objs.add(obj)
        return obj

    def close(self) -> None:
        """Turn every remembered object into a :class:`StaleHandle`."""
        for obj in list(self._objs):
            object.__setattr__(obj, "__class__", _stale_class(type(obj)))
        self._objs.clear()


__all__ = ["HandleSet", "StaleHandle"]
