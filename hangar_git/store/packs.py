"""Append-only pack files of compressed blocks, with a SQLite index.

Layout under the store directory::

    index.sqlite          blocks:   block id -> (pack, offset, length, row check)
                          segments: sorted runs of index entries, one row each
                          kinds:    kind id -> (kind header "<dtype>|<shape>", row check)
    packs/00000001.pack   blocks, appended, never rewritten in place

A block is a 20-byte header (magic, codec, raw length, CRC-32 of the stored
bytes) followed by the stored bytes: the blosc2-compressed concatenation of
the items' raw bytes, or those bytes as they are when they do not compress.
Small arrays share blocks (one decompression serves many reads); a large
array gets a block of its own. For the blocks of each flush the writer also
appends *manifest records* naming their entries to ``packs/NNNNNNNN.manifest``
(see :mod:`.manifest`), synced with the pack: readers never read them, and
:mod:`.rebuild` rebuilds a lost index from them.

The index maps a payload digest to (block, offset of the item in the block,
kind); the item's length follows from its kind. Entries live in *segments*:
each flush of the writer adds one segment holding its new entries sorted by
digest, stored as one row of packed 32-byte entries with a CRC-32 of the
whole, and small segments are merged as they pile up (a log-structured merge:
a handful of segments at any size). A reader loads the segments once and
resolves any number of digests with one vectorised binary search per
segment, instead of a SQL query per payload: a flush of 60,000 payloads is
one transaction of a few rows, and resolving them all takes milliseconds.

Durability: block bytes are written to the pack file and synced before the
index rows that point to them are committed (``synchronous=FULL``), so a
process killed, or a machine cut off, at any point leaves at worst
unreferenced bytes at a pack's tail, never an index entry pointing at
nothing. A failed write or sync (a full disk) cuts the pack back to its
last good length and keeps the blocks queued at their offsets, and SQLite's
failures surface as :class:`OSError` (see :mod:`.durable`). Sizes read from
the index and from block headers are checked before anything is allocated
(see :mod:`.limits`).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from filelock import FileLock, Timeout

from ..errors import IntegrityError, MissingPayloadError, WriterLockError
from . import chunked, durable
from ._blosc import blosc2
from .block_format import BLOCK_MAGIC, CODEC_BLOSC2_LZ4, CODEC_RAW, CRC, HEADER, HEADER_SIZE
from .checksum import FAST as FAST_CRC
from .checksum import crc32
from .chunked import LARGE_IOFF, LARGE_PACK, LargeFiles, LargeReader
from .digest import Payload, digest_bytes, parse_kind
from .durable import (
    FILE_MODE,
    connect_readonly,
    create_file,
    fsync_fd,
    rollback,
    sqlite_failure,
    truncate_to,
    write_all,
)
from .limits import check_blosc_header, check_extent
from .manifest import ManifestWriter, manifest_path

_HEADER, _CRC = HEADER, CRC

#: raw bytes gathered into one block before it is compressed and written
BLOCK_TARGET = 64 * 1024
#: a pack file is closed for appends once it grows past this size
PACK_LIMIT = 2 * 1024**3
#: largest buffer blosc2 compresses in one call
_BLOSC_MAX = 2**31 - 64
#: decompressed bytes a reader keeps in its LRU block cache
CACHE_BYTES = 64 * 1024**2
#: bytes of blocks a batch read streams through one buffer
STREAM_WINDOW = 32 * 1024**2
#: version of the index layout (``PRAGMA user_version``)
INDEX_VERSION = 3

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

#: one index entry: the digest (its first 8 bytes as a big-endian search key,
#: then the other 12), the block id, the item's offset in the block, the kind id
ENTRY = np.dtype(
    [("key", ">u8"), ("tail", "V12"), ("block", "<u4"), ("ioff", "<u4"), ("kind", "<u4")]
)
_QUERY = np.dtype([("key", ">u8"), ("tail", "V12")])
_DIGEST_SIZE = 20
_BLOCK_ROW = struct.Struct("<qqqq")


#: bumped in a forked child: readers then reopen their handles there
_FORKS = [0]


def _after_fork() -> None:
    _FORKS[0] += 1
    _crc_pool.clear()  # its thread did not cross the fork


os.register_at_fork(after_in_child=_after_fork)


class Location(NamedTuple):
    """Where a payload's bytes sit: pack, block and item within the block."""

    pack: int
    boff: int
    blen: int
    ioff: int
    ilen: int
    kind: int


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the index; with ``readonly``, one that writes nothing
    when the file or its directory is not writable (a read-only mount, another
    user's repository)."""
    writable = os.access(path, os.W_OK) or not path.exists()  # a lost index is made anew
    if readonly and not (writable and os.access(path.parent, os.W_OK)):
        return connect_readonly(path)
    con = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    try:
        with index_guard(path):
            con.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on the disk when it returns (the WAL synced)
            con.execute(f"PRAGMA synchronous={'FULL' if durable.FSYNC else 'NORMAL'}")
    except OSError as exc:
        con.close()
        if readonly and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return connect_readonly(path)
        raise
    return con


def block_check(block: int, pack: int, boff: int, blen: int) -> int:
    """CRC-32 binding a block row together (stored with it, verified on load).

    A damaged row is refused instead of sending a read to the wrong bytes.
    """
    return zlib.crc32(_BLOCK_ROW.pack(block, pack, boff, blen))


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


def _init_index(con: sqlite3.Connection) -> None:
    """Create the tables (idempotent) and upgrade an index of the first layout."""
    if con.execute("PRAGMA user_version").fetchone()[0] >= INDEX_VERSION:
        return
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
        e = _make_entries(digests, blocks, ioffs, kinds)
        blob = e.tobytes()
        con.execute(
            "INSERT INTO segments (n, chk, entries) VALUES (?,?,?)",
            (len(e), zlib.crc32(blob), blob),
        )
    con.execute("DROP TABLE payloads")


def _make_entries(
    digests: Sequence[bytes], blocks: Sequence[int], ioffs: Sequence[int], kinds: Sequence[int]
) -> np.ndarray:
    """Index entries for parallel lists, sorted by digest."""
    e = np.empty(len(digests), ENTRY)
    if len(digests):
        q = np.frombuffer(b"".join(digests), _QUERY)
        e["key"] = q["key"]
        e["tail"] = q["tail"]
        e["block"] = blocks
        e["ioff"] = ioffs
        e["kind"] = kinds
    return _sorted(e)


def _sorted(e: np.ndarray) -> np.ndarray:
    e = e.astype(ENTRY, copy=False)
    order = np.argsort(e["key"], kind="stable")
    return e[order]


def entry_digests(e: np.ndarray) -> list[bytes]:
    """The digests of index entries ``e``, as bytes."""
    q = np.empty(len(e), _QUERY)
    q["key"] = e["key"]
    q["tail"] = e["tail"]
    raw = q.tobytes()
    return [raw[i : i + _DIGEST_SIZE] for i in range(0, len(raw), _DIGEST_SIZE)]


class _Run(NamedTuple):
    """One loaded segment: native sort keys and its entries."""

    sid: int
    keys: np.ndarray
    entries: np.ndarray


class _Segments:
    """The index segments as loaded by one reader or the writer."""

    def __init__(self) -> None:
        self.runs: list[_Run] = []
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
                fresh: dict[int, _Run] = {}
                for part in _chunks(need):
                    marks = ",".join("?" * len(part))
                    for sid, n, chk, blob in con.execute(
                        f"SELECT id, n, chk, entries FROM segments WHERE id IN ({marks})", part
                    ).fetchall():
                        run = _parse_run(sid, n, chk, blob)
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
        return sum(len(r.keys) for r in self.runs)

    def lookup(self, digests: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """``(found, entries)`` for ``digests``; entries are valid where found."""
        return _lookup_runs(self.runs, digests)


def _lookup_runs(runs: Sequence[_Run], digests: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``(found, entries)`` for ``digests`` in ``runs``; entries valid where found."""
    n = len(digests)
    found = np.zeros(n, bool)
    out = np.zeros(n, ENTRY)
    if not n or not runs:
        return found, out
    joined = b"".join(digests)
    if len(joined) != _DIGEST_SIZE * n:  # a malformed digest is never stored
        ok = [i for i, d in enumerate(digests) if len(d) == _DIGEST_SIZE]
        f2, e2 = _lookup_runs(runs, [digests[i] for i in ok])
        found[ok] = f2
        out[ok] = e2
        return found, out
    q = np.frombuffer(joined, _QUERY)
    qk = q["key"].astype(np.uint64)
    qt = q["tail"]
    for run in runs:
        m = len(run.keys)
        if not m:
            continue
        pos = np.searchsorted(run.keys, qk)
        np.minimum(pos, m - 1, out=pos)
        cand = run.entries[pos]
        same_key = run.keys[pos] == qk
        hit = same_key & (cand["tail"] == qt) & ~found
        out[hit] = cand[hit]
        found |= hit
        clash = same_key & ~found  # another digest with the same first 8 bytes
        for i in np.flatnonzero(clash).tolist():
            j = int(pos[i]) + 1
            while j < m and run.keys[j] == qk[i]:
                if run.entries[j]["tail"] == qt[i]:
                    out[i] = run.entries[j]
                    found[i] = True
                    break
                j += 1
        if found.all():
            break
    return found, out


#: buffers one ``preadv`` call fills at most (the usual IOV_MAX)
_IOV_MAX = 1024
#: a second thread for checksums of bulk reads (zlib releases the GIL); the
#: vectorised CRC of zlib-ng is faster on one thread than zlib's on two
_crc_pool: list[ThreadPoolExecutor] = []


def _crc_many(views: list[memoryview]) -> list[int]:
    """CRC-32 of each of ``views``; with stdlib zlib, many large ones are
    split over two threads."""
    if FAST_CRC or len(views) < 16 or (os.cpu_count() or 1) < 2:
        return [crc32(v) for v in views]
    if not _crc_pool:
        _crc_pool.append(ThreadPoolExecutor(1, thread_name_prefix="hangar-crc"))
    half = len(views) // 2
    other = _crc_pool[0].submit(lambda: [crc32(v) for v in views[half:]])
    first = [crc32(v) for v in views[:half]]
    return first + other.result()


def _parse_run(sid: int, n: int, chk: int, blob: bytes) -> _Run | str:
    if not isinstance(blob, bytes) or zlib.crc32(blob) != chk:
        return "fails its checksum"
    if len(blob) != n * ENTRY.itemsize:
        return "has the wrong length"
    e = np.frombuffer(blob, ENTRY)
    keys = e["key"].astype(np.uint64)
    if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():
        return "is not sorted"
    return _Run(sid, keys, e)


class PackStore:
    """A directory of packs and its index; hands out readers and the writer."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.packs_dir = self.root / "packs"
        self.index_path = self.root / "index.sqlite"
        #: large payloads, one chunked file each (see :mod:`.chunked`)
        self.large_dir = self.root / "large"

    def create(self) -> None:
        """Create the directory and an empty index (idempotent)."""
        self.packs_dir.mkdir(parents=True, exist_ok=True)
        create_file(self.index_path)  # SQLite would make it 0644 whatever the umask
        con = _connect(self.index_path)
        try:
            with index_guard(self.index_path):
                _init_index(con)
        finally:
            con.close()

    def exists(self) -> bool:
        return self.index_path.exists()

    def pack_path(self, pack: int) -> Path:
        return self.packs_dir / f"{pack:08d}.pack"

    def pack_numbers(self) -> list[int]:
        """Numbers of the pack files present, ascending."""
        return sorted(int(p.stem) for p in self.packs_dir.glob("*.pack") if p.stem.isdigit())

    def reader(self) -> PackReader:
        return PackReader(self)

    def writer(self) -> PackWriter:
        return PackWriter(self)


class _IndexUser:
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
        self._segs = _Segments()
        #: digest -> why its index entry was refused (damaged index)
        self.bad_rows: dict[bytes, str] = {}

    # ---- kinds -------------------------------------------------------
    def kind(self, kind_id: int) -> tuple[np.dtype, tuple[int, ...]]:
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
    def _block_row(self, bid: int) -> tuple[int, int, int]:
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

    def _location(self, e: np.void | np.ndarray) -> Location:
        pack, boff, blen = self._block_row(int(e["block"]))
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


class PackReader(_IndexUser):
    """Reads payloads; one per thread (a reader is not shared across threads).

    A reader notices when it is used in a forked child and reopens its
    handles there, so it can cross into DataLoader worker processes. It keeps
    up to ``cache_bytes`` of decompressed blocks (least recently used first
    out), each verified against its checksum when read from its pack.
    """

    def __init__(self, store: PackStore, cache_bytes: int = CACHE_BYTES) -> None:
        self.store = store
        self._pid = -1
        self._cache_bytes = cache_bytes
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        self._pid = os.getpid()
        self._forks = _FORKS[0]
        self._last_block = -1
        self._last_raw: bytes | memoryview = b""
        self._kind_info: dict[int, tuple[np.dtype, int, int, tuple[int, ...] | None]] = {}
        self._con = _connect(self.store.index_path, readonly=True)
        with index_guard(self.store.index_path):
            _init_index(self._con)
        self._fds: dict[int, int] = {}
        self._sizes: dict[int, int] = {}  # pack -> its size when last looked at
        self._paths: dict[int, Path] = {}
        self._init_tables()
        # (pack, offset) -> block bytes; also block id -> the same bytes (read_entry)
        self._blocks: OrderedDict[tuple[int, int] | int, bytes | memoryview] = OrderedDict()
        self._cached = 0
        self._large: LargeReader | None = None

    def _check_pid(self) -> None:
        if self._forks != _FORKS[0] or self._pid != os.getpid():
            self._open()

    def close(self) -> None:
        if self._pid != os.getpid():
            return
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._blocks.clear()
        self._cached = 0
        self._last_block, self._last_raw = -1, b""
        if self._large is not None:
            self._large.close()
        self._con.close()

    # ---- index -------------------------------------------------------
    def lookup(self, digests: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised resolution: ``(found, entries)`` parallel to ``digests``.

        ``entries`` is an array of :data:`ENTRY` (block id, item offset,
        kind id), valid where ``found``. The index is read again when a
        digest is not found in what this reader loaded before.
        """
        self._check_pid()
        with self._lock:
            if not self._segs.loaded:
                self._segs.load(self._con, self.store.index_path)
            found, e = self._segs.lookup(digests)
            if not found.all() and self._segs.load(self._con, self.store.index_path):
                found, e = self._segs.lookup(digests)
            self._note_damage(digests, found)
        return found, e

    def locate_many(self, digests: Iterable[bytes]) -> dict[bytes, Location]:
        """Locations of those of ``digests`` stored here (absent ones omitted)."""
        uniq = list(dict.fromkeys(digests))
        found, e = self.lookup(uniq)
        return self._locations(uniq, found, e)

    def locate(self, digest: bytes) -> Location | None:
        """Location of one payload; None when absent or its entry is damaged."""
        return self.locate_many([digest]).get(digest)

    def count(self) -> int:
        """Number of payloads in the index."""
        self._check_pid()
        with self._lock:
            self._segs.load(self._con, self.store.index_path)
            return len(self._segs)

    def all_locations(self) -> Iterator[tuple[bytes, Location | None]]:
        """Every index entry as ``(digest, location)``; location None if damaged.

        Entries of a damaged segment cannot be listed: see :attr:`damaged_segments`.
        """
        self._check_pid()
        with self._lock:
            self._segs.load(self._con, self.store.index_path)
            runs = list(self._segs.runs)
        for run in runs:
            for d, e in zip(entry_digests(run.entries), run.entries, strict=True):
                try:
                    yield d, self._location(e)
                except IntegrityError as exc:
                    self.bad_rows[d] = str(exc)
                    yield d, None

    def refresh(self) -> None:
        """Load the index afresh (entries that ``gc`` moved since the last load)."""
        self._check_pid()
        with self._lock:
            self._segs.load(self._con, self.store.index_path)

    @property
    def damaged_segments(self) -> dict[int, str]:
        """Index segments refused when loaded (id -> why)."""
        return dict(self._segs.damaged)

    def contains(self, digest: bytes) -> bool:
        return self.locate(digest) is not None

    # ---- bytes -------------------------------------------------------
    def _fd(self, pack: int) -> int:
        fd = self._fds.get(pack)
        if fd is None:
            path = self.store.pack_path(pack)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise IntegrityError(f"pack file {path} is missing") from None
            self._fds[pack] = fd
            self._paths[pack] = path
        return fd

    def block(self, pack: int, boff: int, blen: int) -> bytes | memoryview:
        """The decompressed bytes of a block, checksum verified."""
        key = (pack, boff)
        blocks = self._blocks
        cached = blocks.get(key)
        if cached is not None:
            blocks.move_to_end(key)
            return cached
        fd = self._fd(pack)
        check_extent(fd, self._sizes, pack, boff, blen, str(self._paths[pack]))
        raw = read_block(fd, pack, boff, blen, self._paths[pack])
        blocks[key] = raw
        self._cached += len(raw)
        while self._cached > self._cache_bytes and len(blocks) > 1:
            self._cached -= len(blocks.popitem(last=False)[1])
        return raw

    def _cache_block(self, key: int, raw: bytes | memoryview) -> bytes | memoryview:
        """Keep ``raw`` in the LRU cache under block id ``key`` too (no copy)."""
        blocks = self._blocks
        blocks[key] = raw  # type: ignore[index]
        self._cached += len(raw)
        while self._cached > self._cache_bytes and len(blocks) > 1:
            self._cached -= len(blocks.popitem(last=False)[1])
        return raw

    def read(self, loc: Location, digest: bytes | None = None) -> np.ndarray:
        """The array stored at ``loc`` (a fresh, writeable array)."""
        self._check_pid()
        if loc.pack == LARGE_PACK:
            return self._read_large(loc, digest)
        raw = self.block(loc.pack, loc.boff, loc.blen)
        dtype, shape = self.kind(loc.kind)
        item = raw[loc.ioff : loc.ioff + loc.ilen]
        if len(item) != loc.ilen:
            raise IntegrityError(
                f"payload {digest.hex() if digest else ''} extends past its block "
                f"in {self.store.pack_path(loc.pack)}"
            )
        if digest is not None and digest_bytes(self.kind_text(loc.kind), item) != digest:
            raise IntegrityError(
                f"payload {digest.hex()} does not match its digest "
                f"in {self.store.pack_path(loc.pack)}"
            )
        return np.frombuffer(bytearray(item), dtype=dtype).reshape(shape)

    def read_entry(self, block: int, ioff: int, kind: int) -> np.ndarray:
        """The array of an index entry (a fresh, writeable array)."""
        if self._forks != _FORKS[0]:
            self._open()
        if ioff == LARGE_IOFF:
            return self.large().read(self._large_number(block), self.kind_text(kind))
        if block == self._last_block:  # consecutive reads from one block
            raw = self._last_raw
        else:
            got = self._blocks.get(block)
            if got is None:
                pack, boff, blen = self._block_row(block)
                fd = self._fd(pack)
                check_extent(fd, self._sizes, pack, boff, blen, str(self._paths[pack]))
                raw = self._cache_block(block, read_block(fd, pack, boff, blen, self._paths[pack]))
            else:
                raw = got
                self._blocks.move_to_end(block)
            self._last_block, self._last_raw = block, raw
        info = self._kind_info.get(kind)
        if info is None:
            dtype, shape = self.kind(kind)
            n = self.kind_nbytes(kind)
            info = self._kind_info[kind] = (
                dtype,
                n // dtype.itemsize,
                n,
                None if len(shape) == 1 else shape,
            )
        dtype, count, n, rshape = info
        if ioff + n > len(raw):
            raise IntegrityError(
                f"payload at {ioff} of block {block} extends past its block "
                f"in {self.store.index_path.parent}"
            )
        a = np.frombuffer(raw, dtype, count, ioff)
        return (a if rshape is None else a.reshape(rshape)).copy()

    def gather(self, entries: np.ndarray) -> list[np.ndarray]:
        """The arrays of index ``entries``, in order, each block read once.

        Items of one kind are copied out of each block with one fancy index
        (rows of a view of the block) into one array per kind; the arrays
        returned are its rows: fresh, writeable, and independent of each other.
        """
        self._check_pid()
        if len(entries) and (entries["ioff"] == LARGE_IOFF).any():
            return self._gather_large(entries)
        n = len(entries)
        out: list[np.ndarray] = [None] * n  # type: ignore[list-item]
        if not n:
            return out
        kinds = entries["kind"]
        k0 = int(kinds[0])
        uk = np.array([k0]) if (kinds == k0).all() else np.unique(kinds)
        for kid in uk.tolist():
            sel = np.flatnonzero(kinds == kid) if len(uk) > 1 else None
            sub = entries if sel is None else entries[sel]
            dtype, shape = self.kind(kid)
            nbytes = self.kind_nbytes(kid)
            buf = np.empty((len(sub), nbytes), np.uint8)
            blocks = sub["block"]
            ioffs = sub["ioff"].astype(np.int64)
            rows = None if (ioffs % nbytes).any() else ioffs // nbytes
            order = np.argsort(blocks, kind="stable")
            sb = blocks[order]
            bounds = [0, *(np.flatnonzero(sb[1:] != sb[:-1]) + 1).tolist(), len(sb)]
            bids = sb[bounds[:-1]].tolist()
            todo: Sequence[int] = range(len(bids))
            direct: list[np.ndarray | None] | None = None
            if rows is not None and len(bids) >= 4:
                direct = [None] * len(sub)
                todo, n_direct = self._stream(
                    bids, bounds, order, rows, nbytes, buf, dtype, shape, direct
                )
            for j in todo:
                bid = bids[j]
                idx = order[bounds[j] : bounds[j + 1]]
                pack, boff, blen = self._block_row(bid)
                raw = self.block(pack, boff, blen)
                if rows is not None and len(raw) % nbytes == 0:
                    try:
                        buf[idx] = np.frombuffer(raw, np.uint8).reshape(-1, nbytes)[rows[idx]]
                        continue
                    except IndexError:
                        pass  # reported below
                offs = ioffs[idx]
                if int(offs.max()) + nbytes > len(raw):
                    raise IntegrityError(
                        f"payload at {int(offs.max())} of block {boff} extends past its "
                        f"block in {self.store.pack_path(pack)}"
                    )
                arr = np.frombuffer(raw, np.uint8)
                for i, off in zip(idx.tolist(), offs.tolist(), strict=True):
                    buf[i] = arr[off : off + nbytes]
            typed = buf.view(dtype).reshape((len(sub), *shape))
            if direct is None:
                res: list[np.ndarray] = list(typed)
            elif n_direct == len(sub):
                res = direct  # type: ignore[assignment]
            else:  # some items were copied into ``buf``
                res = [typed[i] if a is None else a for i, a in enumerate(direct)]
            if sel is None:
                return res
            for i, a in zip(sel.tolist(), res, strict=True):
                out[i] = a
        return out

    def _stream(
        self,
        bids: list[int],
        bounds: list[int],
        order: np.ndarray,
        rows: np.ndarray,
        nbytes: int,
        buf: np.ndarray,
        dtype: np.dtype,
        shape: tuple[int, ...],
        direct: list[np.ndarray | None],
    ) -> tuple[list[int], int]:
        """Read the items of uncached, uncompressed blocks in bulk.

        Blocks are read (``os.preadv``, no intermediate copies) into one
        buffer per window of :data:`STREAM_WINDOW` bytes, each placed so its
        items are rows of it, and their checksums verified. When the items
        fill most of the window, each is returned as a view of its row
        (``direct[i]``: no copy at all; items are distinct rows, so the
        arrays stay independent); otherwise they are copied into ``buf``
        with one fancy index. Blocks bypass the block cache (a bulk read
        would only flush it). Returns the block positions left to the
        caller (cached, compressed, or odd ones) and the number of items
        handed out in ``direct``.
        """
        rest: list[int] = []
        n_direct = 0
        window: list[tuple[int, int, int, int, int]] = []
        size = 0
        for j, bid in enumerate(bids):
            pack, boff, blen = self._block_row(bid)
            if (pack, boff) in self._blocks or blen <= HEADER_SIZE:
                rest.append(j)
            else:  # the window's buffer is sized from blen: check it first
                check_extent(self._fd(pack), self._sizes, pack, boff, blen, str(self._paths[pack]))
                window.append((j, pack, boff, blen, size))
                size += blen + nbytes  # room to align the next block's rows
            if window and (size >= STREAM_WINDOW or j == len(bids) - 1):
                left, n = self._stream_window(
                    window, size, bounds, order, rows, nbytes, buf, dtype, shape, direct
                )
                rest += left
                n_direct += n
                window, size = [], 0
        rest.sort()
        return rest, n_direct

    def _stream_window(
        self,
        window: list[tuple[int, int, int, int, int]],
        size: int,
        bounds: list[int],
        order: np.ndarray,
        rows: np.ndarray,
        nbytes: int,
        buf: np.ndarray,
        dtype: np.dtype,
        shape: tuple[int, ...],
        direct: list[np.ndarray | None],
    ) -> tuple[list[int], int]:
        big = np.empty(size + nbytes, np.uint8)
        mv = big.data
        rest: list[int] = []
        items: list[np.ndarray] = []
        srcs: list[np.ndarray] = []
        places = [start + (-(start + HEADER_SIZE)) % nbytes for _, _, _, _, start in window]
        gots = self._scatter_read(window, places, mv)
        ok: list[int] = []  # window positions whose header is sound
        for w, (j, _pack, _boff, blen, _start) in enumerate(window):
            place = places[w]  # the body starts on a row
            magic, codec, rawlen = _HEADER.unpack_from(mv, place)
            if (
                gots[w] != blen
                or magic != BLOCK_MAGIC
                or codec != CODEC_RAW
                or (rawlen != blen - HEADER_SIZE or rawlen % nbytes)
            ):
                rest.append(j)  # the careful path decodes it or says what is wrong
            else:
                ok.append(w)
        crcs = _crc_many([mv[places[w] + HEADER_SIZE : places[w] + window[w][3]] for w in ok])
        for w, got_crc in zip(ok, crcs, strict=True):
            j, pack, boff, blen, _start = window[w]
            place = places[w]
            rawlen = blen - HEADER_SIZE
            (crc,) = _CRC.unpack_from(mv, place + _HEADER.size)
            if got_crc != crc:
                raise IntegrityError(
                    f"block at {boff} of {self.store.pack_path(pack)} fails its checksum"
                )
            idx = order[bounds[j] : bounds[j + 1]]
            r = rows[idx]
            if len(r) and int(r.max()) >= rawlen // nbytes:
                rest.append(j)
                continue
            items.append(idx)
            srcs.append(r + (place + HEADER_SIZE) // nbytes)
        if items:
            table = big[: len(big) - len(big) % nbytes].reshape(-1, nbytes)
            dst, src = np.concatenate(items), np.concatenate(srcs)
            dense = len(src) * nbytes * 2 >= len(big)
            if dense and len(src) > 1:
                ss = np.sort(src)
                dense = bool((ss[1:] != ss[:-1]).all())  # no row shared by two items
            if dense:  # views of the rows: the window stays alive with them
                views = list(table.view(dtype).reshape((-1, *shape)))
                got = list(map(views.__getitem__, src.tolist()))
                d0 = int(dst[0])
                if len(dst) == 1 or (np.diff(dst) == 1).all():  # blocks in output order
                    direct[d0 : d0 + len(got)] = got
                else:
                    for i, a in zip(dst.tolist(), got, strict=True):
                        direct[i] = a
                return rest, len(dst)
            buf[dst] = table[src]
        return rest, 0

    def _scatter_read(
        self, window: list[tuple[int, int, int, int, int]], places: list[int], mv: memoryview
    ) -> list[int]:
        """Read each block of ``window`` to its place in ``mv``, runs of blocks
        adjacent in one pack with one scattering ``preadv``; bytes read per block."""
        gots = [0] * len(window)
        w = 0
        while w < len(window):
            _, pack, boff, blen, _ = window[w]
            end = w + 1
            nxt = boff + blen
            while end < len(window) and end - w < _IOV_MAX:
                _, p2, b2, l2, _ = window[end]
                if p2 != pack or b2 != nxt:
                    break
                nxt += l2
                end += 1
            iov = [mv[places[k] : places[k] + window[k][3]] for k in range(w, end)]
            got = os.preadv(self._fd(pack), iov, boff)
            for k in range(w, end):  # a short read shortens the blocks at the end
                gots[k] = max(0, min(window[k][3], got))
                got -= window[k][3]
            w = end
        return gots

    def read_many(self, locs: Sequence[Location]) -> list[np.ndarray]:
        """Arrays at ``locs``, decompressing each block once."""
        self._check_pid()
        if any(loc.pack == LARGE_PACK for loc in locs):
            return [self.read(loc) for loc in locs]
        order = sorted(range(len(locs)), key=lambda i: (locs[i].pack, locs[i].boff))
        out: list[np.ndarray | None] = [None] * len(locs)
        cur_key = None
        raw: bytes | memoryview = b""
        for i in order:
            loc = locs[i]
            key = (loc.pack, loc.boff)
            if key != cur_key:
                raw = self.block(loc.pack, loc.boff, loc.blen)
                cur_key = key
            dtype, shape = self.kind(loc.kind)
            if loc.ioff + loc.ilen > len(raw):
                raise IntegrityError(
                    f"payload at {loc.ioff} extends past its block "
                    f"in {self.store.pack_path(loc.pack)}"
                )
            out[i] = (
                np.frombuffer(raw, dtype=dtype, count=loc.ilen // dtype.itemsize, offset=loc.ioff)
                .reshape(shape)
                .copy()
            )
        return out  # type: ignore[return-value]

    def get(self, digest: bytes) -> np.ndarray:
        loc = self.locate(digest)
        if loc is None:
            raise MissingPayloadError(f"payload {digest.hex()} is not stored locally")
        return self.read(loc)

    # ---- large payloads: a chunked file each (see chunked.py) ------------
    def large(self) -> LargeReader:
        """The reader of this store's large payload files."""
        self._check_pid()
        if self._large is None:
            self._large = LargeReader(LargeFiles(self.store.large_dir))
        return self._large

    def _large_number(self, block: int) -> int:
        """The file number of the large payload of index entry block ``block``."""
        pack, number, _ = self._block_row(block)
        if pack != LARGE_PACK:
            raise IntegrityError(
                f"payload index {self.store.index_path} names block {block} as a large "
                "payload file, its row says otherwise"
            )
        return number

    def read_large_region(self, block: int, kind: int, index: Any) -> Any:
        """``array[index]`` of a large payload (index entry ``block``, ``kind``),
        reading only the chunks ``index`` touches."""
        return self.large().read_region(self._large_number(block), index, self.kind_text(kind))

    def _read_large(self, loc: Location, digest: bytes | None) -> np.ndarray:
        """The array of a large payload at ``loc``; with ``digest``, every byte
        is also checked against it (fsck)."""
        large = self.large()
        kind = self.kind_text(loc.kind)
        arr = large.read(loc.boff, kind)
        if digest is not None:
            o = large.open(loc.boff, kind)
            if o.header.digest != digest or digest_bytes(kind, chunked.flat_bytes(arr)) != digest:
                raise IntegrityError(
                    f"payload {digest.hex()} does not match its digest in {o.path}"
                )
        return arr

    def _gather_large(self, entries: np.ndarray) -> list[np.ndarray]:
        """:meth:`gather` of entries some of which are large payloads: those are
        decoded straight into their arrays, all their chunks on every core."""
        big = entries["ioff"] == LARGE_IOFF
        out: list[np.ndarray] = [None] * len(entries)  # type: ignore[list-item]
        small = np.flatnonzero(~big)
        if len(small):
            for i, a in zip(small.tolist(), self.gather(entries[small]), strict=True):
                out[i] = a
        idx = np.flatnonzero(big).tolist()
        kids = [int(entries[i]["kind"]) for i in idx]
        arrays = chunked.empty_arrays([self.kind(k) for k in kids])
        items: list[tuple[int, np.ndarray]] = []
        for i, a in zip(idx, arrays, strict=True):
            out[i] = a
            items.append((self._large_number(int(entries[i]["block"])), a))
        self.large().read_many(items, [self.kind_text(k) for k in kids])
        return out


def read_block(fd: int, pack: int, boff: int, blen: int, path: Path) -> bytes | memoryview:
    """Read, verify and decompress one block."""
    buf = os.pread(fd, blen, boff)
    if len(buf) != blen or blen < HEADER_SIZE:
        raise IntegrityError(f"block at {boff} of {path} is truncated")
    magic, codec, rawlen = _HEADER.unpack_from(buf)
    (crc,) = _CRC.unpack_from(buf, _HEADER.size)
    body = memoryview(buf)[HEADER_SIZE:]
    if magic != BLOCK_MAGIC or crc32(body) != crc:
        raise IntegrityError(f"block at {boff} of {path} fails its checksum")
    return decode_body(codec, body, rawlen, f"at {boff} of {path}")


def decode_body(
    codec: int, body: memoryview, rawlen: int, where: str, max_raw: int = _BLOSC_MAX
) -> bytes | memoryview:
    """Decode a checksum-verified block body (raw: a view, no copy).

    Shared by the local packs and the data remote's packs, whose codec
    numbers agree (0 raw, 1 blosc2). A blosc2 body is decompressed only
    when its own header states ``rawlen`` raw bytes, ``max_raw`` at most
    (see :func:`.limits.check_blosc_header`): nothing is allocated for a
    size the block did not promise.

    Raises
    ------
    IntegrityError
        Unknown codec, undecodable bytes, or a length other than ``rawlen``.
    """
    raw: bytes | memoryview
    if codec == CODEC_RAW:
        raw = body
    elif codec == CODEC_BLOSC2_LZ4:
        check_blosc_header(body, rawlen, where, max_raw)
        try:
            raw = blosc2.decompress(body)
        except Exception as exc:  # blosc2 raises RuntimeError/ValueError
            raise IntegrityError(f"block {where} cannot be decoded: {exc}") from None
    else:
        raise IntegrityError(f"block {where} has unknown codec {codec}")
    if len(raw) != rawlen:
        raise IntegrityError(f"block {where} has the wrong length")
    return raw


def encode_block(raw: bytes | memoryview, typesize: int, nthreads: int = 1) -> bytes:
    """Compress ``raw`` into a block with its header; raw when incompressible."""
    body: bytes | memoryview = raw
    codec = CODEC_RAW
    if 64 <= len(raw) <= _BLOSC_MAX:
        comp = (
            blosc2.compress(
                raw,
                typesize=max(1, min(typesize, 255)),
                clevel=5,
                filter=blosc2.Filter.SHUFFLE,
                codec=blosc2.Codec.LZ4,
            )
            if nthreads == 1
            else _compress_mt(raw, typesize, nthreads)
        )
        if len(comp) < len(raw) * 0.95:
            body, codec = comp, CODEC_BLOSC2_LZ4
    return _HEADER.pack(BLOCK_MAGIC, codec, len(raw)) + _CRC.pack(crc32(body)) + bytes(body)


def _compress_mt(raw: bytes | memoryview, typesize: int, nthreads: int) -> bytes:
    old = blosc2.set_nthreads(nthreads)
    try:
        return blosc2.compress(
            raw,
            typesize=max(1, min(typesize, 255)),
            clevel=5,
            filter=blosc2.Filter.SHUFFLE,
            codec=blosc2.Codec.LZ4,
        )
    finally:
        blosc2.set_nthreads(old)


#: seconds a new store writer waits for another (fetch-data, gc) to finish
STORE_LOCK_TIMEOUT = 120.0


class PackWriter(_IndexUser):
    """The single writer of a store: appends blocks and index entries.

    Items are gathered per dtype into blocks of about :data:`BLOCK_TARGET`
    bytes; :meth:`flush` writes what is pending and commits the index, and is
    the point from which added payloads survive a killed process.
    """

    def __init__(self, store: PackStore) -> None:
        self.store = store
        self._flock = FileLock(str(store.root / "write.lock"), thread_local=False)
        try:
            self._flock.acquire(timeout=STORE_LOCK_TIMEOUT)
        except Timeout:
            raise WriterLockError(
                f"the payload store {store.root} stayed locked for {STORE_LOCK_TIMEOUT:.0f} s "
                "by another process (a write checkout, fetch-data or gc); try again when "
                "it has finished"
            ) from None
        try:
            self._con = _connect(store.index_path)
            with index_guard(store.index_path):
                _init_index(self._con)
                self._init_tables()
                self._kind_ids = {
                    k: i
                    for i, k, c in self._con.execute("SELECT id, kind, chk FROM kinds")
                    if c is None or c == kind_check(i, k)
                }
                (top,) = self._con.execute("SELECT COALESCE(MAX(id), 0) FROM blocks").fetchone()
            self._next_block = top + 1
            self._pack, self._fd, self._size = self._open_pack()
        except BaseException:
            self._flock.release()
            raise
        # digest -> Location of payloads written by this writer (or looked up)
        self.known: dict[bytes, Location] = {}
        self._pending: dict[str, list[Payload]] = {}  # dtype str -> items
        self._pending_bytes: dict[str, int] = {}
        self._pending_set: set[bytes] = set()
        self._typesize: dict[str, tuple[str, int]] = {}  # kind -> (dtype str, itemsize)
        # index entries and block rows written but not yet committed
        self._new_digests: list[bytes] = []
        self._new_blocks: list[int] = []
        self._new_ioffs: list[int] = []
        self._new_kinds: list[int] = []
        self._block_rows: list[tuple[int, int, int, int, int]] = []
        #: index entries of rows written by add_stacked, not yet committed
        self._new_entries: list[np.ndarray] = []
        self._out: list[bytes] = []
        self._out_bytes = 0
        #: the manifest records of the blocks written (see manifest.py)
        self._manifest = ManifestWriter(store.packs_dir)
        #: blocks written since the last sync (written again if it fails)
        self._written: list[bytes] = []
        self._synced_size = self._size
        self.closed = False
        # large payloads: files written, to be put in place and indexed by flush()
        self._large = LargeFiles(store.large_dir)
        self._large.clean_temporary()  # left by a killed writer
        self._large_pending: list[tuple[chunked.Pending, int, int]] = []

    def _open_pack(self) -> tuple[int, int, int]:
        numbers = self.store.pack_numbers()
        pack = numbers[-1] if numbers else 1
        path = self.store.pack_path(pack)
        if path.exists() and path.stat().st_size >= PACK_LIMIT:
            pack += 1
            path = self.store.pack_path(pack)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        return pack, fd, os.fstat(fd).st_size

    def _kind_id(self, kind: str) -> int:
        kid = self._kind_ids.get(kind)
        if kid is None:
            con = self._con
            with index_guard(self.store.index_path):
                con.execute("BEGIN IMMEDIATE")
                try:
                    row = con.execute("SELECT id, chk FROM kinds WHERE kind=?", (kind,)).fetchone()
                    if row is None:
                        (kid,) = con.execute(
                            "SELECT COALESCE(MAX(id), 0) + 1 FROM kinds"
                        ).fetchone()
                        con.execute(
                            "INSERT INTO kinds(id, kind, chk) VALUES (?,?,?)",
                            (kid, kind, kind_check(kid, kind)),
                        )
                    elif row[1] is not None and row[1] != kind_check(row[0], kind):
                        raise IntegrityError(
                            f"kind row {row[0]} in {self.store.index_path} fails its check"
                        )
                    else:
                        kid = row[0]
                    con.execute("COMMIT")
                except BaseException:
                    rollback(con)
                    raise
            self._kind_ids[kind] = kid
        return kid

    def _dtype_of(self, kind: str) -> tuple[str, int]:
        t = self._typesize.get(kind)
        if t is None:
            dt = kind[: kind.rindex("|")]
            t = self._typesize[kind] = (dt, np.dtype(dt).itemsize)
        return t

    def add(self, p: Payload) -> None:
        """Queue a payload; a digest already stored or queued costs nothing."""
        d = p.digest
        if d in self.known or d in self._pending_set:
            return
        dt, typesize = self._typesize.get(p.kind) or self._dtype_of(p.kind)
        nbytes = len(p.data)
        if nbytes >= BLOCK_TARGET:
            if nbytes >= chunked.THRESHOLD:
                self._add_large(p)
                return
            self._seal([p], typesize)
            return
        items = self._pending.get(dt)
        if items is None:
            items = self._pending[dt] = []
        items.append(p)
        self._pending_set.add(d)
        total = self._pending_bytes.get(dt, 0) + nbytes
        if total >= BLOCK_TARGET:
            del self._pending[dt]
            self._pending_bytes[dt] = 0
            self._seal(items, typesize)
        else:
            self._pending_bytes[dt] = total

    def add_stacked(self, kind: str, digests: Sequence[bytes], rows: np.ndarray) -> None:
        """Store each row of ``rows`` (all of kind ``kind``) under its digest, and flush.

        The bulk form of :meth:`add` for many small payloads of one kind:
        duplicates and payloads already stored are skipped in vectorised
        passes, the new rows are cut into blocks of :data:`BLOCK_TARGET`
        bytes straight from the stacked buffer (no per-payload objects), and
        their index entries are committed with everything else pending (the
        point from which they survive a killed process).

        Parameters
        ----------
        kind : str
            Kind header of every row (see :func:`~.digest.kind_of`).
        digests : sequence of bytes
            ``digests[i]`` is the digest of ``rows[i]``.
        rows : numpy.ndarray
            The stacked payloads, ``len(rows) == len(digests)``.
        """
        n = len(digests)
        if n != len(rows):
            raise ValueError(f"{n} digests for {len(rows)} rows")
        if not n:
            return
        size = rows.nbytes // n
        if size >= BLOCK_TARGET:  # a block each: the per-payload path costs nothing more
            view = np.ascontiguousarray(rows).reshape(-1).data.cast("B")
            for i, d in enumerate(digests):
                self.add(tuple.__new__(Payload, (d, kind, view[i * size : (i + 1) * size])))  # type: ignore[arg-type]
            self.flush()
            return
        # one row per distinct digest not stored yet, in input order
        pick = dict(zip(digests, range(n), strict=True))
        if len(pick) == n and not self.known and not self._pending_set:
            idx = None
        else:
            known, pend = self.known, self._pending_set
            idx = sorted(i for d, i in pick.items() if d not in known and d not in pend)
        new = list(digests) if idx is None else [digests[i] for i in idx]
        if new:
            if not self._segs.loaded:
                self._segs.load(self._con, self.store.index_path)
            found, _ = self._segs.lookup(new)
            if found.any():
                keep = np.flatnonzero(~found)
                base = range(n) if idx is None else idx
                idx = [base[i] for i in keep.tolist()]
                new = [new[i] for i in keep.tolist()]
        if new:
            flat = np.ascontiguousarray(rows).reshape(n, -1).view(np.uint8)
            if idx is not None:
                flat = flat[np.asarray(idx, np.intp)]
            self._write_rows(self._kind_id(kind), new, flat, self._dtype_of(kind)[1])
        self.flush()

    def _write_rows(self, kid: int, digests: list[bytes], flat: np.ndarray, typesize: int) -> None:
        """Write the rows of ``flat`` (uint8, one payload per row) in blocks and
        queue their index entries (committed by the next :meth:`flush`)."""
        n, size = flat.shape
        per = max(1, -(-BLOCK_TARGET // size))  # rows per block: as many as add() gathers
        raw = np.ascontiguousarray(flat).reshape(-1).data.cast("B")
        bids = np.empty(n, np.uint32)
        for start in range(0, n, per):
            stop = min(n, start + per)
            block = encode_block(raw[start * size : stop * size], typesize)
            if self._size + self._out_bytes >= PACK_LIMIT:
                self._write_out()
                self._rotate()
            pack, boff, blen = self._pack, self._size + self._out_bytes, len(block)
            bid = self._next_block
            self._next_block += 1
            self._block_rows.append((bid, pack, boff, blen, block_check(bid, pack, boff, blen)))
            self._manifest.add_rows(boff, blen, kid, size, digests, slice(start, stop))
            self._out.append(block)
            self._out_bytes += blen
            bids[start:stop] = bid
            if self._out_bytes >= STREAM_WINDOW:
                self._write_out()
                self._sync_pack()  # bounds what a failed sync must write again
        e = np.empty(n, ENTRY)
        q = np.frombuffer(b"".join(digests), _QUERY)
        e["key"] = q["key"]
        e["tail"] = q["tail"]
        e["block"] = bids
        e["ioff"] = (np.arange(n, dtype=np.uint32) % per) * size
        e["kind"] = kid
        self._new_entries.append(e)

    def _add_large(self, p: Payload) -> None:
        """Write a large payload to a chunked file of its own (see :mod:`.chunked`);
        the next :meth:`flush` syncs it, puts it in place and indexes it."""
        stored = self._stored([p.digest])
        if stored:
            self.known.update(stored)
            return
        kid = self._kind_ids.get(p.kind) or self._kind_id(p.kind)
        number = self._next_block  # a block id: never reused, so never another file's
        self._next_block += 1
        pending = self._large.write_temporary(number, p.digest, p.kind, p.data)
        self._large_pending.append((pending, kid, len(p.data)))
        self._pending_set.add(p.digest)

    def adopt_large(self, path: Path, digest: bytes, kind: str) -> None:
        """Take the checked chunked payload file ``path`` (under ``large/tmp/``,
        e.g. fetched from a remote) as payload ``digest`` of ``kind``; the next
        :meth:`flush` puts it in place and indexes it."""
        if digest in self.known or digest in self._pending_set:
            path.unlink(missing_ok=True)
            return
        stored = self._stored([digest])
        if stored:
            self.known.update(stored)
            path.unlink(missing_ok=True)
            return
        kid = self._kind_ids.get(kind) or self._kind_id(kind)
        number = self._next_block
        self._next_block += 1
        pending = chunked.Pending(number, digest, kind, path.stat().st_size, path)
        dtype, shape = parse_kind(kind)
        self._large_pending.append((pending, kid, dtype.itemsize * int(np.prod(shape))))
        self._pending_set.add(digest)

    def _place_large(self) -> None:
        """Sync and rename the large payload files written since the last
        flush, and queue their index entries (committed by the flush)."""
        todo = self._large_pending
        self._large.place([p for p, _, _ in todo])  # on failure all stay pending
        self._large_pending = []
        for p, kid, nbytes in todo:
            n, size = p.number, p.size
            self._block_rows.append((n, LARGE_PACK, n, size, block_check(n, LARGE_PACK, n, size)))
            self._new_digests.append(p.digest)
            self._new_blocks.append(n)
            self._new_ioffs.append(LARGE_IOFF)
            self._new_kinds.append(kid)
            self.known[p.digest] = Location(LARGE_PACK, n, size, LARGE_IOFF, nbytes, kid)
            self._pending_set.discard(p.digest)

    def has_pending(self, digest: bytes | None = None) -> bool:
        """True when payloads (``digest``, if given) are queued or uncommitted."""
        if digest is None:
            return bool(self._pending_set or self._new_digests)
        return digest in self._pending_set or (bool(self._new_digests) and digest in self.known)

    def _stored(self, digests: list[bytes]) -> dict[bytes, Location]:
        """Locations of those of ``digests`` already in the committed index."""
        if not self._segs.loaded:
            self._segs.load(self._con, self.store.index_path)
        found, e = self._segs.lookup(digests)
        if not found.any():
            return {}
        return self._locations(digests, found, e)

    def _seal(self, items: list[Payload], typesize: int) -> None:
        """Compress ``items`` into one block queued for writing."""
        known = self.known
        for p in items:
            self._pending_set.discard(p.digest)
        fresh = [p for p in items if p.digest not in known]
        if not fresh:
            return
        stored = self._stored([p.digest for p in fresh])
        if stored:
            known.update(stored)
            fresh = [p for p in fresh if p.digest not in stored]
            if not fresh:
                return
        if len(fresh) > 1:  # the same payload twice in one block
            fresh = list({p.digest: p for p in fresh}.values())
        raw = b"".join([p.data for p in fresh]) if len(fresh) > 1 else fresh[0].data
        nthreads = 2 if len(raw) >= 4 * 1024 * 1024 else 1
        block = encode_block(raw, typesize, nthreads)
        if self._size + self._out_bytes >= PACK_LIMIT:
            self._write_out()
            self._rotate()
        self._queue_block(block, fresh)

    def _queue_block(self, block: bytes, items: Sequence[Payload]) -> dict[bytes, Location]:
        """Queue ``block`` (holding ``items`` in order) and its index entries."""
        pack = self._pack
        boff = self._size + self._out_bytes
        blen = len(block)
        bid = self._next_block
        self._next_block += 1
        self._block_rows.append((bid, pack, boff, blen, block_check(bid, pack, boff, blen)))
        ioff = 0
        kinds = self._kind_ids
        done: dict[bytes, Location] = {}
        make = tuple.__new__  # Location(...) without its Python-level __new__
        for p in items:
            n = len(p.data)
            kid = kinds.get(p.kind)
            if kid is None:
                kid = self._kind_id(p.kind)
            done[p.digest] = make(Location, (pack, boff, blen, ioff, n, kid))
            ioff += n
        locs = done.values()
        self._new_digests.extend(done)
        self._new_blocks.extend([bid] * len(done))
        self._new_ioffs.extend([loc[3] for loc in locs])
        self._new_kinds.extend([loc[5] for loc in locs])
        self.known.update(done)
        self._manifest.add_items(boff, blen, done)
        self._out.append(block)
        self._out_bytes += blen
        return done

    def _rotate(self) -> None:
        self._manifest.seal(self._pack, self._kind_ids)  # written by the sync
        self._sync_pack()  # its blocks are indexed later, from another pack's flush
        fd = os.open(
            self.store.pack_path(self._pack + 1),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            FILE_MODE,
        )
        os.close(self._fd)
        self._pack += 1
        self._fd = fd
        self._size = self._synced_size = os.fstat(fd).st_size

    def _write_out(self) -> None:
        """Append the queued blocks to the pack (not synced: see :meth:`_sync_pack`).

        On failure (a full disk, an I/O error) the pack is cut back to its
        length before the call and the blocks stay queued at the offsets they
        were given, so a later flush writes them there; if the pack cannot be
        cut back, everything not yet indexed is dropped (see :meth:`_drop`).
        """
        if not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        try:
            write_all(self._fd, data)
        except BaseException:
            if truncate_to(self._fd, self._size) != self._size:
                self._drop()
            raise
        self._size += len(data)
        self._written.append(data)
        self._out.clear()
        self._out_bytes = 0

    def _sync_pack(self) -> None:
        """Sync the blocks written since the last sync to the disk.

        If the sync fails, the system may have dropped those bytes: the pack
        is cut back to its synced length and they are queued again, to be
        written anew by the next flush (or everything not yet indexed is
        dropped, if the pack cannot be cut back).
        """
        if not self._written and not self._manifest:
            return
        try:
            with self._manifest.synced():  # the records of these blocks, synced alongside
                fsync_fd(self._fd)
        except BaseException:
            if truncate_to(self._fd, self._synced_size) == self._synced_size:
                self._out[:0] = self._written
                self._out_bytes += sum(len(b) for b in self._written)
                self._size = self._synced_size
                self._written.clear()
            else:
                self._drop()
            raise
        self._written.clear()
        self._synced_size = self._size

    def _drop(self) -> None:
        """Forget everything not yet indexed (the pack could not be put back
        to a known length after a failed write): the calls that queued it
        failed, so nothing acknowledged is lost. Later blocks go after the
        pack's real end."""
        for d in self._new_digests:
            self.known.pop(d, None)
        for p, _, _ in self._large_pending:
            self.known.pop(p.digest, None)
        self._large.discard([p for p, _, _ in self._large_pending])
        self._large_pending.clear()
        self._new_digests.clear()
        self._new_blocks.clear()
        self._new_ioffs.clear()
        self._new_kinds.clear()
        self._new_entries.clear()
        self._block_rows.clear()
        self._pending.clear()
        self._pending_bytes.clear()
        self._pending_set.clear()
        self._out.clear()
        self._out_bytes = 0
        self._written.clear()
        self._manifest.discard()
        try:
            self._size = os.fstat(self._fd).st_size
        except OSError:
            pass
        self._synced_size = self._size

    def flush(self) -> None:
        """Write all queued payloads, sync them and commit their index entries.

        Raises
        ------
        OSError
            A full disk (``ENOSPC``), an I/O error (``EIO``) ...: nothing of
            this flush is indexed, what was queued stays queued (a later
            flush, once space returns, writes it) and the writer stays usable.
        """
        if self._large_pending:
            self._place_large()
        for items in list(self._pending.values()):
            if items:
                self._seal(items, self._dtype_of(items[0].kind)[1])
        self._pending.clear()
        self._pending_bytes.clear()
        self._manifest.seal(self._pack, self._kind_ids)
        self._write_out()
        self._sync_pack()  # the bytes are on the disk before the entries naming them
        if self._new_digests or self._new_entries:
            self._commit_index(drop=())

    def _commit_index(self, drop: Iterable[bytes]) -> None:
        """Commit the queued block rows and entries as a new segment, in one
        transaction that also removes the entries of ``drop`` (and merges small
        segments into the new one)."""
        new = _make_entries(self._new_digests, self._new_blocks, self._new_ioffs, self._new_kinds)
        if self._new_entries:
            new = _sorted(np.concatenate([new, *self._new_entries]))
        runs = list(self._segs.runs)
        replaced: dict[int, np.ndarray] = {}
        gone = list(dict.fromkeys(drop))
        if gone:
            for run in runs:
                f, _ = _lookup_runs([run], gone)
                if f.any():
                    replaced[run.sid] = _without(run, gone)
        merged: list[int] = []
        parts = [new]
        keep = list(runs)
        while keep and len(replaced.get(keep[-1].sid, keep[-1].entries)) <= 2 * sum(
            len(x) for x in parts
        ):
            r = keep.pop()
            merged.append(r.sid)
            parts.append(replaced.pop(r.sid, r.entries))
        if len(parts) > 1:
            new = _sorted(np.concatenate(parts).astype(ENTRY, copy=False))
        con = self._con
        with index_guard(self.store.index_path):
            con.execute("BEGIN IMMEDIATE")
            try:
                if self._block_rows:
                    con.executemany("INSERT INTO blocks VALUES (?,?,?,?,?)", self._block_rows)
                for sid in [*merged, *replaced]:
                    con.execute("DELETE FROM segments WHERE id=?", (sid,))
                rewritten: dict[int, int] = {}
                for sid, e in replaced.items():
                    if len(e):
                        rewritten[sid] = _insert_segment(con, e)
                new_sid = _insert_segment(con, new) if len(new) else None
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise
        self._block_rows.clear()
        self._new_entries.clear()
        self._new_digests.clear()
        self._new_blocks.clear()
        self._new_ioffs.clear()
        self._new_kinds.clear()
        # the writer holds the store lock: its view of the segments stays exact
        runs2: list[_Run] = []
        for r in keep:
            if r.sid in replaced:
                if r.sid in rewritten:
                    e = replaced[r.sid]
                    runs2.append(_Run(rewritten[r.sid], e["key"].astype(np.uint64), e))
            else:
                runs2.append(r)
        if new_sid is not None:
            runs2.append(_Run(new_sid, new["key"].astype(np.uint64), new))
        self._segs.runs = runs2
        self._segs.seen = [r.sid for r in runs2] + sorted(self._segs.damaged)
        self._segs.seen.sort()
        if merged or replaced:
            with index_guard(self.store.index_path):
                con.execute("PRAGMA incremental_vacuum")

    def pending_location(self, digest: bytes) -> Location | None:
        """Location of a payload this writer holds, flushing it first if queued."""
        if digest in self._pending_set:
            self.flush()
        loc = self.known.get(digest)
        if loc is not None and self._new_digests:
            self.flush()
        return loc

    # ---- maintenance (gc) ----------------------------------------------
    def remove(self, digests: Iterable[bytes]) -> int:
        """Delete the index entries of ``digests`` in one transaction; returns
        how many there were.

        The bytes stay in their packs until :meth:`relocate` compacts them.
        """
        self.flush()
        if not self._segs.loaded:
            self._segs.load(self._con, self.store.index_path)
        gone = list(dict.fromkeys(digests))
        found, _ = self._segs.lookup(gone)
        n = int(found.sum())
        if n:
            self._commit_index(drop=gone)
        for d in gone:
            self.known.pop(d, None)
        return n

    def relocate(self, payloads: Iterable[Payload], new_pack: bool = True) -> dict[bytes, Location]:
        """Write ``payloads`` again, into a new pack, and point their entries there.

        With ``new_pack`` the writer first moves to a pack numbered above
        every existing one (numbers are never reused, so a location a reader
        cached can never name other bytes); otherwise it appends to the pack
        of the previous call. The bytes are synced to disk before the entries
        move, in one transaction: a process killed at any point leaves every
        entry pointing at intact bytes, the old ones until the commit, the
        new ones after.
        """
        self.flush()
        if not self._segs.loaded:
            self._segs.load(self._con, self.store.index_path)
        if new_pack or self._size >= PACK_LIMIT:
            number = max([self._pack, *self.store.pack_numbers()]) + 1
            fd = os.open(
                self.store.pack_path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE
            )
            os.close(self._fd)
            self._pack, self._fd = number, fd
            self._size = self._synced_size = os.fstat(fd).st_size
        moved: dict[bytes, Location] = {}
        groups: dict[str, list[Payload]] = {}
        for p in payloads:
            if p.digest not in moved:
                groups.setdefault(self._dtype_of(p.kind)[0], []).append(p)
                moved[p.digest] = Location(0, 0, 0, 0, 0, 0)
        for items in groups.values():
            start = 0
            while start < len(items):
                end, size = start, 0
                while end < len(items) and (end == start or size < BLOCK_TARGET):
                    size += len(items[end].data)
                    end += 1
                chunk = items[start:end]
                start = end
                raw = b"".join(p.data for p in chunk)
                block = encode_block(raw, typesize_of(chunk[0].kind))
                moved.update(self._queue_block(block, chunk))
        self._manifest.seal(self._pack, self._kind_ids)
        self._write_out()
        if not durable.FSYNC:
            self._written.clear()
            os.fsync(self._fd)  # gc syncs whatever HANGAR_FSYNC says: old bytes go
            self._synced_size = self._size
        self._sync_pack()
        if self._new_digests:
            self._commit_index(drop=list(moved))
        return moved

    def drop_pack(self, pack: int) -> None:
        """Delete pack file ``pack``; refused while an index entry points into it."""
        self.flush()
        if pack == self._pack:
            raise ValueError(f"pack {pack} is the pack this writer appends to")
        if not self._segs.loaded:
            self._segs.load(self._con, self.store.index_path)
        with index_guard(self.store.index_path):
            ids = [r[0] for r in self._con.execute("SELECT id FROM blocks WHERE pack=?", (pack,))]
        used = 0
        if ids:
            want = np.array(ids, np.uint32)
            used = sum(int(np.isin(r.entries["block"], want).sum()) for r in self._segs.runs)
        if used:
            raise ValueError(f"pack {pack} still holds {used} indexed payloads")
        with index_guard(self.store.index_path):
            # the row of the highest block id stays: block ids are never reused,
            # so a block row a reader cached can never name other bytes
            self._con.execute(
                "DELETE FROM blocks WHERE pack=? AND id < (SELECT MAX(id) FROM blocks)", (pack,)
            )
        self.store.pack_path(pack).unlink(missing_ok=True)
        manifest_path(self.store.packs_dir, pack).unlink(missing_ok=True)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
            # readers that cannot write (``immutable=1``, see durable.py) read the
            # main file only: put what the WAL holds into it
            try:
                self._con.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # best effort: the WAL stays, readers that can write read it
        finally:
            self.closed = True
            os.close(self._fd)
            self._manifest.close()
            self._con.close()
            self._flock.release()


def _insert_segment(con: sqlite3.Connection, e: np.ndarray) -> int:
    # numpy's promotion may turn the big-endian key native: insist on the layout
    blob = np.ascontiguousarray(e, dtype=ENTRY).tobytes()
    cur = con.execute(
        "INSERT INTO segments (n, chk, entries) VALUES (?,?,?)", (len(e), zlib.crc32(blob), blob)
    )
    return int(cur.lastrowid)  # type: ignore[arg-type]


def _without(run: _Run, digests: Sequence[bytes]) -> np.ndarray:
    """The entries of ``run`` other than those of ``digests``."""
    drop = set(digests)
    mask = np.fromiter(
        (d not in drop for d in entry_digests(run.entries)), bool, count=len(run.entries)
    )
    return run.entries[mask]


def typesize_of(kind: str) -> int:
    """Item size of a kind header's dtype (for blosc2's shuffle)."""
    return np.dtype(kind[: kind.rindex("|")]).itemsize
