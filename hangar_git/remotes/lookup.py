"""Finding payloads over every pack of a data remote, and reading them in few requests.

:class:`RemoteLookup` merges the indexes of a remote's packs into flat
columns (one row per payload); :func:`plan_ranges` groups the blocks a fetch
wants into few ranged reads, and :func:`split_blocks` cuts each read back
into its blocks. The pack format itself is in :mod:`.packformat`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from .packformat import ENTRY_DTYPE, Entry, PackIndex

#: two block ranges of one pack closer than this are read in one request
COALESCE_GAP = 512 * 1024
#: largest single ranged read (a fetch checks one while it reads the next)
MAX_RANGE = 8 * 1024 * 1024


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
    rows : dict of bytes to int
        Row of each digest.
    pack, kind, boff, blen, ioff, ilen : numpy.ndarray
        Per row: pack number, kind number, block offset and length, item
        offset and length.
    """

    def __init__(self, indexes: Mapping[str, PackIndex]) -> None:
        self.pack_ids: list[str] = []
        kind_no: dict[str, int] = {}
        self.rows: dict[bytes, int] = {}
        packs, tables, kmaps = [], [], []
        offset = 0
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
            for i, d in enumerate(idx.digests):
                self.rows.setdefault(d, offset + i)
            offset += n
        self.kinds: list[str] = list(kind_no)
        self.pack = np.concatenate(packs) if packs else np.zeros(0, np.int32)
        self.kind = np.concatenate(kmaps) if kmaps else np.zeros(0, np.int32)
        cat = np.concatenate(tables) if tables else np.zeros(0, ENTRY_DTYPE)
        self.boff = cat["boff"].astype(np.int64)
        self.blen = cat["blen"].astype(np.int64)
        self.ioff = cat["ioff"].astype(np.int64)
        self.ilen = cat["ilen"].astype(np.int64)

        self._digests: list[bytes] = [d for pid in sorted(indexes) for d in indexes[pid].digests]

    def __len__(self) -> int:
        return len(self.rows)

    def digest_of(self, row: int) -> bytes:
        """The digest at ``row``."""
        return self._digests[row]

    def digests_at(self, rows: Sequence[int]) -> list[bytes]:
        """The digests at ``rows``, in order.

        Parameters
        ----------
        rows : sequence of int
            Rows of this lookup.

        Returns
        -------
        list of bytes
        """
        get = self._digests.__getitem__
        return [get(r) for r in rows]

    def __contains__(self, digest: object) -> bool:
        return digest in self.rows

    def get(self, digest: bytes) -> tuple[str, Entry] | None:
        """``(pack id, Entry)`` of one payload, None when absent."""
        r = self.rows.get(digest)
        if r is None:
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


__all__ = ["COALESCE_GAP", "MAX_RANGE", "RemoteLookup", "plan_ranges", "split_blocks"]
