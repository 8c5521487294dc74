"""Small index questions answered without loading every segment.

A writer that stores a handful of payloads (a commit of a few changed
samples) needs to know two things about the committed index: whether any
of those payloads is already stored (to skip it), and which of the newest,
small segments its new segment absorbs (see :func:`.segment_plan.plan_commit`).
Loading every segment answers both, but costs a read and a checksum of the
whole index, which grows with the store. Here:

- :func:`maybe_stored` binary-searches each segment's sorted entries in
  place (SQLite incremental blob reads, through a memory map of the file:
  a read deep into a segment of a million entries walks its chain of
  thousands of overflow pages, which costs a ``pread`` each without one).
  It says "none of them" only when no segment holds any of the digests as
  its bytes stand; a "maybe" is left to the full, checksum-verified load.
  An intact segment is searched exactly, and a damaged one is one the full
  load would refuse anyway, so "none" means what the full load would
  conclude.
- :func:`newest_small_runs` loads (checksum verified) just the newest
  segments a commit of ``count`` entries merges.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from .index import ENTRY, Run, index_guard, parse_run

#: the most digests :func:`maybe_stored` searches one by one
PROBE_MAX = 64
#: bytes of the index file :func:`maybe_stored` maps while it searches
#: (SQLite caps it at its own limit, 2 GiB by default)
PROBE_MMAP = 1 << 40

_ROW = ENTRY.itemsize
_KEY = 8  # bytes of an entry's big-endian sort key; its tail follows


def _in_blob(blob: sqlite3.Blob, n: int, digest: bytes) -> bool:
    """True when the ``n`` entries of ``blob``, sorted by key, hold ``digest``."""
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
        row = blob.read(_KEY + len(tail))
        if row[:_KEY] != key:
            return False
        if row[_KEY:] == tail:
            return True
        lo += 1
    return False


def _map(con: sqlite3.Connection) -> None:
    """Let SQLite read the file of ``con`` through a memory map from now on.

    Left on for the connection (the writer's): unmapping a file whose pages
    were touched costs more than the search, and a later search finds the
    pages mapped already. SQLite still writes through ``write``.
    """
    (size,) = con.execute("PRAGMA mmap_size").fetchone()
    if size <= 0:  # else mapped already (SQLite capped the size asked for)
        con.execute(f"PRAGMA mmap_size={PROBE_MMAP}")


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
    with index_guard(path):
        _map(con)
        con.execute("BEGIN")
        try:
            for sid, n, size in con.execute(
                "SELECT id, n, length(entries) FROM segments ORDER BY id"
            ).fetchall():
                if size != n * _ROW:
                    return True  # the full load says what is wrong with it
                if not n:
                    continue
                with con.blobopen("segments", "entries", sid, readonly=True) as blob:
                    if any(_in_blob(blob, n, d) for d in digests):
                        return True
        finally:
            if con.in_transaction:
                con.execute("COMMIT")
    return False


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


__all__ = ["PROBE_MAX", "maybe_stored", "newest_small_runs"]
