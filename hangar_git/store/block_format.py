"""The block header of pack files: the one definition packs, the manifest
scan and the index rebuild share.

A block is a 20-byte header — magic ``HGB1``, codec (u8), 3 bytes of
padding, raw length (u64), CRC-32 of the stored bytes (u32), little-endian —
followed by the stored bytes (see :mod:`.packs`).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

BLOCK_MAGIC = b"HGB1"
#: magic, codec, raw length; the CRC-32 follows
HEADER = struct.Struct("<4sBxxxQ")
CRC = struct.Struct("<I")
HEADER_SIZE = HEADER.size + CRC.size  # 20 bytes

CODEC_RAW = 0
CODEC_BLOSC2_LZ4 = 1

#: raw bytes the writer gathers into one block before it is compressed and written
BLOCK_TARGET = 64 * 1024
#: raw bytes of a block appended as it is, at most (item offsets are u32; blosc2's largest)
RAW_MAX = 2**31 - 64
#: C-Blosc's code of the LZ4 family, in bits 5-7 of a chunk header's flags (byte 2)
_BLOSC_LZ4 = 1


def written_here(codec: int, body: bytes | memoryview, rows: int, width: int) -> bool:
    """True when a block of ``codec`` and ``body`` holding ``rows`` payloads of
    ``width`` bytes (and nothing else) is one this store's writer could have
    made: raw or blosc2-LZ4, no more rows than it gathers into a block.

    Such a block read back costs what the store's own cost; another
    (zstd, or blocks four times as long, as a data remote packs) is still
    readable, but slower to decode or to read one payload out of.
    """
    if width <= 0 or rows <= 0 or (rows - 1) * width >= BLOCK_TARGET:
        return False
    if codec == CODEC_RAW:
        return True
    return codec == CODEC_BLOSC2_LZ4 and len(body) > 2 and body[2] >> 5 == _BLOSC_LZ4


class CheckedBlock(NamedTuple):
    """A block from elsewhere (a data remote) whose body was checked, to be
    appended to a pack as it is (:meth:`.writer.PackWriter.add_blocks`).

    Its raw bytes are nothing but its payloads, all of ``kind``, one after the
    other from offset 0; whoever makes one has verified the body's CRC-32,
    decoded it to ``rawlen`` bytes and hashed every payload against its digest.

    Attributes
    ----------
    kind : str
        Kind header of every payload in it.
    codec : int
        :data:`CODEC_RAW` or :data:`CODEC_BLOSC2_LZ4` (any blosc2 stream).
    rawlen : int
        Bytes of the decoded body.
    crc : int
        CRC-32 of ``body``.
    body : bytes or memoryview
        The stored bytes, unchanged.
    digests : list of bytes
        Its payloads' digests, in item order.
    """

    kind: str
    codec: int
    rawlen: int
    crc: int
    body: bytes | memoryview
    digests: list[bytes]

    def local_header(self, size: int) -> bytes:
        """The local header of this block (its body follows it unchanged),
        its payloads being ``size`` bytes each.

        Raises
        ------
        ValueError
            A codec local packs do not hold, or lengths that disagree (the
            payloads do not fill the raw bytes exactly, or too long a block).
        """
        if self.codec not in (CODEC_RAW, CODEC_BLOSC2_LZ4):
            raise ValueError(f"codec {self.codec} is not one of the local packs'")
        n = len(self.digests)
        if size <= 0 or not n or n * size != self.rawlen or self.rawlen > RAW_MAX:
            raise ValueError(f"{n} payloads of {size} bytes in a block of {self.rawlen}")
        if self.codec == CODEC_RAW and memoryview(self.body).nbytes != self.rawlen:
            raise ValueError("a raw block's body is not its raw length")
        return HEADER.pack(BLOCK_MAGIC, self.codec, self.rawlen) + CRC.pack(self.crc)


__all__ = [
    "BLOCK_MAGIC",
    "BLOCK_TARGET",
    "CODEC_BLOSC2_LZ4",
    "CODEC_RAW",
    "CRC",
    "CheckedBlock",
    "HEADER",
    "HEADER_SIZE",
    "RAW_MAX",
    "written_here",
]
