"""What the pack writer wrote but has not yet indexed: :class:`Uncommitted`.

Blocks reach the disk before any index entry names them; until the
writer's next flush commits them (as one new index segment), their block
rows and entries wait here, and :meth:`Uncommitted.held` tells which
digests of a bulk add have entries waiting already (content addressing keeps
one copy: the same rows added twice before a flush are written once).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence

import numpy as np

from .index import QUERY, block_check, key_order, make_entries, sorted_entries


class Uncommitted:
    """Block rows and index entries written but not yet committed.

    Attributes
    ----------
    digests : list of bytes
        Digests of the entries added one by one (by :meth:`add`), in order.
    block_rows : list of tuple
        ``(block id, pack, offset, length, row check)`` of each new block.
    """

    def __init__(self) -> None:
        self.digests: list[bytes] = []
        self._blocks: list[int] = []
        self._ioffs: list[int] = []
        self._kinds: list[int] = []
        self.block_rows: list[tuple[int, int, int, int, int]] = []
        self._arrays: list[np.ndarray] = []  # entries added whole (stacked rows)
        self._presorted = False  # True while the one array added is sorted already
        #: the keys and tails of the entries of ``_arrays[:_searched]``, in sorted
        #: runs of sizes falling by half or more (each entry in one run)
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._searched = 0

    def __bool__(self) -> bool:
        return bool(self.digests or self._arrays)

    def add_block(self, bid: int, pack: int, boff: int, blen: int) -> None:
        """A new block row (a large payload's too: pack 0, its file number)."""
        self.block_rows.append((bid, pack, boff, blen, block_check(bid, pack, boff, blen)))

    def add(
        self, digests: Sequence[bytes], bid: int, ioffs: Iterable[int], kinds: Iterable[int]
    ) -> None:
        """Entries of ``digests``, all in block ``bid``, at ``ioffs`` of ``kinds``."""
        self.digests.extend(digests)
        self._blocks.extend([bid] * len(digests))
        self._ioffs.extend(ioffs)
        self._kinds.extend(kinds)

    def add_entries(self, e: np.ndarray) -> None:
        """Entries already built (:data:`.index.ENTRY`, any order)."""
        self._arrays.append(e)
        self._presorted = False

    def add_sorted_entries(self, e: np.ndarray) -> None:
        """Entries already built and sorted by digest (:data:`.index.ENTRY`, in
        the order of :func:`.index.sorted_entries`): when they are all there
        is, :meth:`entries` returns them as they are."""
        self._arrays.append(e)
        self._presorted = len(self._arrays) == 1

    @property
    def whole(self) -> bool:
        """True when entries were added whole (by a bulk add) since the last commit."""
        return bool(self._arrays)

    def held(self, joined: bytes, order: np.ndarray | None = None) -> np.ndarray | None:
        """Which digests of ``joined`` (20-byte digests, joined) have an entry
        added whole (:meth:`add_entries`, :meth:`add_sorted_entries`) and not
        yet committed; None when none was added (the check costs nothing).

        Entries added one by one (:meth:`add`) are not looked at: the writer
        knows their digests already. The digests are searched for in sorted
        order (several times as fast as in any order).

        Parameters
        ----------
        joined : bytes
        order : numpy.ndarray, optional
            The order that sorts the digests' keys, when known
            (:func:`digest_order`).

        Returns
        -------
        numpy.ndarray or None
            bool, one per digest of ``joined``.
        """
        if not self._arrays:
            return None
        self._sort_runs()
        q = np.frombuffer(joined, QUERY)
        keys = q["key"].astype(np.uint64)
        if order is None:
            order, keys = key_order(keys)
        else:
            keys = keys[order]
        tails = q["tail"]
        mask = np.zeros(len(q), bool)
        for run_keys, run_tails in self._runs:
            at = np.searchsorted(run_keys, keys, "left")
            cand = np.flatnonzero(at < len(run_keys))
            cand = cand[run_keys[at[cand]] == keys[cand]]
            rows = order[cand]
            same = run_tails[at[cand]] == tails[rows]
            mask[rows[same]] = True
            for j in cand[~same].tolist():  # another digest of the same key first (rare)
                k, key, tail = int(at[j]) + 1, keys[j], tails[order[j]]
                while k < len(run_keys) and run_keys[k] == key:
                    if run_tails[k] == tail:
                        mask[order[j]] = True
                        break
                    k += 1
        return mask

    def _sort_runs(self) -> None:
        """Take the arrays added since the last search into the sorted runs,
        merging a run with the one before it while that is not twice as long
        (so each entry is sorted again a few times at most)."""
        while self._searched < len(self._arrays):
            e = self._arrays[self._searched]
            self._searched += 1
            keys, tails = e["key"].astype(np.uint64), e["tail"]
            while self._runs and len(self._runs[-1][0]) < 2 * len(keys):
                pk, pt = self._runs.pop()
                keys, tails = np.concatenate([pk, keys]), np.concatenate([pt, tails])
            if len(keys) > 1 and (keys[1:] < keys[:-1]).any():
                order, keys = key_order(keys)
                tails = tails[order]
            self._runs.append((keys, tails))

    def entries(self) -> np.ndarray:
        """Every entry added, sorted by digest."""
        if self._presorted and not self.digests:
            return self._arrays[0]
        new = make_entries(self.digests, self._blocks, self._ioffs, self._kinds)
        if self._arrays:
            new = sorted_entries(np.concatenate([new, *self._arrays]))
        return new

    def clear(self) -> None:
        """Forget everything (committed, or dropped)."""
        self.digests.clear()
        self._blocks.clear()
        self._ioffs.clear()
        self._kinds.clear()
        self.block_rows.clear()
        self._arrays.clear()
        self._presorted = False
        self._runs.clear()
        self._searched = 0


def digest_order(joined: bytes) -> np.ndarray | None:
    """The order that sorts the 20-byte digests of ``joined`` as
    :func:`.index.sorted_entries` sorts their entries (by their first 8
    bytes, stably), or None when a digest is there twice.

    Parameters
    ----------
    joined : bytes
        Digests, joined.

    Returns
    -------
    numpy.ndarray or None
    """
    q = np.frombuffer(joined, QUERY)
    order, sk = key_order(q["key"].astype(np.uint64))  # stable: equal keys in input order
    same = np.flatnonzero(sk[1:] == sk[:-1])  # neighbours sharing a key (rare)
    if len(same):
        tails = q["tail"][order]
        if (tails[same] == tails[same + 1]).any():  # a digest next to itself
            return None
        # a repeated digest is among those sharing a key, not always a neighbour
        shared = np.zeros(len(sk), bool)
        shared[same] = shared[same + 1] = True
        raw = q[order[shared]].tobytes()
        if len({raw[i : i + 20] for i in range(0, len(raw), 20)}) < len(raw) // 20:
            return None
    return order


def last_occurrences(joined: bytes) -> np.ndarray | None:
    """Positions, ascending, of the last occurrence of each distinct 20-byte
    digest of ``joined`` (what ``dict(zip(digests, range(n)))`` keeps), from
    one stable sort of their first 8 bytes; None when two different digests
    share those (rare: the caller's dict then decides).

    Parameters
    ----------
    joined : bytes
        Digests, joined.

    Returns
    -------
    numpy.ndarray or None
        int64 positions.
    """
    q = np.frombuffer(joined, QUERY)
    if not len(q):
        return np.zeros(0, np.int64)
    order, sk = key_order(q["key"].astype(np.uint64))  # stable: a run ends at its last
    ends = np.ones(len(sk), bool)
    np.not_equal(sk[1:], sk[:-1], out=ends[:-1])
    inner = np.flatnonzero(~ends)  # each next to the one after it, under one key
    if len(inner):
        tails = q["tail"]
        if (tails[order[inner]] != tails[order[inner + 1]]).any():
            return None
    last = order[ends]
    last.sort()
    return last  # type: ignore[no-any-return]


def fresh_positions(
    joined: bytes,
    digests: Sequence[bytes],
    known: Container[bytes],
    pending: Container[bytes],
    last: np.ndarray | None = None,
) -> list[int]:
    """Positions, ascending, of the last occurrence of each distinct digest of
    ``joined`` (``digests`` joined) that neither ``known`` nor ``pending``
    holds: found by :func:`last_occurrences` (labels, a few digests over and
    over: no Python object per row), else by a dict of them all.

    Parameters
    ----------
    joined : bytes
    digests : sequence of bytes
    known, pending : container of bytes
        Digests stored or queued already (both empty: none looked up).
    last : numpy.ndarray, optional
        What :func:`last_occurrences` gives, known already (the hint of
        :class:`.digest_run.Digests`): nothing sorted here.

    Returns
    -------
    list of int
    """
    if last is None:
        last = last_occurrences(joined)
    if last is None:
        pick = dict(zip(digests, range(len(digests)), strict=True))
        return sorted(i for d, i in pick.items() if d not in known and d not in pending)
    at: list[int] = last.tolist()
    if not known and not pending:
        return at
    ds = np.frombuffer(joined, f"V{QUERY.itemsize}")[last].tolist()
    return [i for i, d in zip(at, ds, strict=True) if d not in known and d not in pending]


__all__ = ["Uncommitted", "digest_order", "fresh_positions", "last_occurrences"]
