"""Which samples a dataloader reads: its arguments checked, its keys chosen.

Sample order
------------
When ``keys`` is given the samples come in that order. Otherwise the selection
is every key present in *all* the arraysets, sorted: int keys ascending, then
str keys ascending. The order depends only on the commit, never on how this
machine stores payloads, so ``index_range`` picks the same samples everywhere.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..arrayset import ArraysetDataReader
from ..errors import MissingPayloadError
from ..naming import Key, decode_key, encode_key

if TYPE_CHECKING:
    from ..records.key_cache import KeyTable

#: how many keys an error message lists before it summarises the rest
_SHOW_KEYS = 10


def _sort_key(key: Key) -> tuple[bool, Any]:
    return (isinstance(key, str), key)


def _show(keys: Sequence[Key]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_SHOW_KEYS])
    if len(keys) > _SHOW_KEYS:
        shown += f", ... ({len(keys) - _SHOW_KEYS} more)"
    return shown


def as_arrayset_list(arraysets: object) -> list[ArraysetDataReader]:
    """``arraysets`` (one accessor, or a list or tuple of them) as a list.

    Raises
    ------
    TypeError
        If an item is not an arrayset accessor, or comes from a write-enabled
        checkout.
    ValueError
        If no arrayset is given, or the arraysets come from different
        repositories or commits.
    """
    from ..checkout import ReaderCheckout

    if isinstance(arraysets, ArraysetDataReader):
        asets = [arraysets]
    elif isinstance(arraysets, (list, tuple)):
        asets = list(arraysets)
    else:
        raise TypeError(
            "arraysets must be an arrayset (co.arraysets['name']) or a list/tuple of "
            f"them, not {type(arraysets).__name__}"
        )
    if not asets:
        raise ValueError("no arraysets given: pass at least one")
    origin: tuple[str, str] | None = None
    for aset in asets:
        if not isinstance(aset, ArraysetDataReader):
            raise TypeError(f"expected an arrayset accessor, not {type(aset).__name__}: {aset!r}")
        co = aset.checkout
        co.check_open()
        if aset.iswriteable or not isinstance(co, ReaderCheckout):
            raise TypeError(
                f"arrayset {aset.name!r} comes from a write-enabled checkout; dataloaders "
                "read committed data only: open a read checkout with "
                "repo.checkout(commit=...) or repo.checkout(branch=...)"
            )
        here = (co.repository.path, co.commit_hash)
        if origin is None:
            origin = here
        elif here != origin:
            raise ValueError(
                "all arraysets must come from read checkouts of the same repository and "
                f"commit: {aset.name!r} is at {here[1][:12]} of {here[0]}, the first at "
                f"{origin[1][:12]} of {origin[0]}"
            )
    return asets


def select_keys(
    asets: Sequence[ArraysetDataReader],
    keys: Iterable[Key] | None,
    index_range: slice | None,
    records: Sequence[dict[str, bytes]],
) -> tuple[list[Key], list[str]]:
    """The keys a loader reads, in order (see the module docstring), and their
    encodings; ``records`` maps, per arrayset, encoded key -> payload digest.

    Raises
    ------
    TypeError
        If ``keys`` is a single str or int, or ``index_range`` is not a slice.
    ValueError
        If an item of ``keys`` cannot be a sample key (e.g. a bool or a negative
        int), or the selection is empty.
    KeyError
        If a given key is missing from one of the arraysets.
    """
    if index_range is not None and not isinstance(index_range, slice):
        raise TypeError(f"index_range must be a slice, not {type(index_range).__name__}")
    if keys is not None:
        if isinstance(keys, (str, bytes, int, np.integer)):
            raise TypeError("keys must be a sequence of sample keys, not a single key")
        # numpy integers (np.arange, an index array) are int keys
        selected = [int(k) if isinstance(k, np.integer) else k for k in keys]
        # ValueError for anything that cannot be a key (bool, -1, '')
        encs = [encode_key(k) for k in selected]
        for aset, have in zip(asets, records, strict=True):
            absent = [k for k, e in zip(selected, encs, strict=True) if e not in have]
            if absent:
                raise KeyError(
                    f"{len(absent)} of the given keys are not in arrayset {aset.name!r}: "
                    f"{_show(absent)}"
                )
    else:
        common = set(records[0]).intersection(*records[1:])
        if any(len(r) != len(common) for r in records):
            counts = ", ".join(f"{a.name!r}: {len(r)}" for a, r in zip(asets, records, strict=True))
            warnings.warn(
                f"the arraysets hold different keys ({counts}); only the {len(common)} "
                "keys present in all of them are used",
                UserWarning,
                stacklevel=4,
            )
        # int keys ascending, then str keys ascending (decode_key, inlined)
        ints = sorted(int(e[2:]) for e in common if e.startswith("i:"))
        strs = sorted(e[2:] for e in common if e.startswith("s:"))
        if len(ints) + len(strs) != len(common):  # pragma: no cover - records are checked
            for e in common:
                decode_key(e)  # CorruptRecordError naming the malformed key
        selected = [*ints, *strs]
        if index_range is not None:
            selected = selected[index_range]
        encs = [f"i:{k}" if type(k) is int else f"s:{k}" for k in selected]
    if not selected:
        raise ValueError("no samples selected: the arraysets, keys or index_range are empty")
    return selected, encs


class TableSelection(NamedTuple):
    """The default selection of :func:`select_keys`, taken from key tables."""

    keys: list[int]
    encs: list[str]
    #: per arrayset: the digest of each selected key
    digests: list[list[bytes]]
    #: per arrayset: its key table, and the position in it of each selected key
    tables: list[KeyTable]
    positions: np.ndarray


def table_selection(
    asets: Sequence[ArraysetDataReader], index_range: slice | None
) -> TableSelection | None:
    """:func:`select_keys`'s selection with no ``keys`` given, when every
    arrayset holds the same int keys: from the arraysets' key tables (the
    records as arrays; see :mod:`hangar_git.records.key_cache`), with no
    dict of the records and no key parsed one by one. None when that does
    not apply (str keys, arraysets holding different keys, an empty
    selection): :func:`select_keys` then decides, warns or raises."""
    if index_range is not None and not isinstance(index_range, slice):
        return None
    tables = []
    for aset in asets:
        records = aset.checkout.view.base_samples(aset.name)
        if records is None:
            return None
        table = records.key_table()
        if table.ints is None:
            return None
        tables.append(table)
    ints = tables[0].ints
    assert ints is not None
    if not all(
        t.ints is not None and len(t) == len(ints) and np.array_equal(t.ints, ints)
        for t in tables[1:]
    ):
        return None
    order = tables[0].dense_order()  # keys 0 .. n-1: their places at once
    if order is None:
        order = np.argsort(ints, kind="stable")  # int keys ascending, as select_keys
    positions = order if index_range is None else order[index_range]
    if not len(positions):
        return None
    keys: list[int] = ints[positions].tolist()
    encs = ("i:" + "\x00i:".join(map(str, keys))).split("\x00")
    from ..records.key_cache import DIGEST

    digests = [np.frombuffer(t.digests, f"V{DIGEST}")[positions].tolist() for t in tables]
    return TableSelection(keys, encs, digests, tables, positions)


def check_local(
    asets: Sequence[ArraysetDataReader], keys: Sequence[Key], digests: Sequence[Sequence[bytes]]
) -> None:
    """Raise if any selected sample's payload is not stored on this machine;
    ``digests`` holds, per arrayset, the payload digest of each of ``keys``.

    Raises
    ------
    MissingPayloadError
        Listing, per arrayset, the selected keys whose payloads are remote
        references; its ``remote_keys`` attribute maps arrayset name -> keys.
    """
    missing: dict[str, list[Key]] = {}
    for aset, digs in zip(asets, digests, strict=True):
        absent = aset.checkout.payloads.missing(set(digs))
        if absent:
            remote = [k for k, d in zip(keys, digs, strict=True) if d in absent]
            missing[aset.name] = sorted(set(remote), key=_sort_key)
    if missing:
        parts = "; ".join(f"{name!r}: {_show(ks)}" for name, ks in missing.items())
        total = sum(len(ks) for ks in missing.values())
        err = MissingPayloadError(
            f"{total} selected samples are remote references whose payloads are not on "
            f"this machine ({parts}); fetch them first (`git hangar fetch-data`, "
            "Repository.remote.fetch_data) or leave them out with `keys=`"
        )
        err.remote_keys = missing  # type: ignore[attr-defined]
        raise err


__all__ = ["TableSelection", "as_arrayset_list", "check_local", "select_keys", "table_selection"]
