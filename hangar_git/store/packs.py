"""Append-only pack files of compressed blocks, with a SQLite index.

Layout under the store directory::

    index.sqlite          digest -> (pack, block offset, block length,
                                     item offset, item length, kind)
    packs/00000001.pack   blocks, appended, never rewritten in place

A block is a 16-byte header (magic, codec, raw length, CRC-32 of the stored
bytes) followed by the stored bytes: the blosc2-compressed concatenation of
the items' raw bytes, or those bytes as they are when they do not compress.
Small arrays share blocks (one decompression serves many reads); a large
array gets a block of its own.

Durability: block bytes are written to the pack file with ``os.write`` before
the index rows that point to them are committed, so a process killed at any
point leaves at worst unreferenced bytes at a pack's tail, never an index row
pointing at nothing.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import blosc2
import numpy as np
from filelock import FileLock

from ..errors import IntegrityError, MissingPayloadError
from .digest import Payload, digest_bytes, parse_kind

BLOCK_MAGIC = b"HGB1"
_HEADER = struct.Struct("<4sBxxxQ")  # magic, codec, raw length ... crc follows
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size + _CRC.size  # 20 bytes

CODEC_RAW = 0
CODEC_BLOSC2_LZ4 = 1

#: raw bytes gathered into one block before it is compressed and written
BLOCK_TARGET = 64 * 1024
#: a pack file is closed for appends once it grows past this size
PACK_LIMIT = 2 * 1024**3
#: largest buffer blosc2 compresses in one call
_BLOSC_MAX = 2**31 - 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS payloads (
    digest BLOB PRIMARY KEY,
    pack   INTEGER NOT NULL,
    boff   INTEGER NOT NULL,
    blen   INTEGER NOT NULL,
    ioff   INTEGER NOT NULL,
    ilen   INTEGER NOT NULL,
    kind   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kinds (
    id   INTEGER PRIMARY KEY,
    kind TEXT NOT NULL UNIQUE
);
"""


class Location(NamedTuple):
    """Where a payload's bytes sit: pack, block and item within the block."""

    pack: int
    boff: int
    blen: int
    ioff: int
    ilen: int
    kind: int


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def _chunks(seq: Sequence[bytes], n: int = 900) -> Iterable[Sequence[bytes]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class PackStore:
    """A directory of packs and its index; hands out readers and the writer."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.packs_dir = self.root / "packs"
        self.index_path = self.root / "index.sqlite"

    def create(self) -> None:
        """Create the directory and an empty index (idempotent)."""
        self.packs_dir.mkdir(parents=True, exist_ok=True)
        con = _connect(self.index_path)
        try:
            con.executescript(_SCHEMA)
        finally:
            con.close()

    def exists(self) -> bool:
        return self.index_path.exists()

    def pack_path(self, pack: int) -> Path:
        return self.packs_dir / f"{pack:08d}.pack"

    def reader(self) -> PackReader:
        return PackReader(self)

    def writer(self) -> PackWriter:
        return PackWriter(self)


class PackReader:
    """Reads payloads; one per thread (a reader is not shared across threads).

    A reader notices when it is used in a forked child and reopens its
    handles there, so it can cross into DataLoader worker processes.
    """

    def __init__(self, store: PackStore, cache_blocks: int = 8) -> None:
        self.store = store
        self._pid = -1
        self._cache_size = cache_blocks
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        self._pid = os.getpid()
        self._con = _connect(self.store.index_path)
        self._fds: dict[int, int] = {}
        self._kinds: dict[int, tuple[np.dtype, tuple[int, ...]]] = {}
        self._kind_ids: dict[str, int] = {}
        self._blocks: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    def _check_pid(self) -> None:
        if self._pid != os.getpid():
            self._open()

    def close(self) -> None:
        if self._pid != os.getpid():
            return
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._con.close()

    # ---- index -------------------------------------------------------
    def kind(self, kind_id: int) -> tuple[np.dtype, tuple[int, ...]]:
        try:
            return self._kinds[kind_id]
        except KeyError:
            self._load_kinds()
            return self._kinds[kind_id]

    def kind_text(self, kind_id: int) -> str:
        for text, kid in self._kind_ids.items():
            if kid == kind_id:
                return text
        self._load_kinds()
        return next(t for t, k in self._kind_ids.items() if k == kind_id)

    def _load_kinds(self) -> None:
        for kid, text in self._con.execute("SELECT id, kind FROM kinds"):
            self._kinds[kid] = parse_kind(text)
            self._kind_ids[text] = kid

    def locate_many(self, digests: Iterable[bytes]) -> dict[bytes, Location]:
        """Locations of those of ``digests`` stored here (absent ones omitted)."""
        self._check_pid()
        uniq = list(dict.fromkeys(digests))
        out: dict[bytes, Location] = {}
        with self._lock:
            for part in _chunks(uniq):
                q = "SELECT * FROM payloads WHERE digest IN (%s)" % ",".join("?" * len(part))
                for row in self._con.execute(q, part):
                    out[row[0]] = Location(*row[1:])
        return out

    def locate(self, digest: bytes) -> Location | None:
        self._check_pid()
        with self._lock:
            row = self._con.execute(
                "SELECT pack, boff, blen, ioff, ilen, kind FROM payloads WHERE digest=?",
                (digest,),
            ).fetchone()
        return Location(*row) if row else None

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
        return fd

    def block(self, pack: int, boff: int, blen: int) -> bytes:
        """The decompressed bytes of a block, checksum verified."""
        key = (pack, boff)
        cached = self._blocks.get(key)
        if cached is not None:
            self._blocks.move_to_end(key)
            return cached
        raw = read_block(self._fd(pack), pack, boff, blen, self.store.pack_path(pack))
        self._blocks[key] = raw
        if len(self._blocks) > self._cache_size:
            self._blocks.popitem(last=False)
        return raw

    def read(self, loc: Location, digest: bytes | None = None) -> np.ndarray:
        """The array stored at ``loc`` (a fresh, writeable array)."""
        self._check_pid()
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

    def read_many(self, locs: Sequence[Location]) -> list[np.ndarray]:
        """Arrays at ``locs``, decompressing each block once."""
        self._check_pid()
        order = sorted(range(len(locs)), key=lambda i: (locs[i].pack, locs[i].boff))
        out: list[np.ndarray | None] = [None] * len(locs)
        cur_key = None
        raw = b""
        for i in order:
            loc = locs[i]
            key = (loc.pack, loc.boff)
            if key != cur_key:
                raw = self.block(loc.pack, loc.boff, loc.blen)
                cur_key = key
            dtype, shape = self.kind(loc.kind)
            out[i] = np.frombuffer(raw, dtype=dtype, count=loc.ilen // dtype.itemsize,
                                   offset=loc.ioff).reshape(shape).copy()
        return out  # type: ignore[return-value]

    def get(self, digest: bytes) -> np.ndarray:
        loc = self.locate(digest)
        if loc is None:
            raise MissingPayloadError(f"payload {digest.hex()} is not stored locally")
        return self.read(loc)


def read_block(fd: int, pack: int, boff: int, blen: int, path: Path) -> bytes:
    """Read, verify and decompress one block."""
    buf = os.pread(fd, blen, boff)
    if len(buf) != blen or blen < HEADER_SIZE:
        raise IntegrityError(f"block at {boff} of {path} is truncated")
    magic, codec, rawlen = _HEADER.unpack_from(buf)
    (crc,) = _CRC.unpack_from(buf, _HEADER.size)
    body = memoryview(buf)[HEADER_SIZE:]
    if magic != BLOCK_MAGIC or zlib.crc32(body) != crc:
        raise IntegrityError(f"block at {boff} of {path} fails its checksum")
    if codec == CODEC_RAW:
        raw = bytes(body)
    elif codec == CODEC_BLOSC2_LZ4:
        try:
            raw = blosc2.decompress(body)
        except Exception as exc:  # blosc2 raises RuntimeError/ValueError
            raise IntegrityError(f"block at {boff} of {path} cannot be decoded: {exc}") from None
    else:
        raise IntegrityError(f"block at {boff} of {path} has unknown codec {codec}")
    if len(raw) != rawlen:
        raise IntegrityError(f"block at {boff} of {path} has the wrong length")
    return raw


def encode_block(raw: bytes | memoryview, typesize: int, nthreads: int = 1) -> bytes:
    """Compress ``raw`` into a block with its header; raw when incompressible."""
    body: bytes | memoryview = raw
    codec = CODEC_RAW
    if 64 <= len(raw) <= _BLOSC_MAX:
        comp = blosc2.compress(
            raw,
            typesize=max(1, min(typesize, 255)),
            clevel=5,
            filter=blosc2.Filter.SHUFFLE,
            codec=blosc2.Codec.LZ4,
        ) if nthreads == 1 else _compress_mt(raw, typesize, nthreads)
        if len(comp) < len(raw) * 0.95:
            body, codec = comp, CODEC_BLOSC2_LZ4
    return (
        _HEADER.pack(BLOCK_MAGIC, codec, len(raw))
        + _CRC.pack(zlib.crc32(body))
        + bytes(body)
    )


def _compress_mt(raw: bytes | memoryview, typesize: int, nthreads: int) -> bytes:
    old = blosc2.set_nthreads(nthreads)
    try:
        return blosc2.compress(
            raw, typesize=max(1, min(typesize, 255)), clevel=5,
            filter=blosc2.Filter.SHUFFLE, codec=blosc2.Codec.LZ4,
        )
    finally:
        blosc2.set_nthreads(old)


class PackWriter:
    """The single writer of a store: appends blocks and index rows.

    Items are gathered per dtype into blocks of about :data:`BLOCK_TARGET`
    bytes; :meth:`flush` writes what is pending and commits the index, and is
    the point from which added payloads survive a killed process.
    """

    def __init__(self, store: PackStore) -> None:
        self.store = store
        self._flock = FileLock(str(store.root / "write.lock"), thread_local=False)
        self._flock.acquire(timeout=600)
        try:
            self._con = _connect(store.index_path)
            self._kinds = {k: i for i, k in self._con.execute("SELECT id, kind FROM kinds")}
            self._pack, self._fd, self._size = self._open_pack()
        except BaseException:
            self._flock.release()
            raise
        # digest -> Location of payloads written by this writer (or looked up)
        self.known: dict[bytes, Location] = {}
        self._pending: dict[str, list[Payload]] = {}  # dtype str -> items
        self._pending_bytes: dict[str, int] = {}
        self._pending_set: set[bytes] = set()
        self._rows: list[tuple[bytes, int, int, int, int, int, int]] = []
        self._out: list[bytes] = []
        self._out_bytes = 0
        self.closed = False

    def _open_pack(self) -> tuple[int, int, int]:
        numbers = sorted(
            int(p.stem) for p in self.store.packs_dir.glob("*.pack") if p.stem.isdigit()
        )
        pack = numbers[-1] if numbers else 1
        path = self.store.pack_path(pack)
        if path.exists() and path.stat().st_size >= PACK_LIMIT:
            pack += 1
            path = self.store.pack_path(pack)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return pack, fd, os.fstat(fd).st_size

    def _kind_id(self, kind: str) -> int:
        kid = self._kinds.get(kind)
        if kid is None:
            self._con.execute("INSERT OR IGNORE INTO kinds(kind) VALUES (?)", (kind,))
            kid = self._con.execute("SELECT id FROM kinds WHERE kind=?", (kind,)).fetchone()[0]
            self._kinds[kind] = kid
        return kid

    def add(self, p: Payload) -> None:
        """Queue a payload; a digest already stored or queued costs nothing."""
        d = p.digest
        if d in self.known or d in self._pending_set:
            return
        dt = p.kind[: p.kind.rindex("|")]
        nbytes = len(p.data)
        if nbytes >= BLOCK_TARGET:
            self._seal([p], typesize_of(p.kind))
            return
        items = self._pending.setdefault(dt, [])
        items.append(p)
        self._pending_set.add(d)
        total = self._pending_bytes.get(dt, 0) + nbytes
        if total >= BLOCK_TARGET:
            self._seal(items, typesize_of(p.kind))
            del self._pending[dt]
            self._pending_bytes[dt] = 0
        else:
            self._pending_bytes[dt] = total

    def _seal(self, items: list[Payload], typesize: int) -> None:
        """Compress ``items`` into one block queued for writing."""
        fresh = [p for p in items if p.digest not in self.known]
        stored = self._lookup([p.digest for p in fresh])
        self.known.update(stored)
        fresh = [p for p in fresh if p.digest not in stored]
        for p in items:
            self._pending_set.discard(p.digest)
        if not fresh:
            return
        raw = b"".join(p.data for p in fresh) if len(fresh) > 1 else fresh[0].data
        nthreads = 2 if len(raw) >= 4 * 1024 * 1024 else 1
        block = encode_block(raw, typesize, nthreads)
        if self._size + self._out_bytes >= PACK_LIMIT:
            self._write_out()
            self._rotate()
        boff = self._size + self._out_bytes
        blen = len(block)
        ioff = 0
        for p in fresh:
            n = len(p.data)
            loc = Location(self._pack, boff, blen, ioff, n, self._kind_id(p.kind))
            self.known[p.digest] = loc
            self._rows.append((p.digest, *loc))
            ioff += n
        self._out.append(block)
        self._out_bytes += blen

    def _lookup(self, digests: list[bytes]) -> dict[bytes, Location]:
        out: dict[bytes, Location] = {}
        for part in _chunks(digests):
            q = "SELECT * FROM payloads WHERE digest IN (%s)" % ",".join("?" * len(part))
            for row in self._con.execute(q, part):
                out[row[0]] = Location(*row[1:])
        return out

    def _rotate(self) -> None:
        os.close(self._fd)
        self._pack += 1
        self._fd = os.open(
            self.store.pack_path(self._pack), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
        )
        self._size = os.fstat(self._fd).st_size

    def _write_out(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)
        self._out.clear()
        self._out_bytes = 0

    def flush(self) -> None:
        """Write all queued payloads and commit their index rows."""
        for dt, items in list(self._pending.items()):
            if items:
                self._seal(items, typesize_of(items[0].kind))
        self._pending.clear()
        self._pending_bytes.clear()
        self._write_out()
        if self._rows:
            self._con.execute("BEGIN")
            self._con.executemany(
                "INSERT OR IGNORE INTO payloads VALUES (?,?,?,?,?,?,?)", self._rows
            )
            self._con.execute("COMMIT")
            self._rows.clear()

    def pending_location(self, digest: bytes) -> Location | None:
        """Location of a payload this writer holds, flushing it first if queued."""
        if digest in self._pending_set:
            self.flush()
        loc = self.known.get(digest)
        if loc is not None and self._rows:
            self.flush()
        return loc

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self.closed = True
            os.close(self._fd)
            self._con.close()
            self._flock.release()


def typesize_of(kind: str) -> int:
    """Item size of a kind header's dtype (for blosc2's shuffle)."""
    return np.dtype(kind[: kind.rindex("|")]).itemsize
