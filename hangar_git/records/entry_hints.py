"""Where the payload index holds the entries of a samples tree, kept by tree id.

A whole read of an arrayset in a fresh process resolves every digest of
its key table (:mod:`.key_cache`) through the payload index: a binary
search of each segment, about 12 ms per 60,000 samples. The places found
(see :class:`hangar_git.store.placement.Placement`) are kept next to the
key table, in ``<common git dir>/hangar/keys/<tree id hex>.at``, in the
order of the table's digests, so the next whole read takes each entry at
its place and only checks it. The commit that writes a samples tree whole
(and keeps its key table) keeps its places at once (:func:`keep_committed`),
so even the first whole read after it searches nothing; otherwise the
first whole read keeps them. When the tree's records are the rows of one
bulk add whose entries the payload writer committed alone, their places
are taken from what the writer's merge computed and the tree's layout
(:func:`note_layout`, :class:`.placement.PlacedRows`): two gathers, no search.

Local state, never part of history, never needed for correctness, and
treated as untrusted: a file is used only when its size is what its
header says and the tree's sample count allows (checked before anything
is read), its header names the tree asked for and its CRC-32 matches; and
even then it is only a hint: the reader checks that every segment it names
is loaded with the size it had and that each entry found at its place is
the entry of the digest asked for (:func:`.placement.entries_at`). Anything
else is ignored, the entries are searched for, and the file written anew.

The file: a :data:`HEADER` (magic ``HGEA``, version, tree id, sample
count, number of segments), the segments (id and size, int64 each), one
int64 place per sample, then the CRC-32 of everything before it.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..store.checksum import crc32
from . import key_cache

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import pygit2

    from ..store.placement import PlacedRows, Placement
    from ..store.reader import PackReader
    from .key_cache import KeyTable
    from .snapshot import TreeRecords

MAGIC = b"HGEA"
VERSION = 1
#: magic, version, tree id, sample count, segments named
HEADER = struct.Struct("<4sH20sQI")
SEGMENT = struct.Struct("<qq")
CRC = struct.Struct("<I")
#: the most segments a hint may name (the index keeps a handful)
MAX_SEGMENTS = 4096


def hint_path(repo: pygit2.Repository, oid: bytes) -> Path:
    """Where the entry hints of samples tree ``oid`` are kept."""
    path = key_cache.cache_path(repo, oid)
    return path.with_name(path.name + ".at")


def encode(placement: Placement, oid: bytes) -> bytes:
    """The file content of ``placement`` for tree ``oid``."""
    return b"".join(encode_parts(placement, oid))


def encode_parts(placement: Placement, oid: bytes) -> list[bytes | memoryview]:
    """:func:`encode` in parts (the places as they are, no joined copy)."""
    n, k = len(placement.where), len(placement.sids)
    pairs = zip(placement.sids, placement.sizes, strict=True)
    parts: list[bytes | memoryview] = [
        HEADER.pack(MAGIC, VERSION, oid, n, k),
        b"".join(SEGMENT.pack(s, z) for s, z in pairs),
        placement.where.astype("<i8", order="C", copy=False).data.cast("B"),  # no copy
    ]
    crc = 0
    for part in parts:
        crc = crc32(part, crc)
    return [*parts, CRC.pack(crc)]


def parse(data: bytes, oid: bytes, count: int) -> Placement | None:
    """The placement in ``data`` when it is a sound hint file of tree ``oid``
    of ``count`` samples, else None."""
    import numpy as np

    from ..store.placement import Placement

    if len(data) < HEADER.size + CRC.size:
        return None
    magic, version, tree, n, k = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or tree != oid or n != count or k > MAX_SEGMENTS:
        return None
    end = HEADER.size + SEGMENT.size * k + 8 * n
    if len(data) != end + CRC.size:
        return None
    if crc32(memoryview(data)[:end]) != CRC.unpack_from(data, end)[0]:
        return None
    segs = [SEGMENT.unpack_from(data, HEADER.size + SEGMENT.size * i) for i in range(k)]
    # (read-only, in ``data``: no copy, whose fresh pages would each be a page fault)
    where = np.frombuffer(data, "<i8", n, HEADER.size + SEGMENT.size * k).astype(
        np.int64, copy=False
    )
    return Placement(tuple(s for s, _ in segs), tuple(z for _, z in segs), where)


def load(repo: pygit2.Repository, oid: bytes, count: int) -> Placement | None:
    """The kept placement of the ``count`` digests of tree ``oid``, or None
    when absent or not sound (see the module's docstring)."""
    path = hint_path(repo, oid)
    limit = HEADER.size + SEGMENT.size * MAX_SEGMENTS + 8 * count + CRC.size
    data = key_cache.read_file(path, limit)
    placement = None if data is None else parse(data, oid, count)
    if placement is not None:
        key_cache.touch(path)
    return placement


def store(repo: pygit2.Repository, oid: bytes, placement: Placement) -> None:
    """Keep ``placement`` as the entry hints of tree ``oid`` (best effort)."""
    key_cache.write_file(hint_path(repo, oid), encode_parts(placement, oid))


def table_entries(
    reader: PackReader,
    repo: pygit2.Repository,
    oid: bytes | None,
    table: KeyTable,
    hint: Placement | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(found, entries)`` of every digest of ``table`` (the key table of
    samples tree ``oid``), in its order: taken at the places kept for the
    tree when they are sound, else searched for (and their places kept).
    ``hint``: those places, when the caller loaded them already."""
    if hint is None and oid is not None:
        hint = load(repo, oid, len(table))
    found, e, placed = reader.lookup_placed(table.digests, hint)
    if placed is not None and oid is not None and len(e) and found.all():
        store(repo, oid, placed)
    return found, e


def table_places(
    reader: PackReader,
    repo: pygit2.Repository,
    oid: bytes | None,
    table: KeyTable,
    pos: np.ndarray,
) -> np.ndarray | None:
    """The places (:data:`.store.reader.PLACE`) of the entries of the digests
    at positions ``pos`` of ``table`` (the key table of samples tree ``oid``),
    in that order: what a bulk read of them needs. Taken at the places kept
    for the tree when they are sound (:meth:`.store.reader.PackReader.places_at`:
    no array of whole entries made), else as :func:`table_entries` finds
    them; None when some digest of the table is absent."""
    from ..store.reader import take_places

    hint = load(repo, oid, len(table)) if oid is not None else None
    if hint is not None:
        places = reader.places_at(table.digests, hint, pos)
        if places is not None:
            return places
    found, e = table_entries(reader, repo, oid, table, hint)
    return take_places(e, pos) if found.all() else None


#: samples tree id -> (its records' digests joined in their order as
#: written, and the order the tree lays them out in), for the last trees a
#: bulk add wrote whole (see :func:`note_layout`)
_layouts: dict[bytes, tuple[bytes, np.ndarray]] = {}
_layouts_lock = threading.Lock()
#: layouts kept at most, and bytes (the newest is kept whatever its size)
_LAYOUTS_MAX = 4
_LAYOUTS_BYTES = 64 * 1024**2


def note_layout(oid: bytes, joined: bytes, order: np.ndarray) -> None:
    """Note that samples tree ``oid`` lays out the records whose digests are
    ``joined`` (in the order they were written) in ``order`` (its records'
    numbers, in tree order), for :func:`keep_committed` to place them without
    a search. The last few are kept (taken once; a tree built for a diff of
    the staging area is never committed, so their number and size are bounded)."""
    with _layouts_lock:
        _layouts.pop(oid, None)
        _layouts[oid] = (joined, order)
        while len(_layouts) > 1 and (
            len(_layouts) > _LAYOUTS_MAX
            or sum(len(j) + o.nbytes for j, o in _layouts.values()) > _LAYOUTS_BYTES
        ):
            del _layouts[next(iter(_layouts))]  # the oldest


def _take_layout(oid: bytes) -> tuple[bytes, np.ndarray] | None:
    with _layouts_lock:
        return _layouts.pop(oid, None)


def keep_committed(
    reader: PackReader,
    before: TreeRecords,
    after: TreeRecords,
    placed: Sequence[PlacedRows] = (),
) -> None:
    """After a commit from ``before`` to ``after`` (the records of the old
    and the new head): keep the entry hints of every samples tree the
    commit wrote whole, those whose key table it kept (see
    :mod:`.key_cache`; the table is taken from memory, not read back), so
    the first whole read in a later process searches no index. Arraysets
    whose tree did not change, and trees with no table kept (a commit of a
    few changes), cost nothing. A tree whose records are the rows of one
    of ``placed`` (bulk adds the payload writer committed alone, see
    :attr:`.writer.PackWriter.placed_rows`), as :func:`note_layout` noted,
    is placed from it with no search. Best effort: what cannot
    be placed (a payload not in the index, a damaged index) is left to the
    first read, as before."""
    import sqlite3

    from ..errors import IntegrityError

    for name in after.aset_entries:
        if before.aset_oid(name) == after.aset_oid(name):
            continue
        oid = after.samples_oid(name)
        if oid is None:
            continue
        table, layout = key_cache.take_stored(oid), _take_layout(oid)
        if table is None:  # no table kept by this commit
            continue
        rows = None
        if layout is not None and len(layout[1]) == len(table):
            # (the same bytes object, usually: no compare)
            rows = next((p for p in placed if p.joined == layout[0]), None)
        if rows is not None and layout is not None:
            store(after.repo, oid, rows.placement(layout[1]))
            continue
        try:
            table_entries(reader, after.repo, oid, table)
        except (IntegrityError, OSError, sqlite3.Error):  # the commit is made: never fail it
            continue


__all__ = [
    "hint_path",
    "keep_committed",
    "load",
    "note_layout",
    "parse",
    "store",
    "table_entries",
    "table_places",
]
