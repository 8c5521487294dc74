"""The file format of chunked large payloads (``large/<number>.hgc``).

One immutable file per payload of :data:`.chunked.THRESHOLD` bytes or more,
cut into n-d chunks read on their own (see :mod:`.chunked` for why and how
they are written, :mod:`.large_reader` for reading).

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
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import IntegrityError
from .checksum import crc32
from .digest import parse_kind

#: the pack number of a large payload's block row (real packs start at 1)
LARGE_PACK = 0
#: the item offset of a large payload's index entry
LARGE_IOFF = 0xFFFFFFFF


def is_large_entry(ioff: int) -> bool:
    """True when an index entry with item offset ``ioff`` names a large payload
    (a chunked file, not an item of a pack block)."""
    return ioff == LARGE_IOFF


def large_entries(entries: np.ndarray) -> np.ndarray:
    """The boolean mask of the rows of ``entries`` (index entries, the store's
    ``ENTRY`` dtype) that name large payloads."""
    return np.asarray(entries["ioff"] == LARGE_IOFF)


MAGIC = b"HGC1"
FORMAT_VERSION = 1
SUFFIX = ".hgc"
CODEC_RAW = 0
CODEC_BLOSC2 = 1

#: the fixed start of a header: magic, version, flags, kind length, header
#: length, number of chunks, digest
FIXED = struct.Struct("<4sBBHIQ20s")
CRC = struct.Struct("<I")
#: one row of the chunk table
TABLE = np.dtype([("off", "<u8"), ("len", "<u4"), ("crc", "<u4"), ("codec", "u1"), ("pad", "V7")])
#: bytes read to parse a header (more when its table is longer)
FIRST_READ = 8192


class Part(NamedTuple):
    """Where chunk ``i`` of a :class:`Layout` sits in a C-contiguous array."""

    region: tuple[Any, ...]  # index of its region (a view, also of a 0-d array)
    shape: tuple[int, ...]
    nbytes: int
    start: int  # byte offset of its first item
    contiguous: bool  # its bytes are one run of the array's


class Layout:
    """The chunk grid of an array: which region of it each chunk holds.

    Attributes
    ----------
    shape, dtype, chunks : tuple of int, numpy.dtype, tuple of int
        The array's shape and dtype, and the shape of a (full) chunk.
    grid : tuple of int
        Chunks along each axis; ``n`` chunks in all.
    byte_strides : tuple of int
        Bytes from one index to the next along each axis of the C-contiguous
        array.
    """

    __slots__ = ("_parts", "_strides", "byte_strides", "chunks", "dtype", "grid", "n", "shape")

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
        self.byte_strides: tuple[int, ...] = tuple(reversed(bstrides))
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
        first = sum(a * b for a, b in zip(start, self.byte_strides, strict=True))
        # contiguous: whole along every axis after the last it does not span whole
        m = max((j for j in range(len(shape)) if shape[j] != self.shape[j]), default=0)
        contiguous = all(e == 1 for e in shape[:m])
        nbytes = math.prod(shape) * self.dtype.itemsize
        return Part(region, shape, nbytes, first, contiguous)

    def coords(self, i: int) -> tuple[int, ...]:
        """Grid coordinates of chunk ``i`` (C order)."""
        return tuple((i // s) % g for s, g in zip(self._strides, self.grid, strict=True))

    def index(self, coords: Sequence[int]) -> int:
        """Position in C order of the chunk at grid ``coords`` (see :meth:`coords`)."""
        return sum(c * s for c, s in zip(coords, self._strides, strict=True))

    @property
    def max_chunk_bytes(self) -> int:
        """Bytes of the largest chunk (an inner one)."""
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
    """Bytes of the header of a file of kind header ``kind``, ``ndim`` axes
    and ``n`` chunks (its CRC included)."""
    return FIXED.size + len(kind.encode()) + 8 * ndim + TABLE.itemsize * n + CRC.size


def encode_header(digest: bytes, kind: str, chunks: Sequence[int], table: np.ndarray) -> bytes:
    """The header of a chunked payload file (see the module's layout).

    Parameters
    ----------
    digest : bytes
        The payload's digest.
    kind : str
        Its kind header.
    chunks : sequence of int
        The chunk shape.
    table : numpy.ndarray
        The chunk table (:data:`TABLE` rows, C order of the chunk grid).

    Returns
    -------
    bytes
    """
    kb = kind.encode()
    hlen = header_length(kind, len(chunks), len(table))
    body = b"".join(
        [
            FIXED.pack(MAGIC, FORMAT_VERSION, 0, len(kb), hlen, len(table), digest),
            kb,
            np.asarray(chunks, "<u8").tobytes(),
            np.ascontiguousarray(table, TABLE).tobytes(),
        ]
    )
    return body + CRC.pack(crc32(body))


def decode_header(buf: bytes, where: str) -> Header:
    """Parse and check a header (``buf`` holds at least all of it).

    Raises
    ------
    IntegrityError
        Bad magic, a newer format, a length or CRC that does not add up.
    """
    if len(buf) < FIXED.size:
        raise IntegrityError(f"large payload file {where} is truncated")
    magic, version, _flags, klen, hlen, n, digest = FIXED.unpack_from(buf)
    if magic != MAGIC:
        raise IntegrityError(f"large payload file {where} is not a chunked payload file")
    if version > FORMAT_VERSION:
        raise IntegrityError(
            f"large payload file {where} has format {version}, newer than this hangar-git "
            "understands: upgrade hangar-git"
        )
    if hlen > len(buf) or hlen < FIXED.size + klen + CRC.size:
        raise IntegrityError(f"large payload file {where} has a truncated header")
    (crc,) = CRC.unpack_from(buf, hlen - CRC.size)
    if crc32(memoryview(buf)[: hlen - CRC.size]) != crc:
        raise IntegrityError(f"the header of large payload file {where} fails its checksum")
    try:
        kind = bytes(buf[FIXED.size : FIXED.size + klen]).decode()
        dtype, shape = parse_kind(kind)
        pos = FIXED.size + klen
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


def flat_bytes(a: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array (0-d and empty ones included)."""
    return a.reshape(-1).data.cast("B")


def part_bytes(arr: np.ndarray, part: Part, tmp: np.ndarray) -> memoryview:
    """The bytes of chunk ``part`` of ``arr``, copied into ``tmp`` (uint8)."""
    dst = tmp[: part.nbytes].view(arr.dtype).reshape(part.shape)
    np.copyto(dst, arr[part.region])
    return flat_bytes(dst)
