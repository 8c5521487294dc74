"""The sample records of leaf trees read in numpy passes, no Python object per record.

:func:`.reachable.tree_digests` checks every leaf of a samples tree at once;
its regular expression makes a bytes object per key, and the keys' CRC-32s
(their leaf placement) take a call each. :func:`parse_records` finds the
records of the joined leaves with array operations instead, and
:func:`key_crc32` hashes all their keys together. Both answer only when sure:
:func:`parse_records` gives None for anything but a plain chain of records
with canonical keys (and for the rare well formed data it cannot cut
unambiguously), and the caller then parses with the regular expression.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..naming import MAX_NAME_LEN

#: ``160000 `` (the mode of a sample record, then its space)
_MODE = b"160000 "
#: bytes of a record besides its key: the mode and space, the NUL, the id
_FIXED = len(_MODE) + 1 + 20
#: shortest and longest canonical key (``i:`` or ``s:`` then 1 to MAX_NAME_LEN characters)
_KEY_MIN, _KEY_MAX = 3, 2 + MAX_NAME_LEN


#: per byte: 1 a digit, 2 a character of string keys (a digit is both), 0 neither;
#: NUL, the padding of short keys in :func:`parse_records`, passes as both
_CLASS = np.zeros(256, np.uint8)
_CLASS[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_.-", np.uint8)] = 2
_CLASS[np.frombuffer(b"0123456789", np.uint8)] = 3
_CLASS[0] = 3


def _crc_table() -> np.ndarray:
    c = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        c = np.where(c & 1, np.uint32(0xEDB88320) ^ (c >> 1), c >> 1).astype(np.uint32)
    return c


_CRC_TABLE = _crc_table()


class LeafRecords(NamedTuple):
    """The sample records of joined leaf trees, in order.

    Attributes
    ----------
    ends : numpy.ndarray
        int64, the offset just past each record.
    lens : numpy.ndarray
        int64, the length of each key.
    keys : numpy.ndarray
        uint8, one key a row, NUL-padded to the longest.
    """

    ends: np.ndarray
    lens: np.ndarray
    keys: np.ndarray


def parse_records(data: bytes) -> LeafRecords | None:
    """The records of ``data`` when it is nothing but sample records (mode
    ``160000``, a canonical key, a NUL, a 20-byte id) one after the other;
    else None.

    None also when an id holds the bytes ``160000 `` (the records are then
    not cut here: the caller's regular expression reads them).

    Parameters
    ----------
    data : bytes
        Leaf trees' raw bytes, joined.

    Returns
    -------
    LeafRecords or None
    """
    size = len(data)
    if size < _FIXED + _KEY_MIN:
        return None
    a = np.frombuffer(data, np.uint8)
    # the places that start with the mode: a record's start, or bytes of an id
    at = np.flatnonzero(a[: size - (_FIXED + _KEY_MIN) + 1] == _MODE[0])
    for j in range(1, len(_MODE)):
        at = at[a[at + j] == _MODE[j]]
    if not len(at) or at[0] != 0:
        return None
    # taken as one record after the other, to the end: each ends where the next starts,
    # its key (no NUL) then a NUL then the id; else a place in an id was taken (or no record)
    ends = np.empty(len(at), np.int64)
    ends[:-1], ends[-1] = at[1:], size
    lens = ends - at - _FIXED
    if int(lens.min()) < _KEY_MIN or int(lens.max()) > _KEY_MAX:
        return None
    if a[ends - 21].any():  # the NUL after each key
        return None
    width = int(lens.max())
    # every ``width``-byte window of the data (a strided view); each key's, bar the last few
    windows = np.ndarray((size - width + 1, width), np.uint8, data, strides=(1, 1))
    starts = at + len(_MODE)
    keys = windows[np.minimum(starts, size - width)]  # (a copy)
    for i in np.flatnonzero(starts > size - width).tolist():  # keys near the end
        keys[i, : lens[i]] = a[starts[i] : starts[i] + lens[i]]
    keys *= np.arange(width) < lens[:, None]  # zero past each key's end
    if np.count_nonzero(keys) != int(lens.sum()):  # a NUL in a key
        return None
    if (keys[:, 1] != ord(":")).any():
        return None
    ints = keys[:, 0] == ord("i")
    if not (ints | (keys[:, 0] == ord("s"))).all():
        return None
    need = np.where(ints, np.uint8(1), np.uint8(2))  # digits, or characters of string keys
    if not (_CLASS[keys[:, 2:]] & need[:, None]).all():
        return None
    if (ints & (keys[:, 2] == ord("0")) & (lens > _KEY_MIN)).any():  # a leading zero
        return None
    return LeafRecords(ends, lens, keys)


def key_crc32(keys: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """``zlib.crc32`` of each key, in one pass per key byte.

    Parameters
    ----------
    keys : numpy.ndarray
        uint8, one key a row (bytes past its length ignored).
    lens : numpy.ndarray
        The length of each key.

    Returns
    -------
    numpy.ndarray
        uint64.
    """
    n, width = keys.shape
    crc = np.full(n, 0xFFFFFFFF, np.uint32)
    shortest = int(lens.min()) if n else 0
    for j in range(width):
        step = _CRC_TABLE[(crc ^ keys[:, j]) & 0xFF] ^ (crc >> 8)
        crc = step if j < shortest else np.where(j < lens, step, crc)
    return (crc ^ np.uint32(0xFFFFFFFF)).astype(np.uint64)


__all__ = ["LeafRecords", "key_crc32", "parse_records"]
