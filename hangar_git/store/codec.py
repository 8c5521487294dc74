"""The block codec of pack files, shared by the local packs and the data remote.

A block is a :data:`.block_format.HEADER` (magic, codec, raw length), the
CRC-32 of the stored bytes, then the stored bytes: the blosc2-compressed
(LZ4, byte shuffle) concatenation of its items' raw bytes, or those bytes as
they are when they do not compress. :func:`encode_block` makes one,
:func:`encode_parts` makes many from rows written where they lie,
:func:`read_block` reads and checks one from a pack file, and
:func:`decode_body` decodes a checked body (the remote's packs use the same
codec numbers).
"""

from __future__ import annotations

import math
import mmap
import os
from pathlib import Path

import numpy as np

from ..errors import IntegrityError
from . import blosc_codec
from .block_format import BLOCK_MAGIC, CODEC_BLOSC2_LZ4, CODEC_RAW, CRC, HEADER, HEADER_SIZE
from .checksum import crc32
from .limits import check_blosc_header

#: largest buffer blosc2 compresses in one call
BLOSC_MAX = 2**31 - 64
#: after this many blocks in a row that did not compress, :func:`encode_parts`
#: tries one in this many only (stores the others raw) until one compresses:
#: a failed try costs as much as compressing (random bytes: 7 ms of 47 MB)
SKIP_AFTER = 8
#: buffers of :func:`scratch` from this size are anonymous memory maps
_SCRATCH_MAP = 4 << 20


def read_block(fd: int, pack: int, boff: int, blen: int, path: Path) -> bytes | memoryview:
    """Read, verify and decompress one block.

    Parameters
    ----------
    fd : int
        The pack file, open for reading.
    pack, boff, blen : int
        The block row: pack number, offset and stored length.
    path : pathlib.Path
        The pack's path, for messages.

    Returns
    -------
    bytes or memoryview
        The decoded bytes.

    Raises
    ------
    IntegrityError
        The block is truncated, fails its checksum or cannot be decoded.
    """
    buf = os.pread(fd, blen, boff)
    if len(buf) != blen or blen < HEADER_SIZE:
        raise IntegrityError(f"block at {boff} of {path} is truncated")
    magic, codec, rawlen = HEADER.unpack_from(buf)
    (crc,) = CRC.unpack_from(buf, HEADER.size)
    body = memoryview(buf)[HEADER_SIZE:]
    if magic != BLOCK_MAGIC or crc32(body) != crc:
        raise IntegrityError(f"block at {boff} of {path} fails its checksum")
    return decode_body(codec, body, rawlen, f"at {boff} of {path}")


def decode_body(
    codec: int, body: memoryview, rawlen: int, where: str, max_raw: int = BLOSC_MAX
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
            raw = blosc_codec.decompress(body)
        except Exception as exc:  # blosc2 raises RuntimeError/ValueError
            raise IntegrityError(f"block {where} cannot be decoded: {exc}") from None
    else:
        raise IntegrityError(f"block {where} has unknown codec {codec}")
    if len(raw) != rawlen:
        raise IntegrityError(f"block {where} has the wrong length")
    return raw


def encode_block(raw: bytes | memoryview, typesize: int, nthreads: int = 1) -> bytes:
    """Compress ``raw`` into a block with its header; raw when incompressible.

    Parameters
    ----------
    raw : bytes or memoryview
        The items' bytes, concatenated.
    typesize : int
        Item size of their dtype (for blosc2's byte shuffle).
    nthreads : int, optional
        Threads blosc2 compresses with.

    Returns
    -------
    bytes
        Header, CRC-32 and stored bytes.
    """
    body: bytes | memoryview = raw
    codec = CODEC_RAW
    if 64 <= len(raw) <= BLOSC_MAX:
        comp = blosc_codec.compress_below(
            raw,
            math.ceil(len(raw) * 0.95),  # kept when under 95% of the raw size
            typesize=max(1, min(typesize, 255)),
            clevel=5,
            codec="lz4",
            nthreads=nthreads,
        )
        if comp is not None:
            body, codec = comp, CODEC_BLOSC2_LZ4
    # one copy of the body (a view of the caller's rows when raw), not two
    return b"".join((HEADER.pack(BLOCK_MAGIC, codec, len(raw)), CRC.pack(crc32(body)), body))


def scratch(nbytes: int) -> np.ndarray:
    """A new uint8 buffer of ``nbytes`` for transient data, its pages faulted
    in as they are written.

    Large ones are anonymous memory maps: memory numpy allocates itself is
    advised for transparent huge pages, whose first faults in a fresh process
    can cost a kernel compaction pass (measured: 0.3 s for 47 MB, against
    0.05 s for ordinary pages).
    """
    if nbytes < _SCRATCH_MAP:
        return np.empty(nbytes, np.uint8)
    return np.frombuffer(mmap.mmap(-1, nbytes), np.uint8)


def encode_parts(raw: memoryview, span: int, typesize: int) -> tuple[list[memoryview], list[int]]:
    """The blocks of each ``span`` bytes of ``raw`` (the last may be shorter),
    as parts to write one after the other, with no copy of what does not
    compress.

    A block that compresses is encoded whole into one new buffer (a
    :func:`scratch` one, the blocks one after the other); one that does not
    is its header there and its span of ``raw`` itself: a view, the bytes
    left where they are (a copy costs a fresh page per 4 KiB, and the first
    touch of a page is most of its cost). ``raw`` must stay unchanged until
    the parts are written. After :data:`SKIP_AFTER` blocks in a row that do
    not compress, only every :data:`SKIP_AFTER`-th is tried until one does:
    the others are stored raw (a valid block all the same; at most
    ``SKIP_AFTER - 1`` blocks that would compress are stored raw where the
    bytes turn compressible).

    Parameters
    ----------
    raw : memoryview
        Unsigned bytes.
    span : int
        Raw bytes of a block.
    typesize : int
        Item size of their dtype (for blosc2's byte shuffle).

    Returns
    -------
    parts : list of memoryview
        Unsigned bytes: written one after the other, they are the blocks
        :func:`encode_block` makes of each span (or, for a span not tried,
        its raw block).
    lengths : list of int
        Bytes of each block.
    """
    n = len(raw)
    # only the pages that compressed blocks and headers fill are touched
    out = scratch(n + HEADER_SIZE * -(-n // span))
    head = out.data
    parts: list[memoryview] = []
    lengths: list[int] = []
    at = mark = 0
    misses = 0  # blocks in a row stored raw
    for start in range(0, n, span):
        chunk = raw[start : start + span]
        size = len(chunk)
        body = out[at + HEADER_SIZE :]
        comp = None
        if 64 <= size <= BLOSC_MAX and (misses < SKIP_AFTER or not misses % SKIP_AFTER):
            comp = blosc_codec.compress_into(  # as encode_block
                chunk,
                body,
                math.ceil(size * 0.95),
                typesize=max(1, min(typesize, 255)),
                clevel=5,
                codec="lz4",
            )
        misses = misses + 1 if comp is None else 0
        if comp is None:  # the header here, the bytes where they are
            HEADER.pack_into(head, at, BLOCK_MAGIC, CODEC_RAW, size)
            CRC.pack_into(head, at + HEADER.size, crc32(chunk))
            at += HEADER_SIZE
            parts.append(head[mark:at])
            parts.append(chunk)
            mark = at
            lengths.append(HEADER_SIZE + size)
        else:
            HEADER.pack_into(head, at, BLOCK_MAGIC, CODEC_BLOSC2_LZ4, size)
            CRC.pack_into(head, at + HEADER.size, crc32(body[:comp]))
            at += HEADER_SIZE + comp
            lengths.append(HEADER_SIZE + comp)
    if at > mark:
        parts.append(head[mark:at])
    return parts, lengths


def typesize_of(kind: str) -> int:
    """Item size of a kind header's dtype (for blosc2's shuffle).

    Parameters
    ----------
    kind : str

    Returns
    -------
    int
    """
    return np.dtype(kind[: kind.rindex("|")]).itemsize


__all__ = [
    "BLOSC_MAX",
    "decode_body",
    "encode_block",
    "encode_parts",
    "read_block",
    "typesize_of",
]
