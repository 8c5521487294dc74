"""Payloads on a data remote: the data-remote layer's names in one place.

A data remote is any fsspec URL (a directory or network share, ``s3://``,
``gs://``, ``sftp://``, ``memory://`` ...) holding content-named packs of
payloads. The layer is made of small modules, each importing only those
below it:

- :mod:`.layout`: the names under the root, the format version, shared checks;
- :mod:`.bounded`: reads of sizes and bytes that come from outside;
- :mod:`.backends`: the objects of a remote (:class:`~.backends.RemoteStore`,
  with a local-folder and an fsspec backend);
- :mod:`.packformat`, :mod:`.packbuilder`, :mod:`.lookup`: the remote pack
  format, making packs, finding payloads and planning ranged reads;
- :mod:`.data_remote`: :class:`DataRemote`, packs on a backend;
- :mod:`.large`: large payloads as objects of their own.

This module re-exports their public names for :mod:`.transfer` and older
callers, and holds :data:`PACK_TARGET`, the size a push cuts its packs at
(:mod:`.transfer` reads it from here), and :func:`send_target`, the size it
cuts them at on a given remote. The other constants are copies: to
change one for a test, patch it in the module that defines it (for
example ``lookup.COALESCE_GAP``).
"""

from __future__ import annotations

from .data_remote import DataRemote
from .layout import FORMAT_VERSION, MARKER, PACKS, check_kind, kind_nbytes, landed
from .lookup import COALESCE_GAP, MAX_RANGE, RemoteLookup, plan_ranges, split_blocks
from .packbuilder import PackBuilder, SealedPack
from .packformat import (
    BLOCK_HEADER_SIZE,
    BLOCK_MAGIC,
    BLOCK_TARGET,
    CODEC_BLOSC2,
    CODEC_RAW,
    ENTRY_DTYPE,
    ENTRY_SIZE,
    INDEX_MAGIC,
    Entry,
    PackIndex,
    block_raw,
    content_hash,
    decode_block,
    decode_index,
    encode_block,
    encode_index,
)

#: raw bytes gathered into one pack before it is sealed and uploaded (the
#: largest pack a push writes: tools that rewrite packs bound them by it)
PACK_TARGET = 64 * 1024 * 1024
#: raw bytes of one pack on an object store: a push builds the next pack
#: while this one uploads, so smaller packs overlap more of the two
OBJECT_STORE_PACK_TARGET = 16 * 1024 * 1024


def send_target(remote: DataRemote) -> int:
    """Raw bytes a push gathers into one pack before it seals and sends it to ``remote``.

    A push sends each sealed pack on a second thread while it builds the
    next. A local folder takes a pack at the speed of a file copy, so it
    gets packs of :data:`PACK_TARGET`; an object store takes it at network
    speed, so it gets packs of at most :data:`OBJECT_STORE_PACK_TARGET`,
    and the building of each overlaps the upload of the one before (only
    the last upload is waited for). The pack format is the same.

    Parameters
    ----------
    remote : DataRemote
        Where the packs go.

    Returns
    -------
    int
        At most :data:`PACK_TARGET`.
    """
    if remote.store.renames_into_place:
        return PACK_TARGET
    return min(PACK_TARGET, OBJECT_STORE_PACK_TARGET)


__all__ = [
    "BLOCK_HEADER_SIZE",
    "BLOCK_MAGIC",
    "BLOCK_TARGET",
    "CODEC_BLOSC2",
    "CODEC_RAW",
    "COALESCE_GAP",
    "ENTRY_DTYPE",
    "ENTRY_SIZE",
    "FORMAT_VERSION",
    "INDEX_MAGIC",
    "MARKER",
    "MAX_RANGE",
    "OBJECT_STORE_PACK_TARGET",
    "PACKS",
    "PACK_TARGET",
    "DataRemote",
    "Entry",
    "PackBuilder",
    "PackIndex",
    "RemoteLookup",
    "SealedPack",
    "check_kind",
    "content_hash",
    "block_raw",
    "decode_block",
    "decode_index",
    "encode_block",
    "encode_index",
    "kind_nbytes",
    "landed",
    "plan_ranges",
    "send_target",
    "split_blocks",
]
