"""A bulk add's rows hashed while their blocks are written: :class:`StackedRows`.

A mixin of :class:`.writer.PackWriter`. :meth:`StackedRows.add_hashing` is
:func:`.digest.stacked_digests` then :meth:`.writer.PackWriter.add_stacked`
with the two overlapped: blake2b holds the GIL for rows under 2 KiB, the
kernel's copy of the blocks into the pack (one ``writev`` per 1,024 parts)
does not. So the blocks are encoded first (their bytes do not depend on the
digests), written on a second thread while this one hashes the rows, and
named by their digests (block rows, manifest records, index entries) once
those are known. Durability is that of :meth:`~.writer.PackWriter.add_stacked`:
the blocks are synced by the flush before any entry naming them is committed.

The blocks are written before it is known whether their rows are new. That
is done only when the rows of the first block, and a few from the middle and
the end, are (so adding stored rows again writes nothing twice); when some
rows turn out to be stored or repeated after all, the blocks stay as written
and only the new rows get entries (the others' bytes are dead space that
``gc`` reclaims).
Also here: naming the blocks of a bulk add and queueing its entries, shared
with :meth:`.writer.PackWriter.add_stacked`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np

from . import appender, threads
from .block_format import BLOCK_TARGET, HEADER_SIZE
from .codec import encode_parts
from .digest import DIGEST_SIZE, stacked_digests
from .digest_run import Digests
from .gather import STREAM_WINDOW
from .index import ENTRY, QUERY
from .uncommitted import Uncommitted

if TYPE_CHECKING:
    from .appender import PackAppender
    from .index import Location

#: bulk adds of this many bytes or more are hashed while they are written (a
#: second thread costs more than it saves on fewer)
OVERLAP_MIN = 1 << 20
#: ... and of this many at most (their encoded blocks are held until the flush's sync)
OVERLAP_MAX = 2 * STREAM_WINDOW
#: rows from the middle and from the end of a bulk add looked up before its
#: blocks are written ahead (with those of its first block)
PROBE_ROWS = 64


class StackedRows:
    """Bulk adds of the store's writer (a mixin of :class:`.writer.PackWriter`)."""

    known: dict[bytes, Location]
    _app: PackAppender
    _new: Uncommitted
    _next_block: int
    _kind_ids: dict[str, int]
    _rows_sorted: tuple[bytes, np.ndarray, np.ndarray] | None

    if TYPE_CHECKING:  # the writer's own, used here

        def add_stacked(
            self, kind: str, digests: Sequence[bytes], rows: np.ndarray, *, flush: bool = True
        ) -> None: ...

        def flush(self) -> None: ...

        def _kind_id(self, kind: str) -> int: ...

        def _dtype_of(self, kind: str) -> tuple[str, int]: ...

        def _fresh_rows(
            self, digests: Sequence[bytes], joined: bytes
        ) -> tuple[list[int] | None, np.ndarray | None]: ...

    def add_hashing(self, kind: str, rows: np.ndarray, *, flush: bool = True) -> Digests:
        """Store each row of ``rows`` (all of kind ``kind``) under its digest,
        computed here; returns the digests.

        :func:`.digest.stacked_digests` then :meth:`add_stacked`, the blocks
        written while the rows are hashed (see the module notes). Adds of
        fewer than :data:`OVERLAP_MIN` or more than :data:`OVERLAP_MAX` bytes,
        of rows of a block or more, on one core, or whose blocks would not fit
        in the current pack, are the two calls one after the other.

        Parameters
        ----------
        kind : str
            Kind header of every row (see :func:`~.digest.kind_of`).
        rows : numpy.ndarray
            The stacked payloads, C-contiguous, at least one.
        flush : bool, optional
            As for :meth:`add_stacked`: False leaves the entries to the next
            :meth:`flush`, and ``rows`` must not change until then.

        Returns
        -------
        Digests
            ``digests[i]`` is the digest of ``rows[i]``.

        Raises
        ------
        OSError
            A failed write (a full disk ...): nothing of this add is indexed
            or left queued.
        """
        n = len(rows)
        total = rows.nbytes
        size = total // n if n else 0
        if not (
            0 < size < BLOCK_TARGET
            and OVERLAP_MIN <= total <= OVERLAP_MAX
            and threads.WORKERS > 1
            and rows.flags.c_contiguous
        ):
            return self._hash_then_add(kind, rows, None, flush)
        per = -(-BLOCK_TARGET // size)  # rows per block, as add_stacked cuts them
        head, new = self._probe(rows, per)
        if not new:
            return self._hash_then_add(kind, rows, head, flush)
        self._app.make_room(self._kind_ids)
        nblocks = -(-n // per)
        if self._app.end + total + nblocks * HEADER_SIZE > appender.PACK_LIMIT:
            return self._hash_then_add(kind, rows, head, flush)
        kid, typesize = self._kind_id(kind), self._dtype_of(kind)[1]
        raw = rows.reshape(-1).view(np.uint8).data
        parts, lengths = encode_parts(raw, size * per, typesize)
        pack = self._app.pack
        at = self._app.queue_parts(parts)
        job = threads.writer().submit(self._app.write_out)
        try:
            rest = stacked_digests(rows[per:])
        finally:
            failed, interrupted = _outcome(job)  # the appender waits for the write
            if failed is not None:
                self._app.drop_last(parts)
            if interrupted is not None:
                raise interrupted
            if failed is not None:
                raise failed
        digests = Digests(head.joined + rest.joined)
        try:
            self._name_written(kid, size, per, digests, (pack, at, lengths))
            if flush:
                self.flush()
        except BaseException:
            self._app.own_queued()  # as add_stacked: no view of the caller's rows kept
            raise
        return digests

    def _name_written(
        self,
        kid: int,
        size: int,
        per: int,
        digests: Digests,
        where: tuple[int, int, Sequence[int]],
    ) -> None:
        """Block rows, manifest records and entries of the rows of ``digests``
        written ahead in blocks of ``per`` (``where``: pack, offset and block
        lengths); only the new rows get entries."""
        n = len(digests)
        idx, order = self._fresh_rows(digests, digests.joined)
        keep = None
        if idx is not None:  # rows stored or repeated after all: entries for the new ones
            keep = np.zeros(n, bool)
            keep[idx] = True
        bids = np.empty(n, np.uint32)
        pack, at, lengths = where
        self._name_blocks(kid, size, per, digests.joined, pack, at, lengths, 0, bids, keep)
        self._queue_entries(kid, size, per, digests.joined, bids, order, keep)

    def _probe(self, rows: np.ndarray, per: int) -> tuple[Digests, bool]:
        """The digests of the first ``per`` rows, and whether they and
        :data:`PROBE_ROWS` rows from the middle and the end (hashed here, and
        again later) are all new: neither stored, nor written by this writer,
        nor repeated."""
        n, k = len(rows), min(per, PROBE_ROWS)
        head = probe = stacked_digests(rows[:per])
        if n >= per + 2 * k:
            more = stacked_digests(rows[n // 2 : n // 2 + k]).joined
            probe = Digests(head.joined + more + stacked_digests(rows[n - k :]).joined)
        idx = self._fresh_rows(probe, probe.joined)[0]
        return head, idx is None or len(idx) == len(probe)

    def _hash_then_add(
        self, kind: str, rows: np.ndarray, head: Digests | None, flush: bool
    ) -> Digests:
        """:meth:`add_hashing` without the overlap (``head``: the digests of the
        first rows, computed already)."""
        if head is None:
            digests = stacked_digests(rows)
        else:
            digests = Digests(head.joined + stacked_digests(rows[len(head) :]).joined)
        self.add_stacked(kind, digests, rows, flush=flush)
        return digests

    def _name_blocks(
        self,
        kid: int,
        size: int,
        per: int,
        joined: bytes,
        pack: int,
        at: int,
        lengths: Sequence[int],
        first: int,
        bids: np.ndarray,
        keep: np.ndarray | None = None,
    ) -> None:
        """Block rows and manifest records of the blocks of ``lengths`` bytes
        queued at offset ``at`` of ``pack``, holding ``per`` rows each of
        ``size`` bytes from row ``first`` on (``joined``: the digests of all
        rows); ``bids[row]`` gets each row's block. With ``keep``, a block
        none of whose rows it marks gets no block row (no entry will name
        it); the manifest names every row of every block all the same, so a
        rebuilt index accounts for every byte (a row stored twice is found
        twice there, and indexed once)."""
        n = len(bids)
        manifest = self._app.manifest
        for blen, start in zip(lengths, range(first, first + per * len(lengths), per), strict=True):
            stop = min(n, start + per)
            manifest.add_rows(at, blen, kid, size, joined, slice(start, stop))
            if keep is None or keep[start:stop].any():
                bid = self._next_block
                self._next_block += 1
                self._new.add_block(bid, pack, at, blen)
                bids[start:stop] = bid
            at += blen

    def _queue_entries(
        self,
        kid: int,
        size: int,
        per: int,
        joined: bytes,
        bids: np.ndarray,
        order: np.ndarray | None,
        keep: np.ndarray | None = None,
    ) -> None:
        """Queue the index entries of a bulk add's rows (in blocks ``bids``,
        ``per`` a block; ``order`` sorts their digests, if known; ``keep``:
        only the rows it marks)."""
        n = len(bids)
        e = np.empty(n, ENTRY)
        q = np.frombuffer(joined, QUERY)
        e["key"] = q["key"]
        e["tail"] = q["tail"]
        e["block"] = bids
        e["ioff"] = (np.arange(n, dtype=np.uint32) % per) * size
        e["kind"] = kid
        if keep is not None:
            self._new.add_entries(e[keep])
        elif order is None:
            self._new.add_entries(e)
        else:
            ordered = np.take(e, order)
            self._new.add_sorted_entries(ordered)
            self._rows_sorted = (joined, order, ordered)


def rows_held(joined: bytes, order: np.ndarray, held: Sequence[bytes]) -> np.ndarray:
    """Positions (ascending) of the rows of ``joined`` (distinct 20-byte digests,
    joined; ``order`` sorts them as :func:`.uncommitted.digest_order` does)
    whose digest is one of ``held``: a search of the sorted digests per digest
    of ``held``, no Python object per row (a writer's own few payloads before
    a bulk add of many).

    Parameters
    ----------
    joined : bytes
    order : numpy.ndarray
    held : sequence of bytes

    Returns
    -------
    numpy.ndarray
        intp positions.
    """
    cands = b"".join(d for d in held if len(d) == DIGEST_SIZE)
    if not cands or not len(order):
        return np.zeros(0, np.intp)
    sk = np.frombuffer(joined, QUERY)["key"].astype(np.uint64)[order]
    ck = np.frombuffer(cands, QUERY)["key"].astype(np.uint64)
    lo = np.searchsorted(sk, ck, "left")
    hi = np.searchsorted(sk, ck, "right")
    d = DIGEST_SIZE
    out = [
        r
        for j in np.flatnonzero(hi > lo).tolist()  # a candidate's key among the rows' (rare)
        for r in order[lo[j] : hi[j]].tolist()
        if joined[r * d : r * d + d] == cands[j * d : j * d + d]
    ]
    return np.array(sorted(out), np.intp)


def _outcome(job: Future[None]) -> tuple[BaseException | None, BaseException | None]:
    """What ``job`` raised (None: it ended well), once it has ended, and what
    interrupted the wait for it (KeyboardInterrupt: the job went on)."""
    interrupted: BaseException | None = None
    while True:
        try:
            return job.exception(), interrupted
        except BaseException as exc:
            interrupted = exc


__all__ = ["OVERLAP_MAX", "OVERLAP_MIN", "PROBE_ROWS", "StackedRows", "rows_held"]
