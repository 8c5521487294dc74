"""The block header of pack files: the one definition packs, the manifest
scan and the index rebuild share.

A block is a 20-byte header — magic ``HGB1``, codec (u8), 3 bytes of
padding, raw length (u64), CRC-32 of the stored bytes (u32), little-endian —
followed by the stored bytes (see :mod:`.packs`).
"""

from __future__ import annotations

import struct

BLOCK_MAGIC = b"HGB1"
#: magic, codec, raw length; the CRC-32 follows
HEADER = struct.Struct("<4sBxxxQ")
CRC = struct.Struct("<I")
HEADER_SIZE = HEADER.size + CRC.size  # 20 bytes

CODEC_RAW = 0
CODEC_BLOSC2_LZ4 = 1

#: raw bytes the writer gathers into one block before it is compressed and written
BLOCK_TARGET = 64 * 1024

__all__ = [
    "BLOCK_MAGIC",
    "BLOCK_TARGET",
    "CODEC_BLOSC2_LZ4",
    "CODEC_RAW",
    "CRC",
    "HEADER",
    "HEADER_SIZE",
]
