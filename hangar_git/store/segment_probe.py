"""Small index questions answered without loading every segment.

A writer that stores a handful of payloads (a commit of a few changed
samples) needs to know two things about the committed index: whether any
of those payloads is already stored (to skip it), and which of the newest,
small segments its new segment absorbs (see :func:`.segment_plan.plan_commit`).
Loading every segment answers both, but costs a read and a checksum of the
whole index, which grows with the store. Here:

- :func:`stored_entries` binary-searches each segment's sorted entries in
  place (SQLite incremental blob reads, through a memory map of the file:
  a read deep into a segment of a million entries walks its chain of
  thousands of overflow pages, which costs a ``pread`` each without one).
  An intact segment is searched exactly, so "none of them" means what the
  full load would conclude (a damaged one is one the full load refuses);
  :func:`maybe_stored` says just that.
- :func:`stored_locations` turns what the probe found into locations, each
  believed only once the payload it points at checks out (block checksum,
  item digest): a payload set again to a value already stored is skipped
  without loading the index; a find that does not check out is left to the
  full, checksum-verified load.
- :func:`newest_small_runs` loads (checksum verified) just the newest
  segments a commit of ``count`` entries merges.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import IntegrityError
from .codec import read_block
from .digest import digest_bytes
from .index import ENTRY, IndexTables, Location, Run, index_guard, parse_run

#: the most digests :func:`maybe_stored` searches one by one
PROBE_MAX = 64
#: bytes of the index file :func:`maybe_stored` maps while it searches
#: (SQLite caps it at its own limit, 2 GiB by default)
PROBE_MMAP = 1 << 40

#: segments of at least this many entries are searched through a handle
#: :class:`KeptBlobs` keeps open (the walk of their overflow pages paid once)
KEEP_ENTRIES = 1 << 14

_ROW = ENTRY.itemsize
_KEY = 8  # bytes of an entry's big-endian sort key; its tail follows


def _in_blob(blob: sqlite3.Blob, n: int, digest: bytes) -> bytes | None:
    """The entry (its :data:`.index.ENTRY` bytes) of ``digest`` among the ``n``
    entries of ``blob``, sorted by key; None when it holds none."""
    key, tail = digest[:_KEY], digest[_KEY:]
    lo, hi = 0, n
    while lo < hi:  # the first entry whose key is >= key (big-endian bytes sort as ints)
        mid = (lo + hi) // 2
        blob.seek(mid * _ROW)
        if blob.read(_KEY) < key:
            lo = mid + 1
        else:
            hi = mid
    while lo < n:
        blob.seek(lo * _ROW)
        row = blob.read(_ROW)
        if row[:_KEY] != key:
            return None
        if row[_KEY : _KEY + len(tail)] == tail:
            return row
        lo += 1
    return None


def _map(con: sqlite3.Connection) -> None:
    """Let SQLite read the file of ``con`` through a memory map from now on.

    Left on for the connection (the writer's): unmapping a file whose pages
    were touched costs more than the search, and a later search finds the
    pages mapped already. SQLite still writes through ``write``. The price:
    a disk that fails to read a mapped page stops the process (``SIGBUS``)
    instead of raising ``EIO``; nothing is written through the map, so
    nothing acknowledged is at stake.
    """
    (size,) = con.execute("PRAGMA mmap_size").fetchone()
    if size <= 0:  # else mapped already (SQLite capped the size asked for)
        con.execute(f"PRAGMA mmap_size={PROBE_MMAP}")


class KeptBlobs:
    """Blob handles on the big segments, kept open between a writer's probes.

    Reading deep into a segment walks its chain of overflow pages up to the
    place read; SQLite remembers the walk for as long as the handle stays
    open. A writer that stores one payload per flush (each ``aset[k] = a``
    outside a ``with`` block) would walk a segment of a million entries
    again at every flush; through these handles it walks it once.

    The handles belong to a connection of their own, whose read transaction
    stays open with them: segments are never changed in place (a merge or a
    rewrite gives a new id), so a segment the index still lists reads the
    same through an older snapshot. A segment newer than that snapshot
    starts a new one. The writer closes the handles (:meth:`close`) before
    it loads the whole index and before its closing checkpoint, which the
    open transaction would hold back.

    Parameters
    ----------
    path : pathlib.Path
        The index file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._con: sqlite3.Connection | None = None
        self._blobs: dict[int, sqlite3.Blob] = {}

    def blob(self, sid: int) -> sqlite3.Blob:
        """An open handle on the entries of segment ``sid``."""
        blob = self._blobs.get(sid)
        if blob is not None:
            return blob
        con = self._con
        if con is None:
            con = self._con = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            _map(con)
        try:
            blob = con.blobopen("segments", "entries", sid, readonly=True)
        except sqlite3.OperationalError:
            if not self._blobs:
                raise
            self._end()  # the snapshot predates the segment: start a new one
            blob = con.blobopen("segments", "entries", sid, readonly=True)
        self._blobs[sid] = blob
        return blob

    def _end(self) -> None:
        blobs, self._blobs = self._blobs, {}
        for b in blobs.values():
            b.close()

    def close(self) -> None:
        """Close the handles and their connection (ends its read transaction)."""
        try:
            self._end()
        finally:
            if self._con is not None:
                con, self._con = self._con, None
                con.close()


def close_kept(kept: KeptBlobs | None) -> None:
    """:meth:`KeptBlobs.close` of ``kept``, if any (it reopens when used again)."""
    if kept is not None:
        kept.close()


def stored_entries(
    con: sqlite3.Connection,
    path: Path,
    digests: Sequence[bytes],
    kept: KeptBlobs | None = None,
) -> dict[bytes, np.void] | None:
    """The index entries of those of ``digests`` some segment holds, as its
    bytes stand (not checksum verified: see :func:`stored_locations`).

    Parameters
    ----------
    con : sqlite3.Connection
        A connection to the index.
    path : pathlib.Path
        The index file (for messages).
    digests : sequence of bytes
        At most :data:`PROBE_MAX` digests.
    kept : KeptBlobs, optional
        Where segments of :data:`KEEP_ENTRIES` entries or more are read
        (else through ``con``, each handle closed after the search).

    Returns
    -------
    dict of bytes to numpy.void, or None
        Digest -> its entry (:data:`.index.ENTRY`), for those found (the
        newest segment's, when two hold one); None when a segment has an
        odd length (the full load says what is wrong with it).
    """
    found: dict[bytes, np.void] = {}
    with index_guard(path):
        _map(con)
        con.execute("BEGIN")
        try:
            for sid, n, size in con.execute(
                "SELECT id, n, length(entries) FROM segments ORDER BY id"
            ).fetchall():
                if size != n * _ROW:
                    return None
                if not n:
                    continue
                if kept is not None and n >= KEEP_ENTRIES:
                    _search(kept.blob(sid), n, digests, found)
                    continue
                with con.blobopen("segments", "entries", sid, readonly=True) as blob:
                    _search(blob, n, digests, found)
        finally:
            if con.in_transaction:
                con.execute("COMMIT")
    return found


def _search(
    blob: sqlite3.Blob, n: int, digests: Sequence[bytes], found: dict[bytes, np.void]
) -> None:
    for d in digests:
        row = _in_blob(blob, n, d)
        if row is not None:
            found[d] = np.frombuffer(row, ENTRY)[0]


def maybe_stored(con: sqlite3.Connection, path: Path, digests: Sequence[bytes]) -> bool:
    """False when no segment of the index at ``path`` holds any of ``digests``.

    Parameters
    ----------
    con : sqlite3.Connection
        A connection to the index.
    path : pathlib.Path
        The index file (for messages).
    digests : sequence of bytes
        At most :data:`PROBE_MAX` digests.

    Returns
    -------
    bool
        True when one may be stored (or a segment has an odd length): load
        and search the index properly.
    """
    found = stored_entries(con, path, digests)
    return found is None or bool(found)


def stored_locations(
    tables: IndexTables,
    con: sqlite3.Connection,
    digests: Sequence[bytes],
    kept: KeptBlobs | None = None,
) -> dict[bytes, Location] | None:
    """Where those of ``digests`` already stored sit, without loading the index;
    None when only the full, checksum-verified load can say.

    The probe reads entries without the segment's checksum, so an entry it
    finds is believed only once the payload it points at proves to be the
    one asked for: its block passes its own checksum and the item's bytes
    hash to the digest. A payload stored again after such a look-up is
    skipped for what it is, not written twice; anything else (a large
    payload, a damaged row, a block or item that does not check out) is
    left to the full load, which sets a damaged segment aside.

    Parameters
    ----------
    tables : IndexTables
        The writer's view of the index (block and kind rows, verified).
    con : sqlite3.Connection
        Its connection.
    digests : sequence of bytes
        At most :data:`PROBE_MAX` digests.
    kept : KeptBlobs, optional
        Handles on the big segments (see :func:`stored_entries`).

    Returns
    -------
    dict of bytes to Location, or None
        The locations of those found (empty: none is stored).
    """
    path = tables.store.index_path
    found = stored_entries(con, path, digests, kept)
    if found is None:
        return None
    out: dict[bytes, Location] = {}
    for digest, entry in found.items():
        try:
            loc = tables.location_of(entry)
            if loc.is_large or not _holds(tables, loc, digest):
                return None
        except (IntegrityError, OSError):
            return None
        out[digest] = loc
    return out


def _holds(tables: IndexTables, loc: Location, digest: bytes) -> bool:
    """True when the item at ``loc`` is payload ``digest`` (block checksum and
    item digest verified)."""
    path = tables.store.pack_path(loc.pack)
    fd = os.open(path, os.O_RDONLY)
    try:
        raw = read_block(fd, loc.pack, loc.boff, loc.blen, path)
    finally:
        os.close(fd)
    item = raw[loc.ioff : loc.ioff + loc.ilen]
    return len(item) == loc.ilen and digest_bytes(tables.kind_text(loc.kind), item) == digest


def newest_small_runs(
    con: sqlite3.Connection, path: Path, have: Sequence[Run], count: int
) -> list[Run] | None:
    """The newest segments a commit of ``count`` entries merges, oldest first,
    checksum verified (``have``: runs already loaded, reused); None when one
    of them is damaged (load them all, which sets it aside)."""
    known = {r.sid: r for r in have}
    with index_guard(path):
        con.execute("BEGIN")
        try:
            rows = con.execute("SELECT id, n FROM segments ORDER BY id").fetchall()
            total, pick = count, []
            for sid, n in reversed(rows):  # the rule of plan_commit, on the stated sizes
                if n > 2 * total:
                    break
                pick.append(sid)
                total += n
            runs: list[Run] = []
            for sid in reversed(pick):
                run = known.get(sid)
                if run is None:
                    got = con.execute(
                        "SELECT id, n, chk, entries FROM segments WHERE id=?", (sid,)
                    ).fetchone()
                    parsed = parse_run(*got) if got is not None else "is gone"
                    if isinstance(parsed, str):
                        return None
                    run = parsed
                runs.append(run)
        finally:
            if con.in_transaction:
                con.execute("COMMIT")
    return runs


__all__ = [
    "KEEP_ENTRIES",
    "PROBE_MAX",
    "KeptBlobs",
    "close_kept",
    "maybe_stored",
    "newest_small_runs",
    "stored_entries",
    "stored_locations",
]
