"""Where index entries sit in the loaded segments: :class:`Placement`.

A bulk read of a whole arrayset resolves every digest through the index
(a vectorised binary search per segment, about 12 ms per 60,000 samples).
The places the search found (segment id, position in the segment) can be
kept (see :mod:`hangar_git.records.entry_hints`) and given back: the
entries are then taken at those places and each is checked to be the
entry of its digest, which costs a fraction of the search.

A placement is only ever a hint: :func:`entries_at` gives entries only
when every segment it names is loaded with the size it had, every
position lies inside its segment and every entry found there is the one
of the digest asked for; anything else (a segment merged or rewritten
since, a damaged or foreign hint) gives None, and the caller searches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .digest import DIGEST_SIZE
from .index import ENTRY, QUERY, Run, key_order, lookup_runs

#: an entry as one opaque item, and its digest (its first 20 bytes)
_ENTRY_BYTES = np.dtype(f"V{ENTRY.itemsize}")
#: uint32 words of a digest
_WORDS = DIGEST_SIZE // 4
#: places whose entries :func:`positions_in_one` compares at a time (their
#: entries, 256 KiB, taken into one buffer that is reused: few page faults)
_CHECK_ROWS = 8192


class Placement(NamedTuple):
    """Where the entries of some digests sit in the index segments.

    Attributes
    ----------
    sids : tuple of int
        Ids of the segments named, and ``sizes`` their numbers of entries.
    sizes : tuple of int
    where : numpy.ndarray
        int64, one per digest: ``i << 32 | position`` of its entry in
        segment ``sids[i]``.
    """

    sids: tuple[int, ...]
    sizes: tuple[int, ...]
    where: np.ndarray


class PlacedRows(NamedTuple):
    """Where a flush put the index entries of the rows of one bulk add: all
    in the one segment it committed (see :attr:`.writer.PackWriter.placed_rows`).

    Attributes
    ----------
    joined : bytes
        The rows' digests, joined, in row order.
    order : numpy.ndarray
        The rows in key order: row ``order[k]`` was the ``k``-th entry committed.
    at : numpy.ndarray or None
        Where the ``k``-th entry committed sits in the segment (int64); None:
        at ``k`` (no older segment merged into it).
    sid : int
        The segment's id, and ``size`` its number of entries.
    size : int
    """

    joined: bytes
    order: np.ndarray
    at: np.ndarray | None
    sid: int
    size: int

    def placement(self, rows: np.ndarray) -> Placement:
        """The :class:`Placement` of the digests of ``rows`` (row numbers), in
        that order: two gathers, no search."""
        n = len(self.order)
        pos = np.empty(n, np.int64)
        pos[self.order] = np.arange(n, dtype=np.int64) if self.at is None else self.at
        return Placement((self.sid,), (self.size,), pos[rows])


def place(runs: Sequence[Run], joined: bytes) -> tuple[np.ndarray, np.ndarray, Placement]:
    """:func:`.index.lookup_runs` of ``joined`` digests, with the placement
    of what it found (valid where found).

    When every digest is found by :func:`_place_sorted` (each the only
    entry of its first 8 bytes in the run holding it: the usual case) that
    is the answer; otherwise the general search of :mod:`.index` is run."""
    fast = _place_sorted(runs, joined)
    if fast is not None:
        return np.ones(len(fast[0]), bool), *fast
    where = np.zeros(len(joined) // DIGEST_SIZE, np.int64)
    found, e = lookup_runs(runs, joined, where)
    return found, e, _placement(runs, where, found)


def _placement(runs: Sequence[Run], where: np.ndarray, found: np.ndarray) -> Placement:
    """The placement of ``where`` (``run index << 32 | position``, valid
    where ``found``), naming only the runs used."""
    counts = np.bincount(where[found] >> 32, minlength=len(runs))
    used = np.flatnonzero(counts).tolist()  # only the segments named
    if used != list(range(len(used))):
        remap = np.zeros(len(runs), np.int64)
        remap[used] = np.arange(len(used))
        where = (remap[where >> 32] << 32) | (where & 0xFFFFFFFF)
    sids = tuple(runs[i].sid for i in used)
    sizes = tuple(len(runs[i]) for i in used)
    return Placement(sids, sizes, where)


def _same_digests(entries: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Per entry of ``entries`` (:data:`ENTRY`, or its opaque items): True
    when its digest is the row of ``words`` (digests as rows of five uint32)
    beside it; compared a word at a time (many times faster than rows)."""
    ew = entries.view(np.uint32).reshape(len(entries), ENTRY.itemsize // 4)
    same = ew[:, 0] == words[:, 0]
    for i in range(1, _WORDS):
        same &= ew[:, i] == words[:, i]
    return same  # type: ignore[no-any-return]


def _place_sorted(runs: Sequence[Run], joined: bytes) -> tuple[np.ndarray, Placement] | None:
    """``(entries, placement)`` of ``joined`` digests when each is found as
    the entry at its search position in some run (the runs in order, each
    asked for the digests not found before); None when some digest is not
    (absent, or sharing its first 8 bytes with another entry of a run): the
    general search then decides. The queries are searched in key order (about four
    times as fast as in their own order; put in it by :func:`.index.key_order`,
    0.6x the time of an argsort and a gather of the keys), each found entry
    compared whole."""
    n = len(joined) // DIGEST_SIZE
    if not n or len(joined) % DIGEST_SIZE or not runs:
        return None
    q = np.frombuffer(joined, QUERY)
    qk = q["key"].astype(np.uint64)
    words = np.frombuffer(joined, np.uint32).reshape(n, _WORDS)
    todo, tk = key_order(qk)  # query positions in key order, and their keys
    e = np.empty(n, _ENTRY_BYTES)
    where = np.empty(n, np.int64)
    hit = np.zeros(n, bool)
    for ri, run in enumerate(runs):
        m = len(run)
        if not m:
            continue
        pos = np.searchsorted(run.keys, tk)
        np.minimum(pos, m - 1, out=pos)
        e[todo] = np.take(run.entries.view(_ENTRY_BYTES), pos)
        where[todo] = pos | (ri << 32)
        # compared in the queries' order (no gather); those found in an
        # earlier run are not among ``todo``: their entries stay
        hit |= _same_digests(e, words)
        if hit.all():
            return e.view(ENTRY), _placement(runs, where, hit)
        miss = ~hit[todo]
        tk = tk[miss]
        if (run.keys[pos[miss]] == tk).any():
            return None  # another digest of the same first 8 bytes: maybe it is further on
        todo = todo[miss]
    return None


def _named_runs(runs: Sequence[Run], joined: bytes, placement: Placement) -> list[Run] | None:
    """The runs ``placement`` names, in its order, when each is loaded with
    the size it had and the placement has a place per digest of ``joined``;
    else None."""
    n = len(joined) // DIGEST_SIZE
    if (
        len(joined) % DIGEST_SIZE
        or len(placement.where) != n
        or len(placement.sids) != len(placement.sizes)
    ):
        return None
    by_sid = {r.sid: r for r in runs}
    named: list[Run] = []
    for sid, size in zip(placement.sids, placement.sizes, strict=True):
        run = by_sid.get(sid)
        if run is None or len(run) != size:
            return None
        named.append(run)
    return named


def positions_in_one(runs: Sequence[Run], joined: bytes, placement: Placement) -> Run | None:
    """The one run holding every place of ``placement`` (whose places are then
    the positions in it), when the placement is sound for ``runs`` (as
    :func:`entries_at` asks) and its entries at those places are those of
    ``joined`` digests; else None (also for an empty placement, or one of
    several runs: :func:`entries_at` decides those).

    Nothing of the size of the entries is made: the digests are compared a
    stretch of :data:`_CHECK_ROWS` places at a time, through one small
    buffer (a fresh 32-byte entry per digest would be a page fault every
    128 digests in a fresh process)."""
    named = _named_runs(runs, joined, placement)
    where = placement.where
    if named is None or len(named) != 1 or not len(where):
        return None
    if int(where.min()) < 0 or int(where.max()) >= placement.sizes[0]:
        return None
    ents = named[0].entries.view(_ENTRY_BYTES)
    words = np.frombuffer(joined, np.uint32).reshape(len(where), _WORDS)
    buf = np.empty(min(len(where), _CHECK_ROWS), _ENTRY_BYTES)
    for a in range(0, len(where), _CHECK_ROWS):
        at = where[a : a + _CHECK_ROWS]
        e = np.take(ents, at, out=buf[: len(at)], mode="clip")  # (bounds checked above)
        if not _same_digests(e, words[a : a + _CHECK_ROWS]).all():
            return None
    return named[0]


def entries_at(runs: Sequence[Run], joined: bytes, placement: Placement) -> np.ndarray | None:
    """The entries of ``joined`` digests at ``placement``, when it is sound for
    ``runs`` (see the module's docstring); else None."""
    n = len(joined) // DIGEST_SIZE
    where = placement.where
    named = _named_runs(runs, joined, placement)
    if named is None:
        return None
    if not n:
        return np.zeros(0, ENTRY)
    if not named:
        return None
    if len(named) == 1:  # every place in segment 0: the places are the positions
        if int(where.min()) < 0 or int(where.max()) >= placement.sizes[0]:
            return None
        e = np.take(named[0].entries.view(_ENTRY_BYTES), where)
    else:
        which = where >> 32
        pos = where & 0xFFFFFFFF
        if int(which.min()) < 0 or int(which.max()) >= len(named):
            return None
        e = np.empty(n, _ENTRY_BYTES)
        for i, run in enumerate(named):
            sel = np.flatnonzero(which == i)
            if not len(sel):
                continue
            p = pos[sel]
            if int(p.max()) >= len(run):
                return None
            e[sel] = np.take(run.entries.view(_ENTRY_BYTES), p)
    # each entry must be its digest's: the first 20 bytes of an entry are the digest
    if not _same_digests(e, np.frombuffer(joined, np.uint32).reshape(n, _WORDS)).all():
        return None
    return e.view(ENTRY)


__all__ = ["PlacedRows", "Placement", "entries_at", "place", "positions_in_one"]
