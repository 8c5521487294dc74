"""Payload identity: the digest of an array and the header that describes it."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import NamedTuple

import numpy as np

from .digest_run import DIGEST_SIZE, Digests


class Payload(NamedTuple):
    """An array ready for the store: its digest, kind header and bytes."""

    digest: bytes
    kind: str  # "<dtype.str>|<d0>,<d1>,..." e.g. "|u1|28,28"
    data: memoryview


def kind_of(arr: np.ndarray) -> str:
    """The kind header of an array: dtype string and shape.

    Parameters
    ----------
    arr : numpy.ndarray

    Returns
    -------
    str
        ``"<dtype.str>|<d0>,<d1>,..."``, e.g. ``"|u1|28,28"``.
    """
    return arr.dtype.str + "|" + ",".join(map(str, arr.shape))


def parse_kind(kind: str) -> tuple[np.dtype, tuple[int, ...]]:
    """Invert :func:`kind_of`.

    Parameters
    ----------
    kind : str

    Returns
    -------
    dtype : numpy.dtype
    shape : tuple of int

    Raises
    ------
    ValueError, TypeError
        ``kind`` is not a kind header.
    """
    dt, _, shp = kind.rpartition("|")
    shape = tuple(int(s) for s in shp.split(",")) if shp else ()
    return np.dtype(dt), shape


def digest_bytes(kind: str, data: bytes | memoryview) -> bytes:
    """blake2b-160 over the kind header, a NUL, and the data bytes.

    Parameters
    ----------
    kind : str
        The kind header.
    data : bytes or memoryview
        The C-order bytes.

    Returns
    -------
    bytes
        20 bytes.
    """
    h = hashlib.blake2b(kind.encode(), digest_size=DIGEST_SIZE)
    h.update(b"\x00")
    h.update(data)
    return h.digest()


def digest_prefix(kind: str) -> hashlib.blake2b:
    """Hash state of :func:`digest_bytes` after the kind header: ``.copy()`` it,
    ``update`` it with the data bytes, and its ``digest()`` is the digest."""
    return hashlib.blake2b(kind.encode() + b"\x00", digest_size=DIGEST_SIZE)


def stacked_digests(stacked: np.ndarray) -> Digests:
    """Digest of each row ``stacked[i]`` of a stacked array, in order.

    Row ``i`` gets exactly ``array_digest(stacked[i])``: the kind header is
    the dtype and the shape of one row (``stacked.shape[1:]``). The header is
    hashed once and its hash state copied per row. Rows under
    :data:`_VIEW_MIN` bytes are cut as ``bytes`` from copies of
    :data:`_COPY_SPAN` bytes at a time (a small ``bytes`` costs less to hash
    than a view, and the copy stays in the processor's cache) and hashed with
    no Python code per row (:func:`_map_digests`); larger ones through views
    of the array's buffer (no copy); rows of 64 KiB or more on every core
    (blake2b releases the GIL for them). Rows of 8 bytes or fewer that
    repeat (labels: a few values over and over) are hashed once per value
    and their digests gathered by numpy. The digests are joined as they are
    made, a pass at a time (no list of them all, see :mod:`.digest_run`).

    Parameters
    ----------
    stacked : numpy.ndarray
        At least one dimension; row ``i`` is ``stacked[i]``.

    Returns
    -------
    Digests
        A sequence of ``bytes``, and them joined.

    Raises
    ------
    ValueError
        ``stacked`` is 0-d.
    """
    if stacked.ndim < 1:
        raise ValueError("a stacked array needs at least one dimension")
    n = stacked.shape[0]
    if not n:
        return Digests(b"")
    stacked = np.ascontiguousarray(stacked)
    row = stacked.dtype.str + "|" + ",".join(map(str, stacked.shape[1:]))
    size = stacked.nbytes // n
    if not size:
        return Digests(digest_bytes(row, b"") * n)
    if size <= 8 and n >= _REPEAT_PROBE:
        repeated = _repeated_rows(stacked, n, size)
        if repeated is not None:  # each distinct row hashed once
            first, inverse, last = repeated
            distinct = stacked_digests(stacked[first]).joined
            return Digests(np.frombuffer(distinct, _DIGEST_ITEM)[inverse].tobytes(), last)
    if size < _VIEW_MIN:  # rows as bytes, cut by numpy (one void item a row)
        rows = stacked.reshape(-1).view(np.uint8).view(f"V{size}")
        state = digest_prefix(row)
        per = max(1, min(_MAP_ROWS, _COPY_SPAN // size))
        join = b"".join
        parts = [join(_map_digests(state, rows[s : s + per].tolist())) for s in range(0, n, per)]
        return Digests(join(parts))
    view = stacked.reshape(-1).data.cast("B")
    if size >= 1 << 16 and n > 1:  # big rows: hashed on every core (blake2b releases the GIL)
        from .threads import parallel_map

        copy = digest_prefix(row).copy

        def one(start: int) -> bytes:
            h = copy()
            h.update(view[start : start + size])
            return h.digest()

        return Digests(b"".join(parallel_map(one, range(0, len(view), size))))
    return Digests(b"".join(_digest_spans(row, view, size, len(view))))


#: a digest as one numpy item
_DIGEST_ITEM = np.dtype(f"V{DIGEST_SIZE}")


#: rows of 8 bytes or fewer, this many or more, are looked at for repeats
#: (labels: a few values over and over) when the first this many repeat
_REPEAT_PROBE = 1024


def _repeated_rows(
    stacked: np.ndarray, n: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For ``n`` rows of ``size`` <= 8 bytes of which at most half are
    distinct: the index of one row of each distinct value, which of those
    each row is, and the index (ascending) of the last row of each value
    (the hint of :class:`.digest_run.Digests`); None when they repeat less
    (found from the first :data:`_REPEAT_PROBE` rows, at little cost)."""
    raw = stacked.reshape(-1).view(np.uint8).reshape(n, size)
    if size == 8:
        keys = raw.view(np.uint64).reshape(n)
    else:  # zero-padded to 8 bytes: equal keys, equal bytes
        pad = np.zeros((n, 8), np.uint8)
        pad[:, :size] = raw
        keys = pad.view(np.uint64).reshape(n)
    # sorts, not np.unique: in a fresh process that imports numpy.ma (25-40 ms)
    probe = np.sort(keys[:_REPEAT_PROBE])
    if (int(np.count_nonzero(probe[1:] != probe[:-1])) + 1) * 2 > _REPEAT_PROBE:
        return None
    lo = keys.min()
    if int(keys.max()) - int(lo) < 1 << 16:  # (labels: small values) a radix sort, 3x as fast
        perm = np.argsort((keys - lo).astype(np.uint16), kind="stable")
    else:
        perm = np.argsort(keys, kind="stable")
    srt = keys[perm]
    starts = np.empty(n, bool)  # True where a run of equal keys starts
    starts[0] = True
    np.not_equal(srt[1:], srt[:-1], out=starts[1:])
    first = perm[starts]
    if len(first) * 2 > n:
        return None
    inverse = np.empty(n, np.intp)
    inverse[perm] = np.cumsum(starts) - 1
    ends = np.empty(n, bool)  # True where a run ends: its last row (the sort is stable)
    ends[-1] = True
    ends[:-1] = starts[1:]
    last = perm[ends].astype(np.int64)
    last.sort()
    return first, inverse, last


#: rows of this many bytes or more are hashed through views, smaller ones
#: through copies (at 2 KiB a row the hashing itself outweighs either)
_VIEW_MIN = 2048
#: bytes of small rows copied at a time
_COPY_SPAN = 1 << 18
#: rows hashed per pass of :func:`_map_digests` (bounds the hash states alive at once)
_MAP_ROWS = 1024

_copy_state = hashlib.blake2b.copy
_update = hashlib.blake2b.update
_digest = hashlib.blake2b.digest


def _map_digests(state: hashlib.blake2b, rows: Sequence[bytes | memoryview]) -> list[bytes]:
    """Digests of ``rows`` hashed on from ``state`` (the kind header hashed):
    a copy of the state per row, then each updated, then each digested, all in
    C-level ``map`` passes (no Python code per row: 0.8-0.9x the CPU of a
    loop calling the three methods)."""
    states = list(map(_copy_state, repeat(state, len(rows))))
    deque(map(_update, states, rows), maxlen=0)
    return list(map(_digest, states))


def _digest_spans(kind: str, buf: bytes | memoryview, size: int, end: int) -> list[bytes]:
    """Digests of the ``size``-byte rows of ``buf[:end]`` (a loop with no call
    of a Python function per row: half the time of one)."""
    copy = digest_prefix(kind).copy
    out: list[bytes] = []
    add = out.append
    for i in range(0, end, size):
        h = copy()
        h.update(buf[i : i + size])
        add(h.digest())
    return out


def row_digests(kind: str, rows: Iterable[bytes | memoryview]) -> list[bytes]:
    """Digest of each of ``rows``, the C-order bytes of arrays of kind ``kind``.

    The kind header is hashed once and its hash state copied per row:
    ``row_digests(kind_of(a), [a.tobytes()]) == [array_digest(a)]``.

    Parameters
    ----------
    kind : str
        The kind header of every row.
    rows : iterable of bytes or memoryview

    Returns
    -------
    list of bytes
    """
    state = digest_prefix(kind)
    seq = rows if isinstance(rows, list) else list(rows)
    out: list[bytes] = []
    for start in range(0, len(seq), _MAP_ROWS):
        out += _map_digests(state, seq[start : start + _MAP_ROWS])
    return out


def array_digest(arr: np.ndarray) -> bytes:
    """Digest of a C-contiguous array.

    Parameters
    ----------
    arr : numpy.ndarray

    Returns
    -------
    bytes
    """
    return payload_from_array(arr).digest


def payload_from_array(arr: np.ndarray) -> Payload:
    """Describe a C-contiguous array as a :class:`Payload`.

    Parameters
    ----------
    arr : numpy.ndarray
        C-contiguous (0-d and empty arrays included).

    Returns
    -------
    Payload
        Its ``data`` is a view of ``arr``'s bytes, not a copy.
    """
    kind = kind_of(arr)
    data = arr.reshape(-1).data.cast("B")  # 0-d and empty arrays included
    return Payload(digest_bytes(kind, data), kind, data)
