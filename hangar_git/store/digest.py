"""Payload identity: the digest of an array and the header that describes it."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np

DIGEST_SIZE = 20


class Payload(NamedTuple):
    """An array ready for the store: its digest, kind header and bytes."""

    digest: bytes
    kind: str  # "<dtype.str>|<d0>,<d1>,..." e.g. "|u1|28,28"
    data: memoryview


def kind_of(arr: np.ndarray) -> str:
    """The kind header of an array: dtype string and shape."""
    return arr.dtype.str + "|" + ",".join(map(str, arr.shape))


def parse_kind(kind: str) -> tuple[np.dtype, tuple[int, ...]]:
    """Invert :func:`kind_of`."""
    dt, _, shp = kind.rpartition("|")
    shape = tuple(int(s) for s in shp.split(",")) if shp else ()
    return np.dtype(dt), shape


def digest_bytes(kind: str, data: bytes | memoryview) -> bytes:
    """blake2b-160 over the kind header, a NUL, and the data bytes."""
    h = hashlib.blake2b(kind.encode(), digest_size=DIGEST_SIZE)
    h.update(b"\x00")
    h.update(data)
    return h.digest()


def digest_prefix(kind: str) -> hashlib._Hash:
    """Hash state of :func:`digest_bytes` after the kind header: ``.copy()`` it,
    ``update`` it with the data bytes, and its ``digest()`` is the digest."""
    return hashlib.blake2b(kind.encode() + b"\x00", digest_size=DIGEST_SIZE)


def array_digest(arr: np.ndarray) -> bytes:
    """Digest of a C-contiguous array."""
    return payload_from_array(arr).digest


def payload_from_array(arr: np.ndarray) -> Payload:
    """Describe a C-contiguous array as a :class:`Payload`."""
    kind = kind_of(arr)
    data = memoryview(arr).cast("B") if arr.ndim else memoryview(arr.reshape(1)).cast("B")
    return Payload(digest_bytes(kind, data), kind, data)
