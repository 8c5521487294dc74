"""Chunked storage for large payloads: one immutable file per payload.

A payload of at least :data:`THRESHOLD` raw bytes does not go into a pack
block: it gets a file of its own under ``<store>/large/``, cut into n-d
chunks (see :func:`choose_chunks`) that are compressed, checksummed and read
on their own. A slice of a large array (``aset[key, 0:64, 0:64]``) reads only
the chunks it touches; whole arrays are decompressed straight into the array
returned, chunks spread over every core (blosc2, zlib and ``os.pread``
release the GIL).

Identity does not change: the digest is the same blake2b-160 over the kind
header and the C-order bytes as for a packed payload, so records, diff,
merge and dedup are unaffected. The choice between a pack and a chunked file
is local to a machine and never part of history.

Index
-----
A large payload is registered in the pack index like any other, which keeps
one lookup path (dedup, remote references, fetch-on-read, gc's liveness) for
both: its entry's item offset is :data:`LARGE_IOFF` (never a real offset, a
block holds at most 2 GiB) and its block row is ``(pack 0, file number,
file size)``, pack numbers starting at 1. The file is
``large/<file number>.hgc``; file numbers are block ids, never reused.

File layout (format 1, little-endian)::

    magic "HGC1", format version (u8), flags (u8), kind length (u16),
    header length (u32), number of chunks (u64), digest (20 bytes),
    kind header (utf-8: "<dtype>|<d0>,<d1>,..."), chunk shape (u64 per axis),
    chunk table: per chunk (C order of the chunk grid) its offset (u64),
    stored length (u32), CRC-32 of the stored bytes (u32), codec (u8, 0 raw,
    1 blosc2), 7 bytes of padding;
    CRC-32 of all the header bytes above (u32)
    chunk bodies

A chunk body holds the C-order bytes of its sub-array (edge chunks are
smaller, never padded), blosc2-compressed (LZ4, shuffle with the dtype's
item size), or raw: when two sample chunks of the array (the first and the
middle one) shrink by less than :data:`COMPRESS_GAIN`, every chunk is
stored raw (random floats save under 10 % and would cost CPU both ways),
and a chunk that does not shrink by 5 % is stored raw anyway. Every read
checks the header's CRC and the CRC of every chunk it uses; ``fsck`` also
hashes the whole payload against its digest.

Threshold
---------
Measured on the 2-core machine of issue 8 (96 MB of float32 arrays of one
size, random and image-like, through ``update`` + commit and the read
paths): from 1 MiB up, chunked files write about 1.6-2.3x and batch-read
1.6-2.5x faster than pack blocks and read a 32x32 corner 4-30x faster;
at 256-512 KiB they write no faster and read one by one slower (the file
per payload costs more than the block). Hence :data:`THRESHOLD` = 1 MiB.

Crash safety: a file is written under ``large/tmp/``, synced, renamed into
place and only then indexed (see ``PackWriter``): a writer killed at any
point leaves a temporary file (removed by the next writer) or an
unindexed file (removed by ``gc``), never an index entry naming bytes that
are not all there. Files are never modified once renamed.
"""

from __future__ import annotations

import errno
import functools
import itertools
import math
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import IntegrityError
from ._blosc import blosc2
from .checksum import crc32
from .digest import digest_prefix, parse_kind
from .durable import FILE_MODE
from .threads import run_parallel, syncer

#: payloads of at least this many raw bytes are stored chunked (measured:
#: ``benchmarks/bench_large.py``; below it a pack block reads as fast, and
#: slices of small arrays gain little from partial reads)
THRESHOLD = 1 << 20
#: raw bytes of one chunk at most (a 512x512x3 float32 array: 64x128x3 chunks)
CHUNK_TARGET = 128 * 1024
#: the pack number of a large payload's block row (real packs start at 1)
LARGE_PACK = 0
#: the item offset of a large payload's index entry
LARGE_IOFF = 0xFFFFFFFF
#: sync files to disk before they are indexed (off: safe against a killed
#: process, not against a power cut; the packs never sync)
SYNC = True

MAGIC = b"HGC1"
FORMAT_VERSION = 1
SUFFIX = ".hgc"
CODEC_RAW = 0
CODEC_BLOSC2 = 1
_CLEVEL = 1
#: chunks are compressed when sample chunks shrink by at least this fraction
COMPRESS_GAIN = 0.15

_FIXED = struct.Struct("<4sBBHIQ20s")  # magic, version, flags, kind len, header len, n, digest
_CRC = struct.Struct("<I")
TABLE = np.dtype([("off", "<u8"), ("len", "<u4"), ("crc", "<u4"), ("codec", "u1"), ("pad", "V7")])
_FIRST_READ = 8192  # bytes read to parse a header (more when its table is longer)
_OPEN_FILES = 32  # files (descriptor + parsed header) a reader keeps open


# --------------------------------------------------------------------------
# chunk geometry
# --------------------------------------------------------------------------
def choose_chunks(shape: Sequence[int], itemsize: int, target: int | None = None) -> tuple:
    """Chunk shape for an array: halve its longest axis (the first, on a tie)
    until a chunk holds at most ``target`` bytes.

    Short trailing axes (channels) stay whole and chunks stay close to cubes,
    so a slice along any axis touches few chunks.
    """
    target = CHUNK_TARGET if target is None else target
    c = [max(1, int(s)) for s in shape]
    while c and math.prod(c) * itemsize > target:
        i = c.index(max(c))
        if c[i] == 1:
            break
        c[i] = (c[i] + 1) // 2
    return tuple(c)


class Part(NamedTuple):
    """Where chunk ``i`` of a :class:`Layout` sits in a C-contiguous array."""

    region: tuple[Any, ...]  # index of its region (a view, also of a 0-d array)
    shape: tuple[int, ...]
    nbytes: int
    start: int  # byte offset of its first item
    contiguous: bool  # its bytes are one run of the array's


class Layout:
    """The chunk grid of an array: which region of it each chunk holds."""

    __slots__ = ("_byte_strides", "_parts", "_strides", "chunks", "dtype", "grid", "n", "shape")

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...]) -> None:
        if len(chunks) != len(shape) or any(c < 1 for c in chunks):
            raise ValueError(f"chunk shape {chunks} does not fit array shape {shape}")
        self.shape = shape
        self.dtype = dtype
        self.chunks = chunks
        self.grid = tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))
        self.n = math.prod(self.grid)
        strides, bstrides = [], []
        acc, bacc = 1, dtype.itemsize
        for g, s in zip(reversed(self.grid), reversed(shape), strict=True):
            strides.append(acc)
            bstrides.append(bacc)
            acc *= g
            bacc *= s
        self._strides = tuple(reversed(strides))
        self._byte_strides = tuple(reversed(bstrides))
        self._parts: list[Part] | None = None

    def part(self, i: int) -> Part:
        """Chunk ``i``'s :class:`Part` (kept for reuse unless the grid is huge)."""
        parts = self._parts
        if parts is None:
            if self.n > 1 << 14:
                return self._part(i)
            parts = self._parts = [self._part(j) for j in range(self.n)]
        return parts[i]

    def _part(self, i: int) -> Part:
        coords = self.coords(i)
        start = [k * c for k, c in zip(coords, self.chunks, strict=True)]
        shape = tuple(
            min(a + c, s) - a for a, c, s in zip(start, self.chunks, self.shape, strict=True)
        )
        region = (*(slice(a, a + e) for a, e in zip(start, shape, strict=True)), Ellipsis)
        first = sum(a * b for a, b in zip(start, self._byte_strides, strict=True))
        # contiguous: whole along every axis after the last it does not span whole
        m = max((j for j in range(len(shape)) if shape[j] != self.shape[j]), default=0)
        contiguous = all(e == 1 for e in shape[:m])
        nbytes = math.prod(shape) * self.dtype.itemsize
        return Part(region, shape, nbytes, first, contiguous)

    def coords(self, i: int) -> tuple[int, ...]:
        """Grid coordinates of chunk ``i`` (C order)."""
        return tuple((i // s) % g for s, g in zip(self._strides, self.grid, strict=True))

    def index(self, coords: Sequence[int]) -> int:
        return sum(c * s for c, s in zip(coords, self._strides, strict=True))

    @property
    def max_chunk_bytes(self) -> int:
        return math.prod(self.chunks) * self.dtype.itemsize


@functools.lru_cache(maxsize=256)
def layout_of(shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...]) -> Layout:
    """A shared :class:`Layout` (files of one kind share their chunk geometry)."""
    return Layout(shape, dtype, chunks)


# --------------------------------------------------------------------------
# header
# --------------------------------------------------------------------------
class Header(NamedTuple):
    """A parsed file header."""

    digest: bytes
    kind: str
    layout: Layout
    table: np.ndarray  # of TABLE
    length: int  # bytes of the header (the first chunk starts here)


def header_length(kind: str, ndim: int, n: int) -> int:
    return _FIXED.size + len(kind.encode()) + 8 * ndim + TABLE.itemsize * n + _CRC.size


def encode_header(digest: bytes, kind: str, chunks: Sequence[int], table: np.ndarray) -> bytes:
    kb = kind.encode()
    hlen = header_length(kind, len(chunks), len(table))
    body = b"".join(
        [
            _FIXED.pack(MAGIC, FORMAT_VERSION, 0, len(kb), hlen, len(table), digest),
            kb,
            np.asarray(chunks, "<u8").tobytes(),
            np.ascontiguousarray(table, TABLE).tobytes(),
        ]
    )
    return body + _CRC.pack(crc32(body))


def decode_header(buf: bytes, where: str) -> Header:
    """Parse and check a header (``buf`` holds at least all of it).

    Raises
    ------
    IntegrityError
        Bad magic, a newer format, a length or CRC that does not add up.
    """
    if len(buf) < _FIXED.size:
        raise IntegrityError(f"large payload file {where} is truncated")
    magic, version, _flags, klen, hlen, n, digest = _FIXED.unpack_from(buf)
    if magic != MAGIC:
        raise IntegrityError(f"large payload file {where} is not a chunked payload file")
    if version > FORMAT_VERSION:
        raise IntegrityError(
            f"large payload file {where} has format {version}, newer than this hangar-git "
            "understands: upgrade hangar-git"
        )
    if hlen > len(buf) or hlen < _FIXED.size + klen + _CRC.size:
        raise IntegrityError(f"large payload file {where} has a truncated header")
    (crc,) = _CRC.unpack_from(buf, hlen - _CRC.size)
    if crc32(memoryview(buf)[: hlen - _CRC.size]) != crc:
        raise IntegrityError(f"the header of large payload file {where} fails its checksum")
    try:
        kind = bytes(buf[_FIXED.size : _FIXED.size + klen]).decode()
        dtype, shape = parse_kind(kind)
        pos = _FIXED.size + klen
        ndim = len(shape)
        chunks = tuple(int(c) for c in np.frombuffer(buf, "<u8", ndim, pos))
        pos += 8 * ndim
        if hlen != header_length(kind, ndim, n):
            raise ValueError("header length does not add up")
        table = np.frombuffer(buf, TABLE, n, pos)
        layout = layout_of(shape, dtype, chunks)
        if layout.n != n and math.prod(shape) != 0:
            raise ValueError("chunk count does not fit the chunk grid")
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"the header of large payload file {where} is malformed: {exc}")
    return Header(bytes(digest), kind, layout, table, hlen)


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
def flat_bytes(a: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array (0-d and empty ones included)."""
    return a.reshape(-1).data.cast("B")


def _pwrite(fd: int, data: bytes | memoryview, off: int) -> None:
    """Write all of ``data`` at ``off``."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        if n <= 0:  # no progress: the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]
        off += n


def _compress(raw: memoryview, typesize: int) -> bytes | None:
    """``raw`` compressed, or None when that saves less than 5 %."""
    if len(raw) < 128:
        return None
    comp = blosc2.compress2(
        raw,
        typesize=max(1, min(typesize, 255)),
        clevel=_CLEVEL,
        filters=[blosc2.Filter.SHUFFLE],
        codec=blosc2.Codec.LZ4,
        nthreads=1,
    )
    return comp if len(comp) < len(raw) * 0.95 else None


def _contiguous(arr: np.ndarray, part: Part, tmp: np.ndarray) -> memoryview:
    """The bytes of chunk ``part`` of ``arr``, copied into ``tmp`` (uint8)."""
    dst = tmp[: part.nbytes].view(arr.dtype).reshape(part.shape)
    np.copyto(dst, arr[part.region])
    return flat_bytes(dst)


def worth_compressing(arr: np.ndarray, layout: Layout) -> bool:
    """True when sample chunks (the first and the middle one) shrink by at
    least :data:`COMPRESS_GAIN` when compressed; chunks of arrays that do not
    (random floats save under 10 %) are stored raw, which costs no CPU."""
    if not arr.size or not layout.n:
        return False
    tmp = np.empty(layout.max_chunk_bytes, np.uint8)
    for i in sorted({0, layout.n // 2}):
        part = layout.part(i)
        comp = _compress(_contiguous(arr, part, tmp), arr.dtype.itemsize)
        if comp is not None and len(comp) <= part.nbytes * (1 - COMPRESS_GAIN):
            return True
    return False


def write_file(
    path: Path, digest: bytes, kind: str, arr: np.ndarray, chunks: Sequence[int] | None = None
) -> int:
    """Write ``arr`` as a chunked payload file at ``path`` (created, not synced).

    ``arr`` may have any memory layout. Raw chunks of a C-contiguous array
    are written straight from it (``pwritev`` of their runs); others are
    copied one at a time into a buffer per thread, so no second copy of the
    whole array is ever made. Returns the file size. The caller syncs the
    file and renames it into place (see :meth:`LargeFiles.place`).
    """
    if arr.dtype.hasobject:
        raise ValueError("object arrays cannot be stored")
    shape = tuple(arr.shape)
    typesize = arr.dtype.itemsize
    if chunks is None:
        chunks = choose_chunks(shape, typesize)
    layout = layout_of(shape, arr.dtype, tuple(chunks))
    if layout.max_chunk_bytes > 1 << 30:
        raise ValueError(f"chunks of {layout.max_chunk_bytes} bytes are too big (1 GiB at most)")
    n = layout.n if arr.size else 0
    table = np.zeros(n, TABLE)
    hlen = header_length(kind, len(shape), n)
    base = flat_bytes(arr) if arr.flags.c_contiguous else None
    compress = worth_compressing(arr, layout)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        end = [hlen]
        lock = threading.Lock()
        local = threading.local()

        def one(i: int) -> None:
            part = layout.part(i)
            body: memoryview | bytes
            if base is not None and part.contiguous:  # straight from the array
                body = base[part.start : part.start + part.nbytes]
            else:  # copied into a buffer of this thread (faster than a vectored write)
                tmp = getattr(local, "tmp", None)
                if tmp is None:
                    tmp = local.tmp = np.empty(layout.max_chunk_bytes, np.uint8)
                body = _contiguous(arr, part, tmp)
            codec = CODEC_RAW
            comp = _compress(body, typesize) if compress else None
            if comp is not None:
                body, codec = comp, CODEC_BLOSC2
            crc = crc32(body)
            with lock:
                off = end[0]
                end[0] += len(body)
            _pwrite(fd, body, off)
            table[i] = (off, len(body), crc, codec, b"")

        run_parallel(one, n)
        _pwrite(fd, encode_header(digest, kind, layout.chunks, table), 0)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return end[0]


def fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Pending(NamedTuple):
    """A large payload written to a temporary file, not yet in place."""

    number: int
    digest: bytes
    kind: str
    size: int
    tmp: Path
    synced: Future[None] | None = None  # its sync, started in the background


class LargeFiles:
    """The ``large/`` directory of a store: paths, writing and collecting."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp_dir = self.root / "tmp"

    def path(self, number: int) -> Path:
        return self.root / f"{number:010d}{SUFFIX}"

    def numbers(self) -> dict[int, int]:
        """``{file number: size}`` of every file in place."""
        out: dict[int, int] = {}
        try:
            it = os.scandir(self.root)
        except FileNotFoundError:
            return out
        with it:
            for e in it:
                stem, dot, ext = e.name.partition(".")
                if dot and "." + ext == SUFFIX and stem.isdigit() and e.is_file():
                    out[int(stem)] = e.stat().st_size
        return out

    def clean_temporary(self) -> int:
        """Remove temporary files (left by a killed writer); only the store's
        writer may call this. Returns how many there were."""
        n = 0
        try:
            it = os.scandir(self.tmp_dir)
        except FileNotFoundError:
            return 0
        with it:
            for e in it:
                try:
                    os.unlink(e.path)
                    n += 1
                except FileNotFoundError:
                    pass
        return n

    def write_temporary(self, number: int, digest: bytes, kind: str, data: memoryview) -> Pending:
        """Write a payload to a temporary file (see :meth:`place`)."""
        dtype, shape = parse_kind(kind)
        arr = np.frombuffer(data, dtype=dtype).reshape(shape)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_dir / f"{number:010d}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        size = write_file(tmp, digest, kind, arr)
        # its sync runs while the caller goes on (the disk works while we compute)
        synced = syncer().submit(fsync_path, tmp) if SYNC else None
        return Pending(number, digest, kind, size, tmp, synced)

    def place(self, pending: Sequence[Pending], sync: bool | None = None) -> None:
        """Sync the temporary files of ``pending`` and rename them into place.

        After this they may be indexed; a file left in place unindexed (a
        writer killed before its index commit) is removed by ``gc``.
        """
        if not pending:
            return
        sync = SYNC if sync is None else sync
        # a retry after a failure finds some files in place already
        todo = [p for p in pending if p.tmp.exists() or not self.path(p.number).exists()]
        if sync:
            for p in todo:
                try:
                    if p.synced is None:
                        raise OSError("not synced yet")
                    p.synced.result()  # raises what the background sync raised
                except OSError:
                    # synced here (again: a retry after space returned must not
                    # meet the first attempt's error); raises if it fails now
                    fsync_path(p.tmp)
        for p in todo:
            os.replace(p.tmp, self.path(p.number))
        if sync:
            fsync_path(self.root, directory=True)

    def discard(self, pending: Iterable[Pending]) -> None:
        for p in pending:
            p.tmp.unlink(missing_ok=True)

    def collect(self, keep: set[int], dry_run: bool = False) -> tuple[int, int, int]:
        """Delete every file whose number is not in ``keep``.

        Only for ``gc`` (which holds the store's write lock, so no file is
        being written): a reader that has such a file open keeps reading it.
        Returns ``(files deleted, bytes before, bytes after)``.
        """
        files = self.numbers()
        before = sum(files.values())
        gone = [n for n in files if n not in keep]
        if not dry_run:
            for n in gone:
                self.path(n).unlink(missing_ok=True)
            self.clean_temporary()
        return len(gone), before, before - sum(files[n] for n in gone)


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------
class _Open(NamedTuple):
    number: int
    fd: int
    header: Header
    path: Path
    size: int
    chunks: list[tuple[int, int, int, int]]  # per chunk: offset, length, crc, codec


#: arrays smaller than this read in one batch share one buffer (see :func:`empty_arrays`)
SHARED_MAX = 4 << 20


def empty_arrays(specs: Sequence[tuple[np.dtype, tuple[int, ...]]]) -> list[np.ndarray]:
    """Arrays to read a batch of large payloads into, of the ``(dtype, shape)``
    given.

    Arrays of one kind under :data:`SHARED_MAX` bytes are rows of one buffer
    (as the pack reader's batches are): one allocation, which the system
    backs with huge pages, where one allocation each would fault every 4 KiB
    page in; bigger arrays get huge pages on their own and are allocated
    apart, so keeping one of them alive keeps no other.
    """
    out: list[np.ndarray] = [None] * len(specs)  # type: ignore[list-item]
    groups: dict[tuple[np.dtype, tuple[int, ...]], list[int]] = {}
    for i, (dtype, shape) in enumerate(specs):
        if math.prod(shape) * dtype.itemsize < SHARED_MAX:
            groups.setdefault((dtype, shape), []).append(i)
        else:
            out[i] = np.empty(shape, dtype)
    for (dtype, shape), idx in groups.items():
        buf = np.empty((len(idx), *shape), dtype)
        for k, i in enumerate(idx):
            out[i] = buf[k]
    return out


def open_file(path: Path, number: int = -1) -> _Open:
    """Open a chunked payload file and check its header (the caller closes
    ``.fd``).

    Raises
    ------
    IntegrityError
        If the file is missing, truncated or its header is damaged.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise IntegrityError(f"large payload file {path} is missing") from None
    try:
        size = os.fstat(fd).st_size
        buf = os.pread(fd, _FIRST_READ, 0)
        if len(buf) >= _FIXED.size:
            hlen = _FIXED.unpack_from(buf)[4]
            if len(buf) < hlen <= size:
                buf = os.pread(fd, hlen, 0)
        header = decode_header(buf, str(path))
        t = header.table
        if len(t) and int((t["off"] + t["len"]).max()) > size:
            raise IntegrityError(f"large payload file {path} is truncated")
    except BaseException:
        os.close(fd)
        raise
    cols = [t[f].tolist() for f in ("off", "len", "crc", "codec")]
    return _Open(number, fd, header, path, size, list(zip(*cols, strict=True)))


def verify_file(path: Path, digest: bytes) -> str:
    """Check a whole chunked payload file (one that arrived from a remote):
    its header, every chunk, and that it holds payload ``digest``. Returns
    its kind header.

    Raises
    ------
    IntegrityError
        If anything does not match.
    """
    o = open_file(path)
    try:
        if o.header.digest != digest:
            raise IntegrityError(
                f"{path} holds payload {o.header.digest.hex()}, not {digest.hex()}"
            )
        if LargeReader(LargeFiles(path.parent))._hash(o) != digest:
            raise IntegrityError(f"{path} does not match its digest {digest.hex()}")
        return o.header.kind
    finally:
        os.close(o.fd)


class LargeReader:
    """Reads large payload files: whole, into given buffers, or by slices.

    Keeps up to :data:`_OPEN_FILES` files open with their parsed headers
    (files never change once written, so what it keeps stays true).
    """

    def __init__(self, files: LargeFiles) -> None:
        self.files = files
        self._open: OrderedDict[int, _Open] = OrderedDict()
        self._pins: dict[int, int] = {}  # file number -> operations using it
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for o in self._open.values():
                os.close(o.fd)
            self._open.clear()

    @contextmanager
    def _pinned(self, numbers: Iterable[int]) -> Iterator[None]:
        """Keep files ``numbers`` open (their descriptors valid) inside the block."""
        numbers = list(numbers)
        with self._lock:
            for n in numbers:
                self._pins[n] = self._pins.get(n, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                for n in numbers:
                    left = self._pins.pop(n) - 1
                    if left:
                        self._pins[n] = left
                self._trim()

    def _trim(self) -> None:
        """Close the least recently used files beyond the limit (not pinned ones)."""
        extra = len(self._open) - _OPEN_FILES
        if extra <= 0:
            return
        for n in [n for n in self._open if n not in self._pins][:extra]:
            os.close(self._open.pop(n).fd)

    def open(self, number: int, kind: str | None = None) -> _Open:
        """The open file ``number`` and its header (checked against ``kind``).

        Its descriptor stays valid until the next call of another method,
        or, inside ``_pinned``, until the block ends.
        """
        o = self._open.get(number)
        if o is None:
            o = self._load(number)
        else:
            self._open.move_to_end(number)
        if kind is not None and o.header.kind != kind:
            raise IntegrityError(
                f"large payload file {o.path} holds a {o.header.kind!r} array, "
                f"its index entry says {kind!r}"
            )
        return o

    def _load(self, number: int) -> _Open:
        o = open_file(self.files.path(number), number)
        with self._lock:
            old = self._open.pop(number, None)
            self._open[number] = o
            self._trim()
        if old is not None:
            os.close(old.fd)
        return o

    # ---- chunks --------------------------------------------------------
    @staticmethod
    def _scratch(local: threading.local, layout: Layout) -> np.ndarray:
        """A per-thread buffer for one decoded chunk."""
        tmp = getattr(local, "tmp", None)
        if tmp is None or len(tmp) < layout.max_chunk_bytes:
            tmp = local.tmp = np.empty(layout.max_chunk_bytes, np.uint8)
        return tmp

    @staticmethod
    def _body(o: _Open, i: int, local: threading.local) -> memoryview:
        """The stored bytes of chunk ``i``, checksum verified (a per-thread buffer)."""
        off, length, crc, _ = o.chunks[i]
        buf = getattr(local, "body", None)
        if buf is None or len(buf) < length:
            buf = local.body = bytearray(max(length, 2 * len(buf) if buf else length))
        body = memoryview(buf)[:length]
        if os.preadv(o.fd, [body], off) != length:
            raise IntegrityError(f"chunk {i} of {o.path} is truncated")
        if crc32(body) != crc:
            raise IntegrityError(f"chunk {i} of {o.path} fails its checksum")
        return body

    @staticmethod
    def _decompress(o: _Open, i: int, body: memoryview, dst: memoryview) -> None:
        codec = o.chunks[i][3]
        if codec != CODEC_BLOSC2:
            raise IntegrityError(f"chunk {i} of {o.path} has unknown codec {codec}")
        try:
            if blosc2.get_cbuffer_sizes(body)[0] != len(dst):
                raise ValueError("it decodes to the wrong length")
            blosc2.decompress2(body, dst=dst, nthreads=1)
        except Exception as exc:  # blosc2 raises RuntimeError / ValueError
            raise IntegrityError(f"chunk {i} of {o.path} cannot be decoded: {exc}") from None

    def _into(
        self,
        o: _Open,
        i: int,
        dest: np.ndarray,
        base: memoryview,
        row0: int,
        local: threading.local,
    ) -> None:
        """Decode chunk ``i`` into its place in ``dest``: the C-contiguous rows
        ``row0:`` of the array (bytes ``base``). Raw chunks are read straight
        into place (``preadv`` of their runs)."""
        lay = o.header.layout
        part = lay.part(i)
        if part.contiguous:  # decoded in place
            start = part.start - (row0 * lay._byte_strides[0] if row0 else 0)
            self._decode_to(o, i, base[start : start + part.nbytes], local)
            return
        tmp = self._scratch(local, lay)[: part.nbytes]
        self._decode_to(o, i, tmp.data, local)
        region = part.region
        if row0:
            r0 = region[0]
            region = (slice(r0.start - row0, r0.stop - row0), *region[1:])
        dest[region] = tmp.view(lay.dtype).reshape(part.shape)

    def _decode_to(self, o: _Open, i: int, dst: memoryview, local: threading.local) -> None:
        """Chunk ``i`` decoded into ``dst`` (its size exactly), checksum verified."""
        off, length, crc, codec = o.chunks[i]
        if codec == CODEC_RAW:
            if length != len(dst) or os.preadv(o.fd, [dst], off) != length:
                raise IntegrityError(f"chunk {i} of {o.path} is truncated")
            if crc32(dst) != crc:
                raise IntegrityError(f"chunk {i} of {o.path} fails its checksum")
        else:
            self._decompress(o, i, self._body(o, i, local), dst)

    def _decode(self, o: _Open, i: int, local: threading.local) -> np.ndarray:
        """Chunk ``i`` decoded, as an array of its shape in a per-thread buffer."""
        lay = o.header.layout
        part = lay.part(i)
        tmp = self._scratch(local, lay)[: part.nbytes]
        self._decode_to(o, i, tmp.data, local)
        return tmp.view(lay.dtype).reshape(part.shape)

    # ---- whole arrays --------------------------------------------------
    def read(self, number: int, kind: str | None = None) -> np.ndarray:
        """The whole array of file ``number`` (fresh and writeable)."""
        with self._pinned([number]):
            lay = self.open(number, kind).header.layout
            out = np.empty(lay.shape, lay.dtype)
            self.read_many([(number, out)], kind)
        return out

    def read_many(
        self, items: Sequence[tuple[int, np.ndarray]], kind: str | Sequence[str] | None = None
    ) -> None:
        """Fill each ``out`` array with the whole array of file ``number``.

        The chunks of all the files are decoded on every core. Each ``out``
        must be C-contiguous, of the file's dtype and shape (or flat bytes of
        the same size).
        """
        with self._pinned(n for n, _ in items):
            self._read_many(items, kind)

    def _read_many(
        self, items: Sequence[tuple[int, np.ndarray]], kind: str | Sequence[str] | None
    ) -> None:
        kinds = [kind] * len(items) if kind is None or isinstance(kind, str) else list(kind)
        tasks: list[tuple[_Open, int, np.ndarray, memoryview]] = []
        for (number, out), k in zip(items, kinds, strict=True):
            o = self.open(number, k)
            lay = o.header.layout
            if out.nbytes != math.prod(lay.shape) * lay.dtype.itemsize:
                raise ValueError("output buffer of the wrong size")
            if not out.flags.c_contiguous:
                raise ValueError("output buffer not C-contiguous")
            typed = out.reshape(-1).view(np.uint8).view(lay.dtype).reshape(lay.shape)
            base = flat_bytes(typed)
            tasks.extend((o, i, typed, base) for i in range(len(o.chunks)))
        local = threading.local()

        def one(t: int) -> None:
            o, i, typed, base = tasks[t]
            self._into(o, i, typed, base, 0, local)

        run_parallel(one, len(tasks))

    # ---- slices --------------------------------------------------------
    def read_region(self, number: int, index: Any, kind: str | None = None) -> Any:
        """``array[index]`` of file ``number``, reading only the chunks it needs.

        ``index`` is what follows the key in ``aset[key, ...]``: ints, slices
        (any step, negative bounds) and ``...``; other index kinds (arrays,
        ``None``) read the whole array and index it. Returns what numpy's
        indexing returns, always a fresh array (or a scalar when every axis
        is an int).
        """
        with self._pinned([number]):
            return self._read_region(self.open(number, kind), index)

    def _read_region(self, o: _Open, index: Any) -> Any:
        lay = o.header.layout
        plan = _plan(lay.shape, index)
        if plan is None:
            out = np.empty(lay.shape, lay.dtype)
            self._read_many([(o.number, out)], o.header.kind)
            got = out[index]
            return got.copy() if isinstance(got, np.ndarray) and got.base is not None else got
        axes, out_shape, scalar = plan
        out = np.empty(out_shape, lay.dtype)
        if out.size:
            # per axis: the chunks touched, and for each the (chunk slice, out slice)
            per_axis = [_axis_parts(ax, c) for ax, c in zip(axes, lay.chunks, strict=True)]
            combos = list(itertools.product(*per_axis))
            local = threading.local()
            keep = [not ax[3] for ax in axes]  # axes kept in the output (not ints)

            def one(t: int) -> None:
                parts = combos[t]
                chunk = self._decode(o, lay.index([p[0] for p in parts]), local)
                src = tuple(p[1] for p in parts)
                dst = tuple(p[2] for p, k in zip(parts, keep, strict=True) if k)
                out[dst] = chunk[src]

            run_parallel(one, len(combos), workers=1 if len(combos) < 4 else None)
        return out[()] if scalar else out

    # ---- verification --------------------------------------------------
    def verify(self, number: int, digest: bytes, kind: str | None = None) -> None:
        """Check every chunk of file ``number`` and the payload's digest.

        The array is decoded a slab of chunks at a time (the chunks sharing a
        first-axis position) and hashed as it goes, so this needs memory for
        one slab, not for the whole array.

        Raises
        ------
        IntegrityError
            If a chunk fails its checksum or the bytes do not hash to ``digest``.
        """
        with self._pinned([number]):
            o = self.open(number, kind)
            if o.header.digest != digest:
                raise IntegrityError(
                    f"large payload file {o.path} holds payload {o.header.digest.hex()}, "
                    f"not {digest.hex()}"
                )
            if self._hash(o) != digest:
                raise IntegrityError(
                    f"large payload file {o.path} does not match its digest {digest.hex()}"
                )

    def _hash(self, o: _Open) -> bytes:
        """The digest of the array in ``o``, every chunk checked on the way."""
        lay = o.header.layout
        hasher = digest_prefix(o.header.kind).copy()
        if not lay.shape or not math.prod(lay.shape):  # 0-d or empty
            out = np.empty(lay.shape, lay.dtype)
            if out.size:
                self._into(o, 0, out, flat_bytes(out), 0, threading.local())
            hasher.update(flat_bytes(out))
            return hasher.digest()
        per_slab = lay.n // lay.grid[0]
        c0 = lay.chunks[0]
        slab = np.empty((min(c0, lay.shape[0]), *lay.shape[1:]), lay.dtype)
        local = threading.local()
        for g in range(lay.grid[0]):
            row0 = g * c0
            view = slab[: min(c0, lay.shape[0] - row0)]
            base = flat_bytes(view)
            first = g * per_slab

            def one(
                t: int,
                view: np.ndarray = view,
                base: memoryview = base,
                row0: int = row0,
                first: int = first,
            ) -> None:
                self._into(o, first + t, view, base, row0, local)

            run_parallel(one, per_slab)
            hasher.update(base)
        return hasher.digest()


# --------------------------------------------------------------------------
# index planning for slices
# --------------------------------------------------------------------------
# one axis of a basic index: (first, step, count, is_int)
_Axis = tuple[int, int, int, bool]


def _plan(
    shape: tuple[int, ...], index: object
) -> tuple[list[_Axis], tuple[int, ...], bool] | None:
    """Per-axis selections of a basic ``index``, the result's shape and
    whether numpy would return a scalar; None when ``index`` is not made of
    ints, slices and one ``...``.

    Raises IndexError for what numpy would refuse (too many indices, an int
    out of bounds).
    """
    items = index if isinstance(index, tuple) else (index,)
    for it in items:
        if it is Ellipsis or isinstance(it, slice):
            continue
        if isinstance(it, (bool, np.bool_)) or not isinstance(it, (int, np.integer)):
            return None
    n_ell = sum(1 for it in items if it is Ellipsis)
    if n_ell > 1:
        return None
    if len(items) - n_ell > len(shape):
        raise IndexError(
            f"too many indices for array: array is {len(shape)}-dimensional, "
            f"but {len(items) - n_ell} were indexed"
        )
    if n_ell:
        k = items.index(Ellipsis)
        fill = (slice(None),) * (len(shape) - (len(items) - 1))
        items = items[:k] + fill + items[k + 1 :]
    else:
        items = items + (slice(None),) * (len(shape) - len(items))
    axes: list[_Axis] = []
    out_shape: list[int] = []
    for ax, (it, size) in enumerate(zip(items, shape, strict=True)):
        if isinstance(it, slice):
            start, stop, step = it.indices(size)
            count = len(range(start, stop, step))
            axes.append((start, step, count, False))
            out_shape.append(count)
        else:
            i = int(it)
            if not -size <= i < size:
                raise IndexError(f"index {i} is out of bounds for axis {ax} with size {size}")
            axes.append((i % size, 1, 1, True))
    return axes, tuple(out_shape), not n_ell and all(a[3] for a in axes)


def _axis_parts(ax: _Axis, chunk: int) -> list[tuple[int, Any, slice]]:
    """For one axis: ``(chunk position, slice within the chunk, slice of the
    output)`` of every chunk holding a selected coordinate."""
    first, step, count, is_int = ax
    if is_int:
        return [(first // chunk, first % chunk, slice(0, 1))]
    out: list[tuple[int, Any, slice]] = []
    last = first + (count - 1) * step
    lo, hi = min(first, last), max(first, last)
    for c in range(lo // chunk, hi // chunk + 1):
        a, b = c * chunk, (c + 1) * chunk  # the chunk's coordinates [a, b)
        if step > 0:
            k0 = max(0, -(-(a - first) // step))
            k1 = min(count - 1, (b - 1 - first) // step)
        else:
            s = -step
            k0 = max(0, -(-(first - (b - 1)) // s))
            k1 = min(count - 1, (first - a) // s)
        if k0 > k1:
            continue
        p0 = first + k0 * step - a
        p1 = first + k1 * step - a
        stop = p1 + (1 if step > 0 else -1)
        out.append((c, slice(p0, stop if stop >= 0 else None, step), slice(k0, k1 + 1)))
    return out


__all__ = [
    "CHUNK_TARGET",
    "LARGE_IOFF",
    "LARGE_PACK",
    "THRESHOLD",
    "Header",
    "LargeFiles",
    "LargeReader",
    "Layout",
    "Pending",
    "choose_chunks",
    "decode_header",
    "encode_header",
    "write_file",
]
