"""CRC-32 of payload bytes: zlib-ng's vectorised implementation when present.

The checksum guards every payload read, so its speed bounds bulk reads:
zlib-ng computes the same CRC-32 (IEEE polynomial, the value of
:func:`zlib.crc32`) about three times as fast as the zlib Python ships
with, using the processor's carry-less multiply. Without the ``zlib-ng``
package, :func:`zlib.crc32` is used: same values, slower.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

_fast_crc32: Callable[..., int] | None
try:
    from zlib_ng.zlib_ng import crc32 as _fast_crc32
except ImportError:  # pragma: no cover - the fallback keeps every value the same
    _fast_crc32 = None

#: ``crc32(data, value=0) -> int``, equal to :func:`zlib.crc32`
crc32: Callable[..., int] = _fast_crc32 if _fast_crc32 is not None else zlib.crc32
#: True when the vectorised implementation is in use
FAST = _fast_crc32 is not None
