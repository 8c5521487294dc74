"""Finding payloads over every pack of a data remote, and reading them in few requests.

:class:`RemoteLookup` merges the indexes of a remote's packs into flat
columns (one row per payload), its digests found by a binary search over
them (:class:`DigestIndex`: no dict of 60,000 digests to build);
:func:`plan_ranges` groups the blocks a fetch
wants into few ranged reads, and :func:`split_blocks` cuts each read back
into its blocks. The pack format itself is in :mod:`.packformat`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..store.index import key_order
from .packformat import ENTRY_DTYPE, Entry, PackIndex

#: two block ranges of one pack closer than this are read in one request
COALESCE_GAP = 512 * 1024
#: largest single ranged read (a fetch checks one while it reads the next)
MAX_RANGE = 8 * 1024 * 1024


#: queries of :meth:`DigestIndex.find` at least this many are sorted first
#: (60,000 random searches: 5 ms, 1 ms sorted and searched in order)
SORT_QUERIES = 256

#: a digest's first 8 bytes (big-endian: sorts as the bytes do), then the rest
_KEYED = np.dtype([("key", ">u8"), ("tail", "V12")])
DIGEST = 20


class DigestIndex:
    """Rows of digests, found by a binary search (no Python object per digest).

    Parameters
    ----------
    joined : bytes
        The digests, 20 bytes each, joined: row ``i`` is the ``i``-th.
    """

    def __init__(self, joined: bytes) -> None:
        if len(joined) % DIGEST:
            raise ValueError("joined digests of a length not a multiple of 20")
        self.joined = joined
        key = _keys(joined)
        self._order, self._sorted = key_order(key)  # stable: equal keys by row

    def __len__(self) -> int:
        return len(self.joined) // DIGEST

    def find(self, joined: bytes) -> np.ndarray:
        """The row of each digest of ``joined`` (the first when listed more
        than once), -1 where absent.

        Parameters
        ----------
        joined : bytes
            Digests, 20 bytes each, joined.

        Returns
        -------
        numpy.ndarray
            int64 rows.
        """
        if len(joined) % DIGEST:
            raise ValueError("joined digests of a length not a multiple of 20")
        if joined == self.joined:  # the digests indexed, in order (a whole fetch)
            return self._first_rows()
        return self._search(joined)

    def _search(self, joined: bytes) -> np.ndarray:
        """:meth:`find` by a binary search of each digest."""
        q = _keys(joined)
        out = np.full(len(q), -1, np.int64)
        if not len(self) or not len(q):
            return out
        last = len(self) - 1
        if len(q) >= SORT_QUERIES:  # searched in key order: each search starts near the last
            qo, qs = key_order(q)
            lo = np.empty(len(q), np.int64)
            lo[qo] = np.searchsorted(self._sorted, qs, "left")
        else:
            lo = np.searchsorted(self._sorted, q, "left")
        lo = np.minimum(lo, last)
        key = self._sorted[lo] == q
        more = key & (self._sorted[np.minimum(lo + 1, last)] == q) & (lo < last)
        cand = self._order[lo]
        mine = np.frombuffer(self.joined, f"S{DIGEST}")
        ok = key & ~more & (mine[cand] == np.frombuffer(joined, f"S{DIGEST}"))
        out[ok] = cand[ok]
        for i in np.flatnonzero(more).tolist():  # rare: repeats, or shared keys
            d = joined[i * DIGEST : (i + 1) * DIGEST]
            hi = int(np.searchsorted(self._sorted, q[i], "right"))
            for r in sorted(self._order[lo[i] : hi].tolist()):
                if self.joined[r * DIGEST : (r + 1) * DIGEST] == d:
                    out[i] = r
                    break
        return out

    def _first_rows(self) -> np.ndarray:
        """:meth:`find` of every digest indexed, in order: each row, or the
        first row of its digest (rows sharing a key compared whole)."""
        out = np.arange(len(self), dtype=np.int64)
        key = self._sorted
        same = np.flatnonzero(key[1:] == key[:-1])
        if len(same):
            rows = distinct(np.concatenate((self._order[same], self._order[same + 1])))
            out[rows] = self._search(self.at(rows))
        return out

    def at(self, rows: np.ndarray) -> bytes:
        """The digests at ``rows``, joined."""
        grid = np.frombuffer(self.joined, np.uint8).reshape(-1, DIGEST)
        return grid[rows].tobytes()  # type: ignore[no-any-return]

    def digests_at(self, rows: np.ndarray) -> list[bytes]:
        """The digests at ``rows``, in order."""
        grid = np.frombuffer(self.joined, np.uint8).reshape(-1, DIGEST)
        return np.ascontiguousarray(grid[rows]).view(f"V{DIGEST}").ravel().tolist()  # type: ignore[no-any-return]


def distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values of 1-d ``values``, sorted: ``np.unique`` without
    the import of ``numpy.ma`` a plain ``np.unique`` makes in a fresh process
    (15-40 ms of a push or fetch-data; numpy 2.x).

    Parameters
    ----------
    values : numpy.ndarray
        A 1-d array of a sortable dtype (no NaN).

    Returns
    -------
    numpy.ndarray
    """
    srt = np.sort(values, kind="stable")
    if len(srt) < 2:
        return srt
    keep = np.empty(len(srt), bool)
    keep[0] = True
    np.not_equal(srt[1:], srt[:-1], out=keep[1:])
    return srt[keep]


def _keys(joined: bytes) -> np.ndarray:
    return np.frombuffer(joined, _KEYED)["key"].astype(np.uint64)


def join_digests(digests: Sequence[bytes] | bytes) -> bytes | None:
    """``digests`` joined (20 bytes each); None when one is of another length."""
    if isinstance(digests, bytes):
        return digests if not len(digests) % DIGEST else None
    joined = b"".join(digests)
    return joined if len(joined) == DIGEST * len(digests) else None


class DigestLimits(Mapping[bytes, int]):
    """``{digest: the most raw bytes it may hold}`` as arrays.

    Parameters
    ----------
    joined : bytes
        The digests, joined.
    bounds : numpy.ndarray
        int64, the bound of each.
    """

    def __init__(self, joined: bytes, bounds: np.ndarray) -> None:
        self.index = DigestIndex(joined)
        self.bounds = np.asarray(bounds, np.int64)

    def bounds_of(self, joined: bytes, default: int) -> np.ndarray:
        """The bound of each digest of ``joined`` (``default`` where absent)."""
        rows = self.index.find(joined)
        out = np.full(len(rows), default, np.int64)
        hit = rows >= 0
        out[hit] = self.bounds[rows[hit]]
        return out

    def __getitem__(self, digest: bytes) -> int:
        if not isinstance(digest, bytes) or len(digest) != DIGEST:
            raise KeyError(digest)
        r = int(self.index.find(digest)[0])
        if r < 0:
            raise KeyError(digest)
        return int(self.bounds[r])

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.index.digests_at(first_rows(self.index)))

    def __len__(self) -> int:
        return len(first_rows(self.index))


def first_rows(index: DigestIndex) -> np.ndarray:
    """The rows of ``index`` that are the first of their digest."""
    rows = index.find(index.joined)
    return np.flatnonzero(rows == np.arange(len(rows)))


class RemoteLookup:
    """digest -> where, over every pack of a remote (one row per payload).

    Parameters
    ----------
    indexes : mapping of str to PackIndex
        The remote's pack indexes, by pack id. A digest in several packs is
        found in the first (by pack id).

    Attributes
    ----------
    pack_ids : list of str
        The packs, sorted; :attr:`pack` numbers them.
    kinds : list of str
        The kind headers; :attr:`kind` numbers them.
    index : DigestIndex
        The digest of each row, and the row of each digest.
    pack, kind, boff, blen, ioff, ilen : numpy.ndarray
        Per row: pack number, kind number, block offset and length, item
        offset and length.
    """

    def __init__(self, indexes: Mapping[str, PackIndex]) -> None:
        self.pack_ids: list[str] = []
        kind_no: dict[str, int] = {}
        packs, tables, kmaps, joined = [], [], [], []
        for pid in sorted(indexes):
            idx = indexes[pid]
            n = len(idx)
            packs.append(np.full(n, len(self.pack_ids), np.int32))
            self.pack_ids.append(pid)
            kmap = np.array(
                [kind_no.setdefault(k, len(kind_no)) for k in idx.kinds] or [0], np.int32
            )
            kmaps.append(kmap[idx.table["kind"].astype(np.int64)] if n else np.zeros(0, np.int32))
            tables.append(idx.table)
            joined.append(idx.joined)
        self.kinds: list[str] = list(kind_no)
        self.pack = np.concatenate(packs) if packs else np.zeros(0, np.int32)
        self.kind = np.concatenate(kmaps) if kmaps else np.zeros(0, np.int32)
        cat = np.concatenate(tables) if tables else np.zeros(0, ENTRY_DTYPE)
        self.boff = cat["boff"].astype(np.int64)
        self.blen = cat["blen"].astype(np.int64)
        self.ioff = cat["ioff"].astype(np.int64)
        self.ilen = cat["ilen"].astype(np.int64)
        self.index = DigestIndex(b"".join(joined))

    def __len__(self) -> int:
        """Rows (a payload in two packs counts twice)."""
        return len(self.index)

    def find(self, digests: Sequence[bytes] | bytes) -> np.ndarray:
        """The row of each digest (joined, or a sequence), -1 where absent."""
        joined = join_digests(digests)
        if joined is None:  # a malformed digest is never there
            assert not isinstance(digests, bytes)
            return np.array([self.row(d) for d in digests], np.int64)
        return self.index.find(joined)

    def row(self, digest: object) -> int:
        """The row of one digest, -1 where absent."""
        if not isinstance(digest, bytes) or len(digest) != DIGEST:
            return -1
        return int(self.index.find(digest)[0])

    def digest_of(self, row: int) -> bytes:
        """The digest at ``row``."""
        return self.index.joined[row * DIGEST : (row + 1) * DIGEST]

    def digests_at(self, rows: Sequence[int] | np.ndarray) -> list[bytes]:
        """The digests at ``rows``, in order.

        Parameters
        ----------
        rows : sequence of int
            Rows of this lookup.

        Returns
        -------
        list of bytes
        """
        return self.index.digests_at(np.asarray(rows, np.int64))

    def __contains__(self, digest: object) -> bool:
        return self.row(digest) >= 0

    def get(self, digest: bytes) -> tuple[str, Entry] | None:
        """``(pack id, Entry)`` of one payload, None when absent."""
        r = self.row(digest)
        if r < 0:
            return None
        return self.pack_ids[self.pack[r]], Entry(
            int(self.boff[r]),
            int(self.blen[r]),
            int(self.ioff[r]),
            int(self.ilen[r]),
            self.kinds[self.kind[r]],
        )


def plan_ranges(
    blocks: Iterable[tuple[str, int, int]],
    gap: int | None = None,
    max_range: int | None = None,
) -> list[tuple[str, int, int, list[tuple[int, int]]]]:
    """Group wanted blocks ``(pack id, offset, length)`` into few ranged reads.

    Parameters
    ----------
    blocks : iterable of (str, int, int)
        The blocks wanted (repeats are read once).
    gap : int, optional
        Blocks of one pack closer than this share a read (default
        :data:`COALESCE_GAP`).
    max_range : int, optional
        Largest read (default :data:`MAX_RANGE`).

    Returns
    -------
    list of (str, int, int, list of (int, int))
        ``(pack id, start, end, [(block offset, block length) ...])`` per read.
    """
    gap = COALESCE_GAP if gap is None else gap
    max_range = MAX_RANGE if max_range is None else max_range
    by_pack: dict[str, set[tuple[int, int]]] = {}
    for pid, boff, blen in blocks:
        by_pack.setdefault(pid, set()).add((boff, blen))
    out = []
    for pid in sorted(by_pack):
        cur: list[tuple[int, int]] = []
        start = end = 0
        for boff, blen in sorted(by_pack[pid]):
            if cur and boff - end <= gap and boff + blen - start <= max_range:
                cur.append((boff, blen))
                end = max(end, boff + blen)
                continue
            if cur:
                out.append((pid, start, end, cur))
            cur = [(boff, blen)]
            start, end = boff, boff + blen
        if cur:
            out.append((pid, start, end, cur))
    return out


def split_blocks(
    data: bytes, start: int, blocks: Sequence[tuple[int, int]]
) -> Iterator[tuple[int, memoryview]]:
    """``(block offset, block bytes)`` of each block inside a range read at ``start``."""
    view = memoryview(data)
    for boff, blen in blocks:
        yield boff, view[boff - start : boff - start + blen]


__all__ = [
    "COALESCE_GAP",
    "MAX_RANGE",
    "SORT_QUERIES",
    "DigestIndex",
    "DigestLimits",
    "RemoteLookup",
    "distinct",
    "first_rows",
    "join_digests",
    "plan_ranges",
    "split_blocks",
]
