"""Writing payloads to the pack store: :class:`PackWriter`, its single writer.

Small payloads are gathered per dtype into blocks of about
:data:`BLOCK_TARGET` raw bytes, encoded by :func:`.codec.encode_block` and
handed to a :class:`.appender.PackAppender`, which places them in the
current pack file; a payload of :data:`.chunked.THRESHOLD` bytes or more gets
a chunked file of its own (:mod:`.chunked`). :meth:`PackWriter.flush` writes
and syncs what is queued, then commits the index entries naming it as one
new segment (:func:`.segment_plan.plan_commit`, :meth:`.packs.PackStore.commit_segments`):
bytes are on the disk before any entry points at them. What ``gc`` asks of the
writer (removing entries, relocating payloads, dropping packs) is in
:mod:`.writer_gc`; blocks a fetch verified are appended as they are by
:mod:`.writer_blocks`, bulk adds of rows are in :mod:`.writer_rows`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from filelock import FileLock, Timeout

from ..errors import IntegrityError, WriterLockError
from . import appender, chunked
from .appender import PackAppender
from .block_format import BLOCK_TARGET, HEADER_SIZE
from .chunked import LargeFiles
from .codec import encode_block, encode_parts
from .digest import DIGEST_SIZE, Payload
from .digest_run import Digests, joined_digests
from .gather import STREAM_WINDOW
from .index import (
    QUERY,
    IndexTables,
    Location,
    Run,
    connect_index,
    index_guard,
    init_index,
    kind_check,
)
from .placement import PlacedRows
from .segment_plan import plan_commit, runs_after
from .segment_probe import PROBE_MAX, KeptBlobs, close_kept, newest_small_runs, stored_locations
from .uncommitted import Uncommitted, digest_order, fresh_positions
from .writer_blocks import CheckedBlocks
from .writer_gc import PackMaintenance
from .writer_large import LargePayloads
from .writer_rows import StackedRows, rows_held

if TYPE_CHECKING:
    from .packs import PackStore

#: seconds a new store writer waits for another (fetch-data, gc) to finish
STORE_LOCK_TIMEOUT = 120.0
#: bulk adds whose places the writer keeps (:attr:`PackWriter.placed_rows`)
_PLACED_MAX = 4


class PackWriter(LargePayloads, StackedRows, CheckedBlocks, PackMaintenance, IndexTables):
    """The single writer of a store: appends blocks and index entries.

    Items are gathered per dtype into blocks of about :data:`BLOCK_TARGET`
    bytes; :meth:`flush` writes what is pending and commits the index, and is
    the point from which added payloads survive a killed process.
    """

    _kept: KeptBlobs | None = None  # the probe's handles on big segments (see _stored)

    def __init__(self, store: PackStore) -> None:
        self.store = store
        self._flock = FileLock(str(store.root / "write.lock"), thread_local=False)
        try:
            self._flock.acquire(timeout=STORE_LOCK_TIMEOUT)
        except Timeout:
            raise WriterLockError(
                f"the payload store {store.root} stayed locked for {STORE_LOCK_TIMEOUT:.0f} s "
                "by another process (a write checkout, fetch-data or gc); try again when "
                "it has finished"
            ) from None
        try:
            self._con = connect_index(store.index_path)
            with index_guard(store.index_path):
                init_index(self._con)
                self._init_tables()
                kinds = self._con.execute("SELECT id, kind, chk FROM kinds").fetchall()
                (top,) = self._con.execute("SELECT COALESCE(MAX(id), 0) FROM blocks").fetchone()
            self._next_block = top + 1
            self._app = PackAppender(store, self._drop)
        except BaseException:
            self._flock.release()
            raise
        self._kind_ids = {k: i for i, k, c in kinds if c is None or c == kind_check(i, k)}
        #: kinds whose rows fail their check (kind -> row id): not written to
        self._bad_kind_rows = {k: i for i, k, _ in kinds if k not in self._kind_ids}
        self._kind_top = max((i for i, _, _ in kinds), default=0)
        #: kind rows (id, kind, check) given out, committed with the next index commit
        self._new_kinds: list[tuple[int, str, int]] = []
        # digest -> Location of payloads written by this writer (or looked up)
        self.known: dict[bytes, Location] = {}
        self._pending: dict[str, list[Payload]] = {}  # dtype str -> items
        self._pending_bytes: dict[str, int] = {}
        self._pending_set: set[bytes] = set()
        self._typesize: dict[str, tuple[str, int]] = {}  # kind -> (dtype str, itemsize)
        self._new = Uncommitted()  # block rows and entries not yet committed
        self.closed = False
        # large payloads: files written, to be put in place and indexed by flush()
        self._large = LargeFiles(store.large_dir)
        self._large.clean_temporary()  # left by a killed writer
        self._large_pending: list[tuple[chunked.Pending, int, int]] = []
        self._probed = 0  # digests looked for by segment_probe.stored_locations
        #: the rows of the last bulk add queued whole: (digests joined, their
        #: key order, their sorted entries), until the next index commit
        self._rows_sorted: tuple[bytes, np.ndarray, np.ndarray] | None = None
        #: where index commits put the rows of bulk adds they committed alone,
        #: the last few whose segments no later commit merged or rewrote (entry
        #: hints of the commit that follows, see
        #: :func:`.records.entry_hints.keep_committed`)
        self.placed_rows: list[PlacedRows] = []

    def _kind_id(self, kind: str) -> int:
        """The id of ``kind`` in the index; a new one is given out here and its
        row committed with the entries naming it (see :meth:`_commit_index`):
        the writer holds the store's lock, no one else adds kinds meanwhile."""
        kid = self._kind_ids.get(kind)
        if kid is None:
            bad = self._bad_kind_rows.get(kind)
            if bad is not None:
                raise IntegrityError(f"kind row {bad} in {self.store.index_path} fails its check")
            self._kind_top = kid = self._kind_top + 1
            self._new_kinds.append((kid, kind, kind_check(kid, kind)))
            self._kind_ids[kind] = kid
        return kid

    def _dtype_of(self, kind: str) -> tuple[str, int]:
        t = self._typesize.get(kind)
        if t is None:
            dt = kind[: kind.rindex("|")]
            t = self._typesize[kind] = (dt, np.dtype(dt).itemsize)
        return t

    def add(self, p: Payload) -> None:
        """Queue a payload; a digest already stored or queued costs nothing.

        It survives a killed process once :meth:`flush` returns.

        Parameters
        ----------
        p : Payload
            Digest, kind header and bytes (trusted: see :func:`.base.check_payloads`).
        """
        d = p.digest
        if d in self.known or d in self._pending_set:
            return
        dt, typesize = self._typesize.get(p.kind) or self._dtype_of(p.kind)
        nbytes = len(p.data)
        if nbytes >= BLOCK_TARGET:
            if nbytes >= chunked.THRESHOLD:
                self._add_large(p)
                return
            self._seal([p], typesize)
            return
        items = self._pending.get(dt)
        if items is None:
            items = self._pending[dt] = []
        # kept until its block is sealed: a copy, not a view of an array the caller may refill
        items.append(p if type(p.data) is bytes else Payload(d, p.kind, bytes(p.data)))  # type: ignore[arg-type]
        self._pending_set.add(d)
        total = self._pending_bytes.get(dt, 0) + nbytes
        if total >= BLOCK_TARGET:
            del self._pending[dt]
            self._pending_bytes[dt] = 0
            self._seal(items, typesize)
        else:
            self._pending_bytes[dt] = total

    def add_stacked(
        self, kind: str, digests: Sequence[bytes], rows: np.ndarray, *, flush: bool = True
    ) -> None:
        """Store each row of ``rows`` (all of kind ``kind``) under its digest, and flush.

        The bulk form of :meth:`add` for many small payloads of one kind:
        duplicates and payloads already stored are skipped in vectorised
        passes, the new rows are cut into blocks of :data:`BLOCK_TARGET`
        bytes straight from the stacked buffer (no per-payload objects;
        blocks that do not compress are written from it), and their index
        entries are committed with everything else pending (the point from
        which they survive a killed process).

        Parameters
        ----------
        kind : str
            Kind header of every row (see :func:`~.digest.kind_of`).
        digests : sequence of bytes
            ``digests[i]`` is the digest of ``rows[i]``.
        rows : numpy.ndarray
            The stacked payloads, ``len(rows) == len(digests)``.
        flush : bool, optional
            False: queued, indexed by the next :meth:`flush`; ``rows`` must
            not change until then (blocks are written from them).
        """
        n = len(digests)
        if n != len(rows):
            raise ValueError(f"{n} digests for {len(rows)} rows")
        if not n:
            return
        size = rows.nbytes // n
        if size >= BLOCK_TARGET:  # a block each: the per-payload path costs nothing more
            view = np.ascontiguousarray(rows).reshape(-1).data.cast("B")
            for i, d in enumerate(digests):
                self.add(tuple.__new__(Payload, (d, kind, view[i * size : (i + 1) * size])))  # type: ignore[arg-type]
            if flush:
                self.flush()
            return
        joined = joined_digests(digests)  # (no copy of a stacked_digests)
        if len(joined) != DIGEST_SIZE * n:
            raise ValueError(f"digests of {DIGEST_SIZE} bytes expected")
        idx, order = self._fresh_rows(digests, joined)
        try:
            if idx is None or idx:
                flat = np.ascontiguousarray(rows).reshape(n, -1).view(np.uint8)
                new = digests
                if idx is not None and len(idx) < n:  # (all of them: no copy)
                    at = np.asarray(idx, np.intp)
                    flat = flat[at]
                    new = Digests(np.frombuffer(joined, f"V{DIGEST_SIZE}")[at].tobytes())
                    joined = new.joined
                typesize = self._dtype_of(kind)[1]
                self._write_rows(self._kind_id(kind), new, joined, flat, typesize, order)
            if flush:
                self.flush()
        except BaseException:
            # blocks still queued are written by a later flush: from copies, not
            # from rows the caller may refill once this call has failed
            self._app.own_queued()
            raise

    def _fresh_rows(
        self, digests: Sequence[bytes], joined: bytes
    ) -> tuple[list[int] | None, np.ndarray | None]:
        """The rows of a bulk add to write: one per distinct digest not stored
        yet (nor queued by an earlier bulk add), in input order (None: all of
        them); when all, also the order that sorts their digests (the index
        entries' order)."""
        known, pending = self.known, self._pending_set
        # digests this writer holds, when fewer than the rows, are looked for among them
        last = digests.last if isinstance(digests, Digests) else None  # (repeats known)
        few = last is None and len(known) + len(pending) <= len(digests)
        order = digest_order(joined) if few else None
        idx: list[int] | None = None
        if order is not None and (known or pending):
            held = rows_held(joined, order, [*known, *pending])
            if len(held):  # (all distinct: the others, in input order)
                mask = np.ones(len(digests), bool)
                mask[held] = False
                idx, order = np.flatnonzero(mask).tolist(), None
        elif order is None:  # repeated digests, or many written by this writer already
            idx = fresh_positions(joined, digests, known, pending, last)
        if self._new.whole:  # rows an earlier bulk add queued are not written again
            if idx is None:  # (all distinct, in ``order``)
                queued = self._new.held(joined, order)
                if queued is not None and queued.any():
                    idx, order = np.flatnonzero(~queued).tolist(), None
            elif idx:
                queued = self._new.held(np.frombuffer(joined, f"V{DIGEST_SIZE}")[idx].tobytes())
                if queued is not None and queued.any():
                    idx = [i for i, q in zip(idx, queued.tolist(), strict=True) if not q]
        if idx is not None:
            if not idx:
                return idx, None
            joined = np.frombuffer(joined, f"V{DIGEST_SIZE}")[idx].tobytes()
        if not self._segs.loaded:
            self._segs.load(self._con, self.store.index_path)
        keys = None  # with the order known, the digests' keys sorted: the lookup sorts none
        if order is not None:
            keys = np.frombuffer(joined, QUERY)["key"].astype(np.uint64)[order]
        found, _ = self._segs.lookup(joined, keys)
        if found.any():
            keep = np.flatnonzero(~found).tolist()
            return (keep if idx is None else [idx[i] for i in keep]), None
        return idx, order

    def _write_rows(
        self,
        kid: int,
        digests: Sequence[bytes],
        joined: bytes,
        flat: np.ndarray,
        typesize: int,
        order: np.ndarray | None,
    ) -> None:
        """Write the rows of ``flat`` (uint8, one payload per row, of kind ``kid``)
        in blocks and queue their index entries (committed by the next
        :meth:`flush`); ``joined`` is ``digests`` joined, ``order`` the order
        that sorts them if known."""
        n, size = flat.shape
        per = max(1, -(-BLOCK_TARGET // size))  # rows per block: as many as add() gathers
        raw = np.ascontiguousarray(flat).reshape(-1).data.cast("B")
        bids = np.empty(n, np.uint32)
        # rows that do not compress are written from where they are (see add_stacked)
        window = per * max(1, STREAM_WINDOW // (per * size))  # rows a window
        w0 = owned = 0  # owned: bytes of the writer's own buffers written, not yet synced
        while w0 < n:
            self._app.make_room(self._kind_ids)  # a pack passes PACK_LIMIT by a block at most
            room = (appender.PACK_LIMIT - self._app.end) // (per * size + HEADER_SIZE) * per
            w1 = min(n, w0 + max(per, min(window, room)))
            parts, lengths = encode_parts(raw[w0 * size : w1 * size], size * per, typesize)
            at = self._app.queue_parts(parts)
            self._name_blocks(kid, size, per, joined, self._app.pack, at, lengths, w0, bids)
            for blen, start in zip(lengths, range(w0, w1, per), strict=True):
                stop = min(w1, start + per)
                owned += HEADER_SIZE if blen == HEADER_SIZE + (stop - start) * size else blen
            if self._app.queued_bytes >= STREAM_WINDOW:
                self._app.write_out()  # the disk starts on it while the next window is encoded
                if owned >= STREAM_WINDOW:  # bounds the encoded bytes held until a sync
                    self._app.sync()
                    owned = 0
            w0 = w1
        self._queue_entries(kid, size, per, joined, bids, order)

    def _have(self, digest: bytes) -> bool:
        """True when payload ``digest`` is stored, queued or written already."""
        if digest in self.known or digest in self._pending_set:
            return True
        stored = self._stored([digest])
        self.known.update(stored)
        return bool(stored)

    def has_pending(self, digest: bytes | None = None) -> bool:
        """True when payloads (or the one of ``digest``) are queued or written
        but not yet indexed."""
        if digest is None:
            return bool(self._pending_set or self._new)
        return (
            digest in self._pending_set
            or (bool(self._new.digests) and digest in self.known)
            or self._queued_whole(digest)
        )

    def _queued_whole(self, digest: bytes) -> bool:
        """True when a bulk add queued payload ``digest`` (not yet indexed)."""
        held = self._new.held(digest) if len(digest) == DIGEST_SIZE else None
        return held is not None and bool(held[0])

    def _stored(self, digests: list[bytes]) -> dict[bytes, Location]:
        """Locations of those of ``digests`` already in the committed index."""
        if not self._segs.loaded:
            path = self.store.index_path
            self._probed += len(digests)  # past PROBE_MAX in all, one load costs less
            if self._probed <= PROBE_MAX:  # the index stays unread, unless a find fails its check
                self._kept = self._kept or KeptBlobs(path)
                got = stored_locations(self, self._con, digests, self._kept)
                if got is not None:
                    return got
            close_kept(self._kept)
            self._segs.load(self._con, path)
        found, e = self._segs.lookup(digests)
        if not found.any():
            return {}
        return self._locations(digests, found, e)

    def _seal(self, items: list[Payload], typesize: int) -> None:
        """Compress ``items`` into one block queued for writing."""
        known = self.known
        for p in items:
            self._pending_set.discard(p.digest)
        fresh = [p for p in items if p.digest not in known]
        if not fresh:
            return
        stored = self._stored([p.digest for p in fresh])
        if stored:
            known.update(stored)
            fresh = [p for p in fresh if p.digest not in stored]
            if not fresh:
                return
        queued = self._new.held(b"".join([p.digest for p in fresh])) if self._new.whole else None
        if queued is not None and queued.any():  # by a bulk add
            fresh = [p for p, q in zip(fresh, queued.tolist(), strict=True) if not q]
            if not fresh:
                return
        if len(fresh) > 1:  # the same payload twice in one block
            fresh = list({p.digest: p for p in fresh}.values())
        raw = b"".join([p.data for p in fresh]) if len(fresh) > 1 else fresh[0].data
        nthreads = 2 if len(raw) >= 4 * 1024 * 1024 else 1
        block = encode_block(raw, typesize, nthreads)
        self._app.make_room(self._kind_ids)
        self._queue_block(block, fresh)

    def _queue_block(self, block: bytes, items: Sequence[Payload]) -> dict[bytes, Location]:
        """Queue ``block`` (holding ``items`` in order) and its index entries."""
        pack = self._app.pack
        boff = self._app.queue(block)
        blen = len(block)
        bid = self._next_block
        self._next_block += 1
        self._new.add_block(bid, pack, boff, blen)
        ioff = 0
        kinds = self._kind_ids
        done: dict[bytes, Location] = {}
        make = tuple.__new__  # Location(...) without its Python-level __new__
        for p in items:
            n = len(p.data)
            kid = kinds.get(p.kind)
            if kid is None:
                kid = self._kind_id(p.kind)
            done[p.digest] = make(Location, (pack, boff, blen, ioff, n, kid))
            ioff += n
        locs = done.values()
        self._new.add(list(done), bid, [loc[3] for loc in locs], [loc[5] for loc in locs])
        self.known.update(done)
        self._app.manifest.add_items(boff, blen, done)
        return done

    def _drop(self) -> None:
        """Forget everything not yet indexed (the pack could not be put back
        to a known length after a failed write): the calls that queued it
        failed, so nothing acknowledged is lost. Later blocks go after the
        pack's real end."""
        for d in self._new.digests:
            self.known.pop(d, None)
        for p, _, _ in self._large_pending:
            self.known.pop(p.digest, None)
        self._large.discard([p for p, _, _ in self._large_pending])
        self._large_pending.clear()
        self._new.clear()
        self._rows_sorted = None
        self._pending.clear()
        self._pending_bytes.clear()
        self._pending_set.clear()
        self._app.forget()

    def flush(self) -> None:
        """Write all queued payloads, sync them and commit their index entries.

        Raises
        ------
        OSError
            A full disk (``ENOSPC``), an I/O error (``EIO``) ...: nothing of
            this flush is indexed, what was queued stays queued (a later
            flush, once space returns, writes it) and the writer stays usable.
        """
        if self._large_pending:
            self._place_large()
        for items in list(self._pending.values()):
            if items:
                self._seal(items, self._dtype_of(items[0].kind)[1])
        self._pending.clear()
        self._pending_bytes.clear()
        self._app.manifest.seal(self._app.pack, self._kind_ids)
        self._app.write_out()
        self._app.sync()  # the bytes are on the disk before the entries naming them
        if self._new:
            self._commit_index(drop=())

    def _commit_index(self, drop: Iterable[bytes]) -> None:
        """Commit the queued block rows and entries as a new segment (merging small
        ones into it), in one transaction that also removes those of ``drop``."""
        new = self._new.entries()
        rows, self._rows_sorted = self._rows_sorted, None
        runs: list[Run] | None = self._segs.runs
        if not self._segs.loaded and not drop:  # only the segments it merges
            runs = newest_small_runs(self._con, self.store.index_path, runs or [], len(new))
        if runs is None or (drop and not self._segs.loaded):
            self._segs.load(self._con, self.store.index_path)
            runs = self._segs.runs
        plan = plan_commit(runs, new, drop)
        con = self._con
        rewritten, new_sid = self.store.commit_segments(
            con, self._new.block_rows, plan, self._new_kinds
        )
        self._new.clear()
        self._new_kinds = []
        gone = set(plan.merged) | set(plan.replaced)  # segments whose places changed
        placed = [p for p in self.placed_rows if p.sid not in gone]
        if rows is not None and rows[2] is new and new_sid is not None:  # those rows alone
            placed.append(PlacedRows(rows[0], rows[1], plan.new_at, new_sid, len(plan.new)))
        self.placed_rows = placed[-_PLACED_MAX:]
        # the writer holds the store lock: its view of the segments stays exact
        self._segs.runs = runs_after(plan, rewritten, new_sid)
        self._segs.seen = sorted([r.sid for r in self._segs.runs] + list(self._segs.damaged))
        if plan.merged or plan.replaced:
            with index_guard(self.store.index_path):
                con.execute("PRAGMA incremental_vacuum")

    def pending_location(self, digest: bytes) -> Location | None:
        """Location of a payload this writer wrote or looked up, flushing
        first if it is queued or not yet indexed.

        Returns
        -------
        Location or None
            None when this writer does not know the payload.
        """
        if digest in self._pending_set or self._queued_whole(digest):
            self.flush()  # (a bulk add's payloads are found in the index then)
        loc = self.known.get(digest)
        if loc is not None and self._new.digests:
            self.flush()
        return loc

    def close(self) -> None:
        """Flush, then close the pack, the index and release the store's lock."""
        if self.closed:
            return
        try:
            self.flush()
            close_kept(self._kept)  # its open snapshot would hold the checkpoint back
            # readers that cannot write (``immutable=1``, see durable.py) read the
            # main file only: put what the WAL holds into it
            try:
                self._con.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # best effort: the WAL stays, readers that can write read it
        finally:
            self.closed = True
            close_kept(self._kept)
            self._app.close()
            self._con.close()
            self._flock.release()
