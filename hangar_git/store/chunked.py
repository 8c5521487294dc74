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

The index entry of a large payload and the ``.hgc`` file layout are
described in :mod:`.chunk_format`.

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
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import IntegrityError
from . import threads
from .blosc_codec import blosc2
from .blosc_codec import compress as blosc_compress
from .checksum import crc32
from .chunk_format import (
    CODEC_BLOSC2,
    CODEC_RAW,
    CRC,
    FIRST_READ,
    FIXED,
    FORMAT_VERSION,
    LARGE_IOFF,
    LARGE_PACK,
    MAGIC,
    SUFFIX,
    TABLE,
    Header,
    Layout,
    Part,
    decode_header,
    encode_header,
    flat_bytes,
    header_length,
    layout_of,
    part_bytes,
)
from .digest import digest_bytes, parse_kind
from .durable import FILE_MODE
from .large_reader import SHARED_MAX, LargeReader, empty_arrays, open_file
from .threads import hasher, run_parallel, syncer

#: payloads of at least this many raw bytes are stored chunked (measured:
#: ``benchmarks/bench_large.py``; below it a pack block reads as fast, and
#: slices of small arrays gain little from partial reads)
THRESHOLD = 1 << 20
#: raw bytes of one chunk at most (a 512x512x3 float32 array: 64x128x3 chunks)
CHUNK_TARGET = 128 * 1024
#: sync files to disk before they are indexed (off: safe against a killed
#: process, not against a power cut; the packs never sync)
SYNC = True
_CLEVEL = 1
#: chunks are compressed when sample chunks shrink by at least this fraction
COMPRESS_GAIN = 0.15


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


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
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


def worth_compressing(arr: np.ndarray, layout: Layout) -> bool:
    """True when sample chunks (the first and the middle one) shrink by at
    least :data:`COMPRESS_GAIN` when compressed; chunks of arrays that do not
    (random floats save under 10 %) are stored raw, which costs no CPU.

    The samples go through C-Blosc2's global context (:func:`.blosc_codec.compress`,
    same codec and settings), which spares the ``blosc2`` package's import
    (a third of a second) when nothing is compressed."""
    if not arr.size or not layout.n:
        return False
    tmp = np.empty(layout.max_chunk_bytes, np.uint8)
    for i in sorted({0, layout.n // 2}):
        part = layout.part(i)
        if part.nbytes < 128:
            continue
        raw = part_bytes(arr, part, tmp)
        typesize = max(1, min(arr.dtype.itemsize, 255))
        comp = blosc_compress(raw, typesize=typesize, clevel=_CLEVEL, codec="lz4")
        if len(comp) <= part.nbytes * (1 - COMPRESS_GAIN):
            return True
    return False


def write_file(
    path: Path,
    digest: bytes | Callable[[], bytes],
    kind: str,
    arr: np.ndarray,
    chunks: Sequence[int] | None = None,
) -> int:
    """Write ``arr`` as a chunked payload file at ``path`` (created, not synced).

    ``digest`` may be a function giving it, called once the chunks are
    written (the header, which holds it, is written last). ``arr`` may have
    any memory layout. Raw chunks of a C-contiguous array
    are written straight from it (``pwritev`` of their runs); others are
    copied one at a time into a buffer per thread, so no second copy of the
    whole array is ever made. Chunks are compressed and copied on every core
    (one fewer while ``digest`` is being computed); raw chunks of a
    C-contiguous array by one thread (little work but the writes, which the
    system serialises for one file: more threads only contend; measured with
    100 arrays of 3 MB: 7% less CPU). Returns the file size. The caller syncs the
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
                body = part_bytes(arr, part, tmp)
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

        workers: int | None = None
        if not compress and base is not None:  # little work but the writes, which
            workers = 1  # the system serialises (one file): threads only contend
        elif callable(digest):  # a digest being computed keeps a core of its own
            workers = max(1, threads.WORKERS - 1)
        run_parallel(one, n, workers)
        if not isinstance(digest, bytes):
            digest = digest()
        _pwrite(fd, encode_header(digest, kind, layout.chunks, table), 0)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return end[0]


def fsync_path(path: Path, directory: bool = False) -> None:
    """Sync file (or, with ``directory``, directory) ``path`` to the disk."""
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
        """Path of large payload file ``number``."""
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

    def write_temporary(
        self, number: int, digest: bytes | None, kind: str, data: memoryview, sync: bool = True
    ) -> Pending:
        """Write a payload to a temporary file (see :meth:`place`).

        With ``digest`` None, the digest is computed on another thread while
        the chunks are written (the returned :class:`Pending` holds it).
        Without ``sync``, the file's sync is left to :meth:`start_sync`."""
        dtype, shape = parse_kind(kind)
        arr = np.frombuffer(data, dtype=dtype).reshape(shape)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_dir / f"{number:010d}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        if digest is None:
            hashed = hasher().submit(digest_bytes, kind, data)
            try:
                size = write_file(tmp, hashed.result, kind, arr)
            finally:
                digest = hashed.result()  # done with the buffer before returning
        else:
            size = write_file(tmp, digest, kind, arr)
        pending = Pending(number, digest, kind, size, tmp)
        return self.start_sync(pending) if sync else pending

    def start_sync(self, p: Pending) -> Pending:
        """``p`` with its file's sync started: it runs while the caller goes on
        (the disk works while we compute); :meth:`place` waits for it."""
        return p._replace(synced=syncer().submit(fsync_path, p.tmp)) if SYNC else p

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
        """Remove the temporary files of ``pending`` (a failed write)."""
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
        if LargeReader(LargeFiles(path.parent)).digest_of(o) != digest:
            raise IntegrityError(f"{path} does not match its digest {digest.hex()}")
        return o.header.kind
    finally:
        os.close(o.fd)


__all__ = [
    "CHUNK_TARGET",
    "CODEC_BLOSC2",
    "CODEC_RAW",
    "CRC",
    "FIRST_READ",
    "FIXED",
    "FORMAT_VERSION",
    "LARGE_IOFF",
    "LARGE_PACK",
    "MAGIC",
    "SHARED_MAX",
    "SUFFIX",
    "TABLE",
    "THRESHOLD",
    "Header",
    "LargeFiles",
    "LargeReader",
    "Layout",
    "Part",
    "Pending",
    "choose_chunks",
    "decode_header",
    "empty_arrays",
    "encode_header",
    "flat_bytes",
    "header_length",
    "layout_of",
    "open_file",
    "verify_file",
    "worth_compressing",
    "write_file",
]
