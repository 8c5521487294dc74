"""CRC-32 of payload bytes: zlib-ng's vectorised implementation when present.

The checksum guards every payload read, so its speed bounds bulk reads:
zlib-ng computes the same CRC-32 (IEEE polynomial, the value of
:func:`zlib.crc32`) about three times as fast as the zlib Python ships
with, using the processor's carry-less multiply. Without the ``zlib-ng``
package, :func:`zlib.crc32` is used: same values, slower.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

_fast_crc32: Callable[..., int] | None
try:
    from zlib_ng.zlib_ng import crc32 as _fast_crc32
except ImportError:  # pragma: no cover - the fallback keeps every value the same
    _fast_crc32 = None

#: ``crc32(data, value=0) -> int``, equal to :func:`zlib.crc32`
crc32: Callable[..., int] = _fast_crc32 if _fast_crc32 is not None else zlib.crc32
#: True when the vectorised implementation is in use
FAST = _fast_crc32 is not None

#: a second thread for checksums of bulk reads (zlib releases the GIL); the
#: vectorised CRC of zlib-ng is faster on one thread than zlib's on two
_crc_pool: list[ThreadPoolExecutor] = []


def crc_many(views: list[memoryview]) -> list[int]:
    """CRC-32 of each of ``views``; with stdlib zlib, many large ones are
    split over two threads."""
    if FAST or len(views) < 16 or (os.cpu_count() or 1) < 2:
        return [crc32(v) for v in views]
    if not _crc_pool:
        _crc_pool.append(ThreadPoolExecutor(1, thread_name_prefix="hangar-crc"))
    half = len(views) // 2
    other = _crc_pool[0].submit(lambda: [crc32(v) for v in views[half:]])
    first = [crc32(v) for v in views[:half]]
    return first + other.result()


def _after_fork() -> None:
    _crc_pool.clear()  # its thread did not cross the fork


os.register_at_fork(after_in_child=_after_fork)
