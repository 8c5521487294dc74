"""Encoded sample keys of a bulk add, held as one numpy array.

A bulk add of 300,000 int keys spent more time turning each key into its
record name (``"i:123"``), logging it and laying out the record tree than
digesting and storing the samples. :class:`KeyNames` holds those names as
one fixed-width bytes array (encoded in vectorised passes by
:func:`int_key_names`), and is a ``Sequence[str]`` for the code that takes
names one by one. The staging journal logs it and the commit lays its
records out from the array (:func:`names_crc32` places them in the fan-out)
without a Python object per key; the records written are the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:  # numpy is imported where used: the staging journal (and
    # ``git hangar status``) imports this module without it
    import numpy as np


@cache
def _crc_table() -> np.ndarray:
    """The standard (zlib) CRC-32 table, for :func:`names_crc32`."""
    import numpy as np

    table = np.zeros(256, np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table[i] = c
    return table


class KeyNames(Sequence[str]):
    """Encoded keys (ASCII, no NUL) as a fixed-width bytes array, in order.

    Parameters
    ----------
    names : numpy.ndarray
        1-D, dtype ``S<width>``: each name NUL-padded to the width.
    ints : numpy.ndarray, optional
        The int keys the names encode (``names[i] == b"i:%d" % ints[i]``),
        when they are all ints.
    lengths : numpy.ndarray, optional
        Each name's length in bytes (int64), when known already.
    """

    __slots__ = ("_lens", "ints", "names")

    def __init__(
        self, names: np.ndarray, ints: np.ndarray | None = None, lengths: np.ndarray | None = None
    ) -> None:
        if names.ndim != 1 or names.dtype.kind != "S":
            raise ValueError("names must be a 1-D bytes array")
        if lengths is not None and len(lengths) != len(names):
            raise ValueError("one length per name")
        self.names = names
        self.ints = ints
        self._lens = lengths

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> KeyNames: ...

    def __getitem__(self, i: int | slice) -> str | KeyNames:
        if isinstance(i, slice):
            return KeyNames(
                self.names[i],
                None if self.ints is None else self.ints[i],
                None if self._lens is None else self._lens[i],
            )
        return bytes(self.names[i]).decode("ascii")

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def tolist(self) -> list[str]:
        """The names as a list of str."""
        return self.names.astype(f"U{self.names.dtype.itemsize}").tolist()  # type: ignore[no-any-return]

    def rows(self) -> np.ndarray:
        """The names as rows of bytes, ``(n, width)`` uint8 (NUL-padded)."""
        import numpy as np

        width = self.names.dtype.itemsize
        return np.ascontiguousarray(self.names).view(np.uint8).reshape(len(self.names), width)

    def lengths(self) -> np.ndarray:
        """Each name's length in bytes (int64)."""
        import numpy as np

        if self._lens is not None:
            return self._lens
        if self.ints is not None:  # "i:" and the digits
            return 2 + _digit_counts(self.ints)
        return (self.rows() != 0).sum(axis=1, dtype=np.int64)  # type: ignore[no-any-return]


def _digit_counts(ints: np.ndarray) -> np.ndarray:
    """Decimal digits of each non-negative int64 of ``ints``."""
    import numpy as np

    counts = np.ones(len(ints), np.int64)
    p = 10
    top = int(ints.max()) if len(ints) else 0
    while p <= top:
        counts += ints >= p
        p *= 10
    return counts


def int_key_names(ints: np.ndarray) -> KeyNames:
    """The encoded names (``"i:<decimal>"``) of non-negative int64 keys, in
    vectorised passes: exactly :func:`hangar_git.naming.encode_key` of each.

    Parameters
    ----------
    ints : numpy.ndarray
        1-D int64, every value >= 0.

    Returns
    -------
    KeyNames
    """
    import numpy as np

    ints = np.ascontiguousarray(ints, np.int64)
    runs = _digit_runs(ints)
    if runs is not None:
        return _ascending_key_names(ints, runs)
    n = len(ints)
    counts = _digit_counts(ints)
    width = int(counts.max()) if n else 1
    # divisions of 32-bit ints are several times faster than of 64-bit ones
    rest = ints.astype(np.uint32) if width < 10 else ints.copy()
    ten = rest.dtype.type(10)
    digits = np.empty((width, n), np.uint8)  # a row per decimal place, the units last
    for j in range(width - 1, -1, -1):
        quot = rest // ten
        np.subtract(rest, quot * ten, out=digits[j], casting="unsafe")
        rest = quot
    digits += np.uint8(ord("0"))
    rows = np.zeros((n, width + 2), np.uint8)  # each name, NUL-padded
    rows[:, 0], rows[:, 1] = ord("i"), ord(":")
    by_name = digits.T  # each key's digits right-aligned, leading zeros first
    for c in range(1, width + 1):  # the names of c digits take their last c
        at = np.flatnonzero(counts == c)
        if not len(at):
            continue
        a, b = int(at[0]), int(at[-1]) + 1
        if b - a == len(at):  # one run of rows (sorted keys): sliced, not gathered
            rows[a:b, 2 : 2 + c] = by_name[a:b, width - c :]
        else:
            rows[at, 2 : 2 + c] = by_name[at, width - c :]
    return KeyNames(rows.view(f"S{width + 2}").ravel(), ints)


def _digit_runs(ints: np.ndarray) -> list[tuple[int, int, int]] | None:
    """For ascending non-negative int64 ``ints``: ``(digits, start, stop)`` of
    each run of rows with that many decimal digits, in order; None when the
    ints are not ascending."""
    import numpy as np

    n = len(ints)
    if n > 1 and not (ints[1:] >= ints[:-1]).all():
        return None
    stops = [*np.searchsorted(ints, [10**c for c in range(1, 19)]).tolist(), n]
    runs, start = [], 0
    for digits, stop in enumerate(stops, start=1):
        if stop > start:
            runs.append((digits, start, stop))
        start = stop
    return runs


def _ascending_key_names(ints: np.ndarray, runs: list[tuple[int, int, int]]) -> KeyNames:
    """:func:`int_key_names` of ascending ``ints`` (:func:`_digit_runs` gave
    ``runs``): each run's digits written straight into its rows' columns, a
    decimal place at a time, through two reused buffers (no array of all
    digits, no gathers; about half the time and a third of the memory
    touched), their lengths known on the way."""
    import numpy as np

    n = len(ints)
    width = runs[-1][0] if runs else 1
    rows = np.empty((n, width + 2), np.uint8)
    rows[:, 0], rows[:, 1] = ord("i"), ord(":")
    lens = np.empty(n, np.int64)
    for digits, a, b in runs:
        lens[a:b] = digits + 2
        rows[a:b, 2 + digits :] = 0  # the NUL padding
        # divisions of 32-bit ints are several times faster than of 64-bit ones
        rest = ints[a:b].astype(np.uint32) if digits < 10 else ints[a:b].copy()
        quot, part = np.empty_like(rest), np.empty_like(rest)
        ten, zero = rest.dtype.type(10), rest.dtype.type(ord("0"))
        for place in range(digits):  # the units first, into the last column
            np.floor_divide(rest, ten, out=quot)
            np.multiply(quot, ten, out=part)
            np.subtract(rest, part, out=part)
            part += zero
            rows[a:b, 1 + digits - place] = part
            rest, quot = quot, rest
    return KeyNames(rows.view(f"S{width + 2}").ravel(), ints, lens)


def names_crc32(rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``zlib.crc32`` of each name: the first ``lengths[i]`` bytes of ``rows[i]``.

    One table look-up per byte column over all names at once (uint32).
    """
    import numpy as np

    table = _crc_table()
    n = len(rows)
    crc = np.full(n, 0xFFFFFFFF, np.uint32)
    eight = np.uint32(8)
    if n > 1 and (lengths[1:] >= lengths[:-1]).all():
        # lengths ascending (the names of ascending int keys): the names with
        # a byte in column j are the rows from the first longer than j on
        # (a slice: no mask, no copy of the unchanged)
        starts = np.searchsorted(lengths, np.arange(rows.shape[1]), side="right").tolist()
        for j, s in enumerate(starts):
            c = crc[s:]
            c[:] = table[(c ^ rows[s:, j]) & 0xFF] ^ (c >> eight)
        return crc ^ np.uint32(0xFFFFFFFF)
    for j in range(rows.shape[1]):
        nxt = table[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> eight)
        crc = np.where(j < lengths, nxt, crc)
    return crc ^ np.uint32(0xFFFFFFFF)


__all__ = ["KeyNames", "int_key_names", "names_crc32"]
