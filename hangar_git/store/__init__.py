"""Content-addressed payload store, outside git.

The store maps a payload digest (blake2b-160 over the array's dtype, shape and
C-order bytes) to where its bytes sit on this machine. It knows nothing of
branches, commits or arraysets: records above it only hold digests.

The interface every backend implements is :class:`PayloadStore`
(:mod:`.base`); the backends are :class:`PackPayloadStore` (the
repository's packs and chunked large files), :class:`LargeFileStore` and
:class:`MemoryStore`. The pack store's parts: :mod:`.packs` (``PackStore``),
:mod:`.reader`, :mod:`.writer`, :mod:`.appender`, :mod:`.index`,
:mod:`.codec`; large payloads: :mod:`.chunked`, :mod:`.chunk_format`,
:mod:`.large_reader`; recovery: :mod:`.manifest`, :mod:`.manifest_scan`,
:mod:`.rebuild`.
"""

from .backend_large import LargeFileStore
from .backend_memory import MemoryStore
from .backend_packs import PackPayloadStore
from .base import PayloadStore
from .digest import Payload, array_digest, payload_from_array
from .packs import Location, PackReader, PackStore, PackWriter
from .rebuild import RebuildReport, rebuild_index

__all__ = [
    "LargeFileStore",
    "Location",
    "MemoryStore",
    "PackPayloadStore",
    "PackReader",
    "PackStore",
    "PackWriter",
    "Payload",
    "PayloadStore",
    "RebuildReport",
    "array_digest",
    "payload_from_array",
    "rebuild_index",
]
