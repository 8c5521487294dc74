"""Content-addressed payload store, outside git.

The store maps a payload digest (blake2b-160 over the array's dtype, shape and
C-order bytes) to where its bytes sit on this machine. It knows nothing of
branches, commits or arraysets: records above it only hold digests.

The interface every backend implements is :class:`PayloadStore`
(:mod:`.base`); the backends are :class:`PackPayloadStore` (the
repository's packs and chunked large files), :class:`LargeFileStore` and
:class:`MemoryStore`. The pack store's parts: :mod:`.packs` (``PackStore``),
:mod:`.reader`, :mod:`.block_reader`, :mod:`.writer`, :mod:`.appender`, :mod:`.index`,
:mod:`.codec`; large payloads: :mod:`.chunked`, :mod:`.chunk_format`,
:mod:`.large_reader`; recovery: :mod:`.manifest`, :mod:`.manifest_scan`,
:mod:`.rebuild`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend_large import LargeFileStore
    from .backend_memory import MemoryStore
    from .backend_packs import PackPayloadStore
    from .base import PayloadStore
    from .digest import Payload, array_digest, payload_from_array
    from .packs import Location, PackReader, PackStore, PackWriter
    from .rebuild import RebuildReport, rebuild_index

#: exported name -> the submodule defining it. The package imports nothing
#: itself: ``hangar_git.store.durable`` (the staging journal's fsync helpers)
#: must not load numpy and every backend, which ``git hangar status`` never
#: needs; the names load on first use (PEP 562).
_WHERE = {
    "LargeFileStore": "backend_large",
    "Location": "packs",
    "MemoryStore": "backend_memory",
    "PackPayloadStore": "backend_packs",
    "PackReader": "packs",
    "PackStore": "packs",
    "PackWriter": "packs",
    "Payload": "digest",
    "PayloadStore": "base",
    "RebuildReport": "rebuild",
    "array_digest": "digest",
    "payload_from_array": "digest",
    "rebuild_index": "rebuild",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


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
