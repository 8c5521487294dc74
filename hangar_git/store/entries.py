"""Index entries as numpy arrays: their layout, making and sorting them,
and searching the loaded segments.

An index entry (:data:`ENTRY`, 32 bytes) names where one payload sits: its
digest (the first 8 bytes as a big-endian search key, then the other 12),
its block, its offset in the block and its kind. A segment of
:mod:`.index` is entries sorted by digest; loaded, it is a :class:`Run`,
searched with one vectorised binary search for any number of digests
(:func:`lookup_runs`). Nothing here touches SQLite: :mod:`.index` stores
the segments and re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .checksum import crc32
from .digest import DIGEST_SIZE

#: one index entry: the digest (its first 8 bytes as a big-endian search key,
#: then the other 12), the block id, the item's offset in the block, the kind id
ENTRY = np.dtype(
    [("key", ">u8"), ("tail", "V12"), ("block", "<u4"), ("ioff", "<u4"), ("kind", "<u4")]
)
QUERY = np.dtype([("key", ">u8"), ("tail", "V12")])
#: an entry as one opaque item (copies of entries without per-field work)
_ENTRY_BYTES = np.dtype(f"V{ENTRY.itemsize}")


def make_entries(
    digests: Sequence[bytes], blocks: Sequence[int], ioffs: Sequence[int], kinds: Sequence[int]
) -> np.ndarray:
    """Index entries for parallel lists, sorted by digest."""
    e = np.empty(len(digests), ENTRY)
    if len(digests):
        q = np.frombuffer(b"".join(digests), QUERY)
        e["key"] = q["key"]
        e["tail"] = q["tail"]
        e["block"] = blocks
        e["ioff"] = ioffs
        e["kind"] = kinds
    return sorted_entries(e)


def sorted_entries(e: np.ndarray) -> np.ndarray:
    """Entries ``e`` as :data:`ENTRY`, sorted by digest (stable)."""
    e = e.astype(ENTRY, copy=False)
    order, _ = key_order(e["key"].astype(np.uint64))
    return np.take(e, order)  # 10x faster than e[order] for this structured dtype


def key_order(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, keys[order])``: the stable sort of uint64 ``keys`` (what
    ``np.argsort(keys, kind="stable")`` gives), about three times as fast.

    Each key's top bits are packed with its position (in the bits a
    position needs) into one uint64, and those sorted by numpy's vectorised
    sort: keys then come in order of their top bits, equal ones in order
    of position. That is the stable order unless two different keys share
    their top bits and come out of order (rare for digests, whose keys are
    uniform): then the argsort is taken.

    Parameters
    ----------
    keys : numpy.ndarray
        1-D, native uint64.

    Returns
    -------
    order : numpy.ndarray
        int64 positions.
    sorted_keys : numpy.ndarray
        uint64, ``keys[order]``.
    """
    n = len(keys)
    bits = (n - 1).bit_length()
    if n > 1 and bits <= 40:
        shift = np.uint64(bits)
        packed = keys >> shift
        packed <<= shift
        packed |= np.arange(n, dtype=np.uint64)
        packed.sort()
        packed &= np.uint64((1 << bits) - 1)  # the positions, in place
        order = packed.view(np.int64)
        sk = keys[order]
        if not (sk[1:] < sk[:-1]).any():
            return order, sk
    order = np.argsort(keys, kind="stable")
    return order, keys[order]


def entry_digests(e: np.ndarray) -> list[bytes]:
    """The digests of index entries ``e``, as bytes."""
    q = np.empty(len(e), QUERY)
    q["key"] = e["key"]
    q["tail"] = e["tail"]
    raw = q.tobytes()
    return [raw[i : i + DIGEST_SIZE] for i in range(0, len(raw), DIGEST_SIZE)]


class Run:
    """One loaded segment: its entries, and their sort keys (native uint64),
    made when first asked for: entries taken at kept places (see
    :mod:`.placement`) need no search, and so no keys (a 60,000-entry
    segment's keys are 0.5 MB of fresh memory, about 120 page faults in a
    fresh process).

    Parameters
    ----------
    sid : int
        The segment's id.
    keys : numpy.ndarray or None
        Its entries' keys when the caller has them, else None (made on use).
    entries : numpy.ndarray
        Its entries (:data:`ENTRY`), sorted by key.
    """

    __slots__ = ("_keys", "entries", "sid")

    def __init__(self, sid: int, keys: np.ndarray | None, entries: np.ndarray) -> None:
        self.sid = sid
        self._keys = keys
        self.entries = entries

    @property
    def keys(self) -> np.ndarray:
        """The entries' keys as native uint64 (what a search compares)."""
        keys = self._keys
        if keys is None:
            keys = self._keys = self.entries["key"].astype(np.uint64)
        return keys

    def __len__(self) -> int:
        """The number of entries."""
        return len(self.entries)


#: keys compared at a time by :func:`_keys_sorted` (64 KiB of native keys)
_SORT_CHECK = 8192


def _keys_sorted(keys: np.ndarray) -> bool:
    """True when ``keys`` (any integer dtype, the big-endian field of entries
    say) never decrease: compared a stretch at a time through one small
    native buffer (no array of them all)."""
    n = len(keys)
    if n < 2:
        return True
    buf = np.empty(min(n, _SORT_CHECK + 1), np.uint64)
    for a in range(0, n - 1, _SORT_CHECK):
        part = keys[a : a + _SORT_CHECK + 1]
        k = buf[: len(part)]
        k[...] = part  # (byte-swapped into place)
        if not (k[1:] >= k[:-1]).all():
            return False
    return True


def lookup_runs(
    runs: Sequence[Run],
    digests: Sequence[bytes] | bytes,
    where: np.ndarray | None = None,
    sorted_keys: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(found, entries)`` for ``digests`` in ``runs``; entries valid where found.

    ``digests`` may also be given joined (one bytes object of 20-byte
    digests). A run smaller than the query is searched the other way round
    first (its keys among the sorted queries): only digests sharing a key
    with it are looked up in it (those of a bulk write are mostly new).
    ``sorted_keys``, when the caller has them, are the digests' keys (their
    first 8 bytes, big-endian, as native uint64) sorted, spared a sort here.
    ``where`` (int64, one per digest), when given, is set where found to
    the place of each entry: ``run index << 32 | position in the run``."""
    if isinstance(digests, bytes):
        if len(digests) % DIGEST_SIZE:
            raise ValueError("joined digests of a length not a multiple of 20")
        n = len(digests) // DIGEST_SIZE
    else:
        n = len(digests)
    found = np.zeros(n, bool)
    out = np.zeros(n, ENTRY)
    if not n or not runs:
        return found, out
    joined = digests if isinstance(digests, bytes) else b"".join(digests)
    if len(joined) != DIGEST_SIZE * n and not isinstance(digests, bytes):
        # a malformed digest is never stored
        ok = [i for i, d in enumerate(digests) if len(d) == DIGEST_SIZE]
        w2 = None if where is None else np.zeros(len(ok), np.int64)
        f2, e2 = lookup_runs(runs, [digests[i] for i in ok], w2)
        found[ok] = f2
        out[ok] = e2
        if where is not None:
            where[ok] = w2
        return found, out
    q = np.frombuffer(joined, QUERY)
    qk = q["key"].astype(np.uint64)
    qt = q["tail"]
    if sorted_keys is not None and len(sorted_keys) != n:
        raise ValueError(f"{len(sorted_keys)} sorted keys for {n} digests")
    rows = out.view(_ENTRY_BYTES)  # whole entries copied as they are
    for ri, run in enumerate(runs):
        m = len(run)
        if not m:
            continue
        sel = np.arange(n)
        if m < n:
            sorted_keys = np.sort(qk) if sorted_keys is None else sorted_keys
            rk = run.keys
            p = np.minimum(np.searchsorted(sorted_keys, rk), n - 1)
            common = rk[sorted_keys[p] == rk]
            if not len(common):
                continue
            # the queries whose key is among ``common`` (sorted: searched, not
            # np.isin, which imports numpy.ma in a fresh process: 15-40 ms)
            at = np.minimum(np.searchsorted(common, qk), len(common) - 1)
            sel = np.flatnonzero((common[at] == qk) & ~found)
        hit, cand, pos = _search_run(run, qk[sel], qt[sel], found[sel])
        if len(sel) == n and hit.all():  # the usual case: every digest in this run
            if where is not None:
                where[:] = pos
                where |= ri << 32
            return hit, cand
        w = sel[hit]
        rows[w] = cand.view(rows.dtype)[hit]
        found[w] = True
        if where is not None:
            where[w] = pos[hit] | (ri << 32)
        if found.all():
            break
    return found, out


def _search_run(
    run: Run, qk: np.ndarray, qt: np.ndarray, done: np.ndarray, sorted_queries: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hit, entries, positions)`` of queries ``qk``/``qt`` (keys, tails) in
    ``run``, leaving out those ``done``; entries and their positions in the
    run (int64) are valid where hit. Many queries are searched in key order
    (twice as fast: each search starts where the last ended, in memory
    still cached)."""
    if len(qk) > 4096 and len(run) > 4096 and not sorted_queries:
        o = np.argsort(qk)
        hit_s, cand_s, pos_s = _search_run(run, qk[o], qt[o], done[o], True)
        hit, cand, where = np.empty_like(hit_s), np.empty_like(cand_s), np.empty_like(pos_s)
        hit[o] = hit_s
        cand.view(_ENTRY_BYTES)[o] = cand_s.view(_ENTRY_BYTES)
        where[o] = pos_s
        return hit, cand, where
    keys = run.keys
    m = len(keys)
    pos = np.minimum(np.searchsorted(keys, qk), m - 1).astype(np.int64, copy=False)
    cand = np.take(run.entries, pos)
    same_key = keys[pos] == qk
    hit = same_key & (cand["tail"] == qt) & ~done
    clash = same_key & ~hit & ~done  # another digest with the same first 8 bytes
    for i in np.flatnonzero(clash).tolist():
        j = int(pos[i]) + 1
        while j < m and keys[j] == qk[i]:
            if run.entries[j]["tail"] == qt[i]:
                cand[i] = run.entries[j]
                hit[i] = True
                pos[i] = j
                break
            j += 1
    return hit, cand, pos


def parse_run(sid: int, n: int, chk: int, blob: bytes) -> Run | str:
    """Segment row ``(sid, n, chk, blob)`` as a :class:`Run`, or why it is refused."""
    if not isinstance(blob, bytes) or crc32(blob) != chk:
        return "fails its checksum"
    if len(blob) != n * ENTRY.itemsize:
        return "has the wrong length"
    e = np.frombuffer(blob, ENTRY)
    if not _keys_sorted(e["key"]):
        return "is not sorted"
    return Run(sid, None, e)  # (its keys made when a search needs them)


__all__ = [
    "ENTRY",
    "QUERY",
    "Run",
    "entry_digests",
    "key_order",
    "lookup_runs",
    "make_entries",
    "parse_run",
    "sorted_entries",
]
