"""The SQLite index of the pack store: digest -> (block, item offset, kind).

Tables of ``index.sqlite``::

    blocks:   block id -> (pack, offset, length, row check)
    segments: sorted runs of index entries, one row each
    kinds:    kind id -> (kind header "<dtype>|<shape>", row check)

Entries live in *segments*: each flush of the writer adds one segment
holding its new entries sorted by digest, stored as one row of packed
32-byte entries (:data:`ENTRY`) with a CRC-32 of the whole, and small
segments are merged as they pile up (a log-structured merge, see
:func:`.segment_plan.plan_commit`). A reader loads the segments once and resolves any
number of digests with one vectorised binary search per segment
(:func:`lookup_runs`). Every row carries a check: a damaged row is refused,
never followed. :class:`IndexTables` is what the reader and the writer share.
The entries' arrays (their layout, sort and search) are in :mod:`.entries`,
whose names this module re-exports.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..errors import IntegrityError
from . import durable
from .checksum import crc32
from .chunk_format import LARGE_PACK
from .digest import parse_kind
from .durable import connect_readonly, rollback, sqlite_failure
from .entries import (
    ENTRY,
    QUERY,
    Run,
    entry_digests,
    key_order,
    lookup_runs,
    make_entries,
    parse_run,
    sorted_entries,
)

if TYPE_CHECKING:
    from .packs import PackStore

#: version of the index layout (``PRAGMA user_version``)
INDEX_VERSION = 3
#: page size of a new index (bytes). A segment is one blob: SQLite writes it
#: as a chain of overflow pages, each a WAL frame, so large pages make a bulk
#: commit's index write (13 MB at 420,000 entries) about half as costly
PAGE_SIZE = 65536
#: the WAL is checkpointed into the index once it holds this many bytes
#: (SQLite's default of 1000 pages of 4 KiB, whatever the page size)
WAL_CHECKPOINT_BYTES = 1000 * 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kinds (
    id   INTEGER PRIMARY KEY,
    kind TEXT NOT NULL UNIQUE,
    chk  INTEGER
);
CREATE TABLE IF NOT EXISTS blocks (
    id   INTEGER PRIMARY KEY,
    pack INTEGER NOT NULL,
    boff INTEGER NOT NULL,
    blen INTEGER NOT NULL,
    chk  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    n       INTEGER NOT NULL,
    chk     INTEGER NOT NULL,
    entries BLOB NOT NULL
);
"""

BLOCK_ROW = struct.Struct("<qqqq")


class Location(NamedTuple):
    """Where a payload's bytes sit: pack, block and item within the block."""

    pack: int
    boff: int
    blen: int
    ioff: int
    ilen: int
    kind: int

    @property
    def is_large(self) -> bool:
        """True for a large payload: ``boff`` is then its chunked file's number."""
        return self.pack == LARGE_PACK


def connect_index(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the index; with ``readonly``, one that writes nothing
    when the file or its directory is not writable (a read-only mount, another
    user's repository)."""
    writable = os.access(path, os.W_OK) or not path.exists()  # a lost index is made anew
    if readonly and not (writable and os.access(path.parent, os.W_OK)):
        return connect_readonly(path)
    con = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    try:
        with index_guard(path):
            set_page_size(con)  # before WAL mode writes the file's header
            con.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on the disk when it returns (the WAL synced)
            con.execute(f"PRAGMA synchronous={'FULL' if durable.FSYNC else 'NORMAL'}")
            (page,) = con.execute("PRAGMA page_size").fetchone()
            con.execute(f"PRAGMA wal_autocheckpoint={max(1, WAL_CHECKPOINT_BYTES // page)}")
    except OSError as exc:
        con.close()
        if readonly and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return connect_readonly(path)
        raise
    return con


def set_page_size(con: sqlite3.Connection) -> None:
    """Give a new (empty) index :data:`PAGE_SIZE`; an index with pages keeps
    its own (any page size reads the same)."""
    if not con.execute("PRAGMA page_count").fetchone()[0]:
        con.execute(f"PRAGMA page_size={PAGE_SIZE}")


def block_check(block: int, pack: int, boff: int, blen: int) -> int:
    """CRC-32 binding a block row together (stored with it, verified on load).

    A damaged row is refused instead of sending a read to the wrong bytes.
    """
    return zlib.crc32(BLOCK_ROW.pack(block, pack, boff, blen))


@contextmanager
def index_guard(path: Path) -> Iterator[None]:
    """Turn SQLite's reports of a damaged index file into :class:`IntegrityError`,
    and of a full disk, an I/O error or a read-only file into :class:`OSError`
    (``ENOSPC``, ``EIO``, ``EROFS``: see :func:`.durable.sqlite_failure`)."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        failure = sqlite_failure(exc, path)
        if failure is not None:
            raise failure from None
        if isinstance(exc, sqlite3.OperationalError) and code not in _CORRUPT_CODES:
            raise  # busy, locked: not damage
        raise IntegrityError(f"payload index {path} is damaged: {exc}") from None


_CORRUPT_CODES = (getattr(sqlite3, "SQLITE_CORRUPT", 11), getattr(sqlite3, "SQLITE_NOTADB", 26))


def _chunks(seq: Sequence, n: int = 900) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def init_index(con: sqlite3.Connection) -> None:
    """Create the tables (idempotent) and upgrade an index of the first layout."""
    if con.execute("PRAGMA user_version").fetchone()[0] >= INDEX_VERSION:
        return
    set_page_size(con)  # an index made in another journal mode (a rebuild's)
    con.execute("BEGIN IMMEDIATE")
    try:
        if con.execute("PRAGMA user_version").fetchone()[0] < INDEX_VERSION:
            if not con.execute("SELECT 1 FROM sqlite_master").fetchone():
                con.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only before any table
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            _upgrade_v1(con)
            _upgrade_v2(con)
            con.execute(f"PRAGMA user_version={INDEX_VERSION}")
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise


def kind_check(kind_id: int, kind: str) -> int:
    """CRC-32 binding a kind row together (stored with it, verified on load).

    A damaged kind would make reads return arrays of the wrong dtype or
    shape: it is refused instead.
    """
    return zlib.crc32(f"{kind_id}|{kind}".encode())


def _upgrade_v2(con: sqlite3.Connection) -> None:
    """Give the kind rows of a layout-2 index their row check."""
    if "chk" not in {r[1] for r in con.execute("PRAGMA table_info(kinds)")}:
        con.execute("ALTER TABLE kinds ADD COLUMN chk INTEGER")
    for kid, text in con.execute("SELECT id, kind FROM kinds WHERE chk IS NULL").fetchall():
        con.execute("UPDATE kinds SET chk=? WHERE id=?", (kind_check(kid, text), kid))


def _upgrade_v1(con: sqlite3.Connection) -> None:
    """Move the rows of a first-layout ``payloads`` table into blocks and a segment."""
    if not con.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='payloads'"
    ).fetchone():
        return
    rows = con.execute("SELECT digest, pack, boff, blen, ioff, kind FROM payloads").fetchall()
    (top,) = con.execute("SELECT COALESCE(MAX(id), 0) FROM blocks").fetchone()
    ids: dict[tuple[int, int, int], int] = {}
    digests, blocks, ioffs, kinds = [], [], [], []
    for digest, pack, boff, blen, ioff, kind in rows:
        bid = ids.get((pack, boff, blen))
        if bid is None:
            top += 1
            bid = ids[(pack, boff, blen)] = top
            con.execute(
                "INSERT INTO blocks VALUES (?,?,?,?,?)",
                (bid, pack, boff, blen, block_check(bid, pack, boff, blen)),
            )
        digests.append(bytes(digest))
        blocks.append(bid)
        ioffs.append(ioff)
        kinds.append(kind)
    if digests:
        e = make_entries(digests, blocks, ioffs, kinds)
        blob = e.tobytes()
        con.execute(
            "INSERT INTO segments (n, chk, entries) VALUES (?,?,?)",
            (len(e), zlib.crc32(blob), blob),
        )
    con.execute("DROP TABLE payloads")


def _segment_bytes(con: sqlite3.Connection, sid: int, kind: str) -> Any:
    """The ``entries`` value of segment row ``sid`` (SQLite type ``kind``).

    A blob is read through an incremental blob handle: straight from the
    pages into one bytes object (a ``SELECT`` of it first gathers its
    overflow pages into a buffer of SQLite's, then copies that: twice the
    fresh memory, each page of it a page fault in a fresh process). Any
    other value (a damaged row) is selected as it is, for
    :func:`.entries.parse_run` to refuse."""
    if kind == "blob":
        with con.blobopen("segments", "entries", sid, readonly=True) as blob:
            return blob.read()
    row = con.execute("SELECT entries FROM segments WHERE id=?", (sid,)).fetchone()
    return row[0] if row is not None else None


class Segments:
    """The index segments as loaded by one reader or the writer."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.seen: list[int] = []  # every segment id at the last load
        self.damaged: dict[int, str] = {}  # segment id -> why it was refused
        self.loaded = False

    def load(self, con: sqlite3.Connection, path: Path) -> bool:
        """Bring the runs up to date with the index; True when they changed."""
        with index_guard(path):
            con.execute("BEGIN")
            try:
                ids = [r[0] for r in con.execute("SELECT id FROM segments ORDER BY id")]
                if self.loaded and ids == self.seen:
                    return False
                have = {r.sid: r for r in self.runs}
                need = [i for i in ids if i not in have and i not in self.damaged]
                fresh: dict[int, Run] = {}
                for part in _chunks(need):
                    marks = ",".join("?" * len(part))
                    for sid, n, chk, kind in con.execute(
                        f"SELECT id, n, chk, typeof(entries) FROM segments WHERE id IN ({marks})",
                        part,
                    ).fetchall():
                        run = parse_run(sid, n, chk, _segment_bytes(con, sid, kind))
                        if isinstance(run, str):
                            self.damaged[sid] = f"index segment {sid} of {path} {run}"
                        else:
                            fresh[sid] = run
            finally:
                if con.in_transaction:  # SQLite ends it itself on an I/O error
                    con.execute("COMMIT")
        keep = set(ids)
        self.runs = [have.get(i) or fresh[i] for i in ids if i in have or i in fresh]
        self.damaged = {i: w for i, w in self.damaged.items() if i in keep}
        self.seen = ids
        self.loaded = True
        return True

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def lookup(
        self, digests: Sequence[bytes] | bytes, sorted_keys: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(found, entries)`` for ``digests`` (or them joined); entries are
        valid where found (``sorted_keys``: see :func:`lookup_runs`)."""
        return lookup_runs(self.runs, digests, sorted_keys=sorted_keys)


def insert_segment(con: sqlite3.Connection, e: np.ndarray) -> int:
    """Insert entries ``e`` as a new segment row; returns its id.

    The row is inserted with a blob of zeros of the entries' size, which
    the entries then overwrite through SQLite's incremental blob I/O, in
    the caller's transaction: a blob bound as a parameter is first copied
    whole by SQLite (13 MB at 420,000 entries, fresh pages to fault in),
    then written to its pages; this way it is written to them once, at
    0.6x the CPU. The pages written, and so the WAL, are the same."""
    # numpy's promotion may turn the big-endian key native: insist on the layout
    blob = np.ascontiguousarray(e, dtype=ENTRY).view(np.uint8).data
    cur = con.execute(
        "INSERT INTO segments (n, chk, entries) VALUES (?,?,zeroblob(?))",
        (len(e), crc32(blob), len(blob)),
    )
    sid = int(cur.lastrowid)  # type: ignore[arg-type]
    if len(blob):
        with con.blobopen("segments", "entries", sid) as dest:
            dest.write(blob)
    return sid


class IndexTables:
    """What the reader and the writer share: kinds, block rows and segments."""

    store: PackStore
    _con: sqlite3.Connection

    def _init_tables(self) -> None:
        self._kinds: dict[int, tuple[np.dtype, tuple[int, ...]]] = {}
        self._kind_nbytes: dict[int, int] = {}
        self._kind_ids: dict[str, int] = {}
        self._kind_texts: dict[int, str] = {}
        self._bad_kinds: dict[int, str] = {}  # kind id -> why its row was refused
        self._blockrows: dict[int, tuple[int, int, int] | str] = {}
        self._block_top = 0
        self._segs = Segments()
        #: digest -> why its index entry was refused (damaged index)
        self.bad_rows: dict[bytes, str] = {}

    # ---- kinds -------------------------------------------------------
    def kind(self, kind_id: int) -> tuple[np.dtype, tuple[int, ...]]:
        """``(dtype, shape)`` of kind ``kind_id``.

        Raises
        ------
        IntegrityError
            The kind is unknown or its row fails its check.
        """
        try:
            return self._kinds[kind_id]
        except KeyError:
            self._load_kinds()
            try:
                return self._kinds[kind_id]
            except KeyError:
                raise IntegrityError(
                    self._bad_kinds.get(
                        kind_id,
                        f"payload index {self.store.index_path} names unknown kind {kind_id}",
                    )
                ) from None

    def kind_nbytes(self, kind_id: int) -> int:
        """Bytes of one item of kind ``kind_id``."""
        n = self._kind_nbytes.get(kind_id)
        if n is None:
            dtype, shape = self.kind(kind_id)
            n = self._kind_nbytes[kind_id] = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        return n

    def kind_text(self, kind_id: int) -> str:
        """Kind header (``"<dtype>|<shape>"``) of kind ``kind_id``.

        Raises
        ------
        IntegrityError
            The kind is unknown or its row fails its check.
        """
        text = self._kind_texts.get(kind_id)
        if text is None:
            self._load_kinds()
            text = self._kind_texts.get(kind_id)
            if text is None:
                raise IntegrityError(
                    self._bad_kinds.get(
                        kind_id,
                        f"payload index {self.store.index_path} names unknown kind {kind_id}",
                    )
                )
        return text

    def _load_kinds(self) -> None:
        with index_guard(self.store.index_path):
            rows = self._con.execute("SELECT id, kind, chk FROM kinds").fetchall()
        for kid, text, chk in rows:
            try:
                if chk is not None and kind_check(kid, text) != chk:
                    raise ValueError("row check")
                self._kinds[kid] = parse_kind(text)
            except (ValueError, TypeError, AttributeError):
                # a damaged kind: reads naming it fail
                self._bad_kinds[kid] = f"kind row {kid} in {self.store.index_path} fails its check"
                continue
            self._kind_ids[text] = kid
            self._kind_texts[kid] = text

    # ---- blocks ------------------------------------------------------
    def block_row(self, bid: int) -> tuple[int, int, int]:
        """``(pack, boff, blen)`` of block ``bid``, its row check verified."""
        row = self._blockrows.get(bid)
        if row is None:
            self._load_blocks()
            row = self._blockrows.get(bid)
            if row is None:
                raise IntegrityError(
                    f"payload index {self.store.index_path} names unknown block {bid}"
                )
        if isinstance(row, str):
            raise IntegrityError(row)
        return row

    def _load_blocks(self) -> None:
        with index_guard(self.store.index_path):
            rows = self._con.execute(
                "SELECT id, pack, boff, blen, chk FROM blocks WHERE id > ? ORDER BY id",
                (self._block_top,),
            ).fetchall()
        for bid, pack, boff, blen, chk in rows:
            try:
                ok = block_check(bid, pack, boff, blen) == chk
            except (struct.error, TypeError):
                ok = False
            self._blockrows[bid] = (
                (pack, boff, blen)
                if ok
                else f"block row {bid} in {self.store.index_path} fails its check"
            )
            self._block_top = max(self._block_top, bid)

    def location_of(self, e: np.void | np.ndarray) -> Location:
        """Where the payload of index entry ``e`` (:data:`ENTRY`) sits.

        Raises
        ------
        IntegrityError
            Its block or kind row is unknown or fails its check.
        """
        return self._location(e)

    def _location(self, e: np.void | np.ndarray) -> Location:
        pack, boff, blen = self.block_row(int(e["block"]))
        kid = int(e["kind"])
        return Location(pack, boff, blen, int(e["ioff"]), self.kind_nbytes(kid), kid)

    def _locations(
        self, digests: Sequence[bytes], found: np.ndarray, e: np.ndarray
    ) -> dict[bytes, Location]:
        out: dict[bytes, Location] = {}
        for i in np.flatnonzero(found).tolist():
            try:
                out[digests[i]] = self._location(e[i])
            except IntegrityError as exc:
                self.bad_rows[digests[i]] = str(exc)
        return out

    def _note_damage(self, digests: Sequence[bytes], found: np.ndarray) -> None:
        """Absent digests may sit in a damaged segment: say so in ``bad_rows``."""
        if self._segs.damaged and not found.all():
            why = "; ".join(self._segs.damaged.values())
            for i in np.flatnonzero(~found).tolist():
                self.bad_rows[digests[i]] = why


__all__ = [
    "BLOCK_ROW",
    "ENTRY",
    "INDEX_VERSION",
    "PAGE_SIZE",
    "QUERY",
    "WAL_CHECKPOINT_BYTES",
    "IndexTables",
    "Location",
    "Run",
    "Segments",
    "block_check",
    "connect_index",
    "entry_digests",
    "index_guard",
    "init_index",
    "insert_segment",
    "key_order",
    "kind_check",
    "lookup_runs",
    "make_entries",
    "parse_run",
    "set_page_size",
    "sorted_entries",
]
