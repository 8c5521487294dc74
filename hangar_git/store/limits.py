"""Bounds on sizes read from outside, checked before anything is allocated.

A pack block's index row, a block header and a blosc2 chunk header all state
sizes; a damaged or hostile file could state any. Two checks keep a read from
allocating what the file does not hold:

- :func:`check_extent`: a block's offset and length lie inside its pack
  file (as it is on disk) and under :data:`MAX_BLOCK`, before it is read;
- :func:`check_blosc_header`: a blosc2 chunk inflates to exactly the raw
  length its block promised (and no more than ``max_raw``), read from the
  chunk's header before it is decompressed.

Both raise :class:`~hangar_git.errors.IntegrityError`.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence

from ..errors import IntegrityError

#: largest block a pack may hold (index entries address items by a u32 offset)
MAX_BLOCK = 2**32
#: blosc2 chunk header: version, lz version, flags, typesize, nbytes, blocksize, cbytes
_BLOSC_HEADER = struct.Struct("<BBBBIII")
#: largest chunk blosc2 makes
BLOSC_MAX = 2**31
#: largest payload fetched from outside when the records give no bound
MAX_PAYLOAD_BYTES = 1 << 34


def check_extent(
    fd: int, sizes: dict[int, int], pack: int, boff: int, blen: int, where: str
) -> None:
    """Refuse a block that does not lie inside pack ``pack`` (open as ``fd``).

    ``sizes`` caches each pack's size; it is looked up again (``fstat``) when
    a block seems to pass the end, since a writer may have appended since.

    Raises
    ------
    IntegrityError
        If the offset or length is negative, the length is over
        :data:`MAX_BLOCK`, or the block passes the end of the file.
    """
    end = boff + blen
    if boff < 0 or blen < 0 or blen > MAX_BLOCK:
        raise IntegrityError(f"block at {boff} of {where} states an impossible length {blen}")
    size = sizes.get(pack, -1)
    if end > size:
        size = sizes[pack] = os.fstat(fd).st_size
        if end > size:
            raise IntegrityError(
                f"block at {boff} of {where} ({blen} bytes) passes the end of the file "
                f"({size} bytes)"
            )


def check_blosc_header(body: memoryview | bytes, rawlen: int, where: str, max_raw: int) -> None:
    """Refuse a blosc2 chunk that would not inflate to exactly ``rawlen`` bytes.

    Parameters
    ----------
    body : bytes-like
        The compressed chunk, its checksum already verified.
    rawlen : int
        The raw length the block's header (or record) promises.
    where : str
        Where the chunk is, for the message.
    max_raw : int
        The largest raw length the caller accepts at all.

    Raises
    ------
    IntegrityError
        If the header is short, states another raw length, a compressed
        length other than ``len(body)``, or more than ``max_raw`` bytes.
    """
    if len(body) < _BLOSC_HEADER.size:
        raise IntegrityError(f"block {where} is too short for its codec")
    _, _, _, _, nbytes, _, cbytes = _BLOSC_HEADER.unpack_from(body)
    if nbytes != rawlen or rawlen > min(max_raw, BLOSC_MAX) or cbytes != len(body):
        raise IntegrityError(
            f"block {where} states {nbytes} raw bytes in {cbytes} (its header promised "
            f"{rawlen} in {len(body)}, at most {min(max_raw, BLOSC_MAX)})"
        )


def payload_bound(itemsize: int, shape: Sequence[int]) -> int:
    """Largest raw bytes one payload of an arrayset may hold: ``itemsize``
    times the product of its (maximum) ``shape``, capped at
    :data:`MAX_PAYLOAD_BYTES`: what a fetch of one may download (the
    storage overheads of a pack block or a large object are added by
    :mod:`hangar_git.remotes.bounded`)."""
    return min(math.prod(int(s) for s in shape) * int(itemsize), MAX_PAYLOAD_BYTES)
