"""Content-addressed payload store, outside git.

The store maps a payload digest (blake2b-160 over the array's dtype, shape and
C-order bytes) to where its bytes sit on this machine. It knows nothing of
branches, commits or arraysets: records above it only hold digests.
"""

from .digest import Payload, array_digest, payload_from_array
from .packs import Location, PackReader, PackStore, PackWriter
from .rebuild import RebuildReport, rebuild_index

__all__ = [
    "Location",
    "PackReader",
    "PackStore",
    "PackWriter",
    "Payload",
    "RebuildReport",
    "array_digest",
    "payload_from_array",
    "rebuild_index",
]
