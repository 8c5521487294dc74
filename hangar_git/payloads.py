"""Payload access of a checkout: digests resolved to where they are stored, and arrays read.

:class:`PayloadAccess` turns a checkout's sample records (digests) into
arrays: it resolves digests through the payload index a fan-out leaf (or a
whole arrayset) at a time, reads single samples, regions of large ones and
batches, and reports damage or absence with the error that says what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import IntegrityError, MissingPayloadError
from .gitutil import has_remote_source
from .naming import decode_key
from .records import entry_hints, validate
from .records.key_cache import KeyTable
from .records.view import CommitView
from .row_tables import DenseRows, int_keyed
from .schema import ArraysetSchema
from .store import Location, PackReader, PackWriter
from .store.chunk_format import is_large_entry
from .store.chunked import LARGE_IOFF
from .store.digest import DIGEST_SIZE
from .store.hugepages import empty_huge
from .store.limits import payload_bound


def _damaged(aset: str, enc: str, digest: bytes, why: object) -> IntegrityError:
    key = int(enc[2:]) if enc.startswith("i:") else enc[2:]
    return IntegrityError(
        f"sample {aset}[{key!r}] (payload {digest.hex()}) is damaged: {why}; run `git hangar fsck`"
    )


#: after this many fan-out leaves (or a quarter of them, if more) resolved one
#: at a time, an arrayset's reads are taken to be spread out and all its
#: digests are resolved at once
_SPREAD_LEAVES = 16
#: arraysets of up to this many samples are resolved whole once reads have
#: touched a quarter of their leaves (about 20 ms per 100k samples); larger
#: ones leaf by leaf, so scattered reads do not load every key
_RESOLVE_ALL_MAX = 262_144
#: single reads of an arrayset between two looks at how spread its reads are
_SPREAD_CHECK = 16
#: reads of an arrayset whose records are cached on this machine (see
#: :mod:`.records.key_cache`), each in a leaf of its own, before the first
#: look: key-by-key loops build the table at their third read
_CACHED_SPREAD = 3
#: an arrayset whose records are cached on this machine, of at most
#: FIRST_ROWS_COUNT samples whose decoded payloads take at most
#: FIRST_ROWS_BYTES, has its row table built at its first single read (see
#: :meth:`PayloadAccess.first_rows`), not after :data:`_CACHED_SPREAD` reads
#: that each parse a fan-out leaf, search the index and read a block: its
#: table then costs about as much as a single read in a fresh process. The
#: table's cost grows with both (benchmarks/bench_first_reads.py: 5,000
#: MNIST images, 3.9 MB, built at the first read take 10,000 random reads
#: from 13.0 to 11.8 ms but one read from 2.7 to 5.3 ms; 60,000, 47 MB:
#: 28 -> 26.5 ms, and 4.9 -> 13.9 ms)
FIRST_ROWS_COUNT = 16384
FIRST_ROWS_BYTES = 1024**2
#: decoded bytes of small payloads a read checkout keeps in its row tables
#: (see :meth:`PayloadAccess.row_table`), all its arraysets together
ROWS_BYTES = 128 * 1024**2


class PayloadAccess:
    """Resolves digests to locations (a leaf at a time) and reads arrays.

    A read that fails its checksum raises :class:`IntegrityError` naming the
    sample and the file, never wrong bytes. Before calling it damage, the
    payload is located afresh: ``gc`` may have moved it to a new pack (pack
    numbers are never reused), so a stale location is retried, not reported.
    """

    def __init__(self, view: CommitView, reader: PackReader, writer: PackWriter | None) -> None:
        self.view = view
        self.reader = reader
        self.writer = writer
        self.locs: dict[bytes, Location] = {}
        #: digest -> index entry (block, item offset, kind): the fast path of reads
        self._ents: dict[bytes, tuple[int, int, int]] = {}
        self._leaf_misses: dict[str, int] = {}  # arrayset -> leaves until resolving all
        #: arrayset -> {encoded key: its array, decoded}: every sample of an
        #: arrayset of a read checkout, once its reads are spread over it
        #: (see :meth:`row_table`); the arrays are never handed out, only copies
        self.rows: dict[str, Mapping[str, np.ndarray]] = {}
        #: arrayset -> {int key: its array} of the int keys of its row table
        #: (the stacked array, indexed by key, when its keys are ``0 .. n-1``):
        #: the key-by-key hot path (ints hash to themselves; no key to format)
        self.int_rows: dict[str, dict[int, np.ndarray] | np.ndarray] = {}
        self._rows_tried: set[str] = set()
        self._reads_left: dict[str, int] = {}  # arrayset -> reads until _spread is asked
        self._rows_bytes = 0
        #: called with absent digests, and the most raw bytes any of them may
        #: hold, to fetch them (a checkout opened with fetch_missing)
        self.fetcher: Callable[[Collection[bytes], int | None], None] | None = None

    def _resolve(self, aset: str, enc: str, digest: bytes) -> Location:
        loc = self.locs.get(digest)
        if loc is not None:
            return loc
        if self.writer is not None:
            loc = self.writer.pending_location(digest)
            if loc is not None:
                return loc
        leaf = self.view.leaf_of(aset, enc)
        want = [d for d in leaf.values() if d not in self.locs]
        want.append(digest)
        try:
            self.locs.update(self.reader.locate_many(want))
        except IntegrityError:  # a damaged index page: look this one up alone
            try:
                found = self.reader.locate(digest)
            except IntegrityError as exc:
                raise _damaged(aset, enc, digest, exc) from None
            if found is not None:
                self.locs[digest] = found
        loc = self.locs.get(digest)
        if loc is None and digest in self.reader.bad_rows:
            # gc may have moved it since this reader loaded the index: look again
            del self.reader.bad_rows[digest]
            self.reader.refresh()
            loc = self.reader.locate(digest)
            if loc is not None:
                self.locs[digest] = loc
        if loc is None and self.fetcher is not None:
            self.fetcher([digest], self._bound(aset))
            self.locs.update(self.reader.locate_many([digest]))
            loc = self.locs.get(digest)
        if loc is None:
            self._absent(aset, enc, digest)
            raise MissingPayloadError(
                f"sample {aset}[{decode_key(enc)!r}] is a remote reference: its payload is not on "
                f"this machine; fetch it with `git hangar fetch-data REMOTE COMMIT -d {aset}` "
                "(Repository.remote.fetch_data), or read through a checkout opened with "
                "fetch_missing=True"
            )
        return loc

    def _absent(self, aset: str, enc: str, digest: bytes) -> None:
        """Raise IntegrityError when an absent payload cannot be a remote reference."""
        why = self.reader.bad_rows.get(digest)
        if why is None and not has_remote_source(self.view.base.repo):
            why = (
                f"it is missing from {self.reader.store.index_path} and the repository "
                "has no remote it could come from"
            )
        if why is not None:
            raise _damaged(aset, enc, digest, why)

    def read(self, aset: str, enc: str, digest: bytes) -> np.ndarray:
        """The array of sample ``enc`` (payload ``digest``), of a kind its
        arrayset's schema allows (else CorruptRecordError)."""
        table = self.rows.get(aset)
        if table is not None:
            got = table.get(enc)
            if got is not None:
                return got.copy()
        elif self.writer is None and aset not in self._rows_tried:
            n = self._reads_left.get(aset, _CACHED_SPREAD) - 1
            self._reads_left[aset] = n or _SPREAD_CHECK
            if not n and self._spread(aset) and self.row_table(aset) is not None:
                return self.read(aset, enc, digest)
        return self.view.check_payload(aset, enc, self._read(aset, enc, digest))

    def first_rows(self, aset: str) -> dict[int, np.ndarray] | np.ndarray | None:
        """The int-keyed row table of ``aset`` (as :attr:`int_rows` holds it),
        built now, at the first single read of a read checkout's arrayset,
        when its records are cached on this machine and its samples are few
        and small (see :data:`FIRST_ROWS_BYTES`); else None (asked once per arrayset:
        reads then go as :meth:`read` decides), and the read looks its key
        up in the records."""
        if self.writer is not None or aset in self._reads_left or aset in self._rows_tried:
            return None
        self._reads_left[aset] = _CACHED_SPREAD  # (what read counts down from)
        base = self.view.base_samples(aset)
        if base is None:
            return None
        count = base.known_count()
        if count is None or count > FIRST_ROWS_COUNT:
            return None
        schema = self.view.schema(aset)
        row = schema.dtype.itemsize * int(np.prod(schema.shape, dtype=np.int64))
        if count * row > FIRST_ROWS_BYTES or not base.has_cached_table():
            return None
        if self.row_table(aset) is None:
            return None
        return self.int_rows.get(aset)

    def _spread(self, aset: str) -> bool:
        """True when the reads of ``aset`` have parsed a quarter of its leaves
        (at least :data:`_SPREAD_LEAVES`), or all of them, or (its records
        cached here) :data:`_CACHED_SPREAD` of them."""
        base = self.view.base_samples(aset)
        if base is None:
            return False
        parsed, total = base.leaves_parsed(), len(base.leaf_paths())
        if parsed >= total or parsed >= max(_SPREAD_LEAVES, total // 4):
            return True
        # with its records cached on this machine, a table costs little more
        # than reading the payloads: worth it once reads go from leaf to leaf
        return parsed >= _CACHED_SPREAD and base.has_cached_table()

    def _read(self, aset: str, enc: str, digest: bytes) -> np.ndarray:
        ent = self._ents.get(digest)
        if ent is None:
            ent = self._resolve_entry(aset, enc, digest)
            table = self.rows.get(aset)
            if table is not None and enc in table:  # built by that resolution
                return table[enc].copy()
        if ent is not None:
            try:
                return self.reader.read_entry(*ent)
            except IntegrityError:
                self._ents.pop(digest, None)  # the careful path re-locates and reports
        return self._read_located(aset, enc, digest)

    def _bound(self, aset: str) -> int | None:
        """The most raw bytes a payload of arrayset ``aset`` may hold (what a
        fetch of one may download), None when its schema cannot say."""
        try:
            schema = self.view.schema(aset)
        except (KeyError, ValueError):
            return None
        return payload_bound(schema.dtype.itemsize, schema.shape)

    def read_region(self, aset: str, enc: str, digest: bytes, index: Any) -> object:
        """``array[index]`` of one sample, as a fresh array (or a scalar): of a
        large payload only the chunks ``index`` touches are read.

        In records not built on this machine, a large payload's kind (dtype
        and shape, as its index entry states it) is checked against the
        schema before a chunk is read; the whole-read fallback checks what it
        reads as :meth:`read` does.
        """
        table = self.rows.get(aset)
        if table is not None and enc in table:  # a small payload, decoded
            arr = table[enc][index]
            return arr.copy() if isinstance(arr, np.ndarray) else arr
        ent = self._ents.get(digest)
        if ent is None:
            ent = self._resolve_entry(aset, enc, digest)
        if ent is not None and is_large_entry(ent[1]):
            if not self.view.base.payloads_trusted:
                dtype, shape = self.reader.kind(ent[2])
                validate.check_kind(self.view.schema(aset), dtype, shape, aset, enc)
            try:
                return self.reader.read_large_region(ent[0], ent[2], index)
            except IntegrityError:
                self._ents.pop(digest, None)  # the whole read below reports it
        arr = self.read(aset, enc, digest)[index]
        return arr.copy() if isinstance(arr, np.ndarray) else arr

    def _resolve_entry(self, aset: str, enc: str, digest: bytes) -> tuple[int, int, int] | None:
        """Index entry ``(block, offset, kind)`` of ``digest``, resolving its whole
        fan-out leaf in one vectorised lookup; None leaves it to :meth:`_resolve`."""
        writer = self.writer
        if writer is not None and writer.has_pending(digest):
            writer.flush()
        n = self._leaf_misses.get(aset)
        if n is None:  # count down from a quarter of the arrayset's leaves
            base = self.view.base_samples(aset)
            n = max(_SPREAD_LEAVES, len(base.leaf_paths()) // 4 if base is not None else 0)
            if base is not None and base.estimate_count() > _RESOLVE_ALL_MAX:
                n = -1  # never: a few reads would hold every key in memory
        self._leaf_misses[aset] = n = n - 1
        if n == 0 and self.row_table(aset) is not None:
            return None  # the caller reads the sample from the table
        if n == 0:  # reads spread over many leaves: resolve them all at once
            pool = dict.fromkeys(self.view.digests(aset, keep_leaves=True))
        else:
            pool = dict.fromkeys(self.view.leaf_of(aset, enc).values())
        ents = self._ents
        want = [d for d in pool if d not in ents]
        want.append(digest)
        try:
            found, e = self.reader.lookup(want)
        except IntegrityError:
            return None
        self._keep(want, found, e)
        return ents.get(digest)

    def prepare_reads(self, aset: str) -> None:
        """Resolve the index entries of every sample of ``aset`` at once, before
        a read loop (``with aset:``); arraysets of more than
        :data:`_RESOLVE_ALL_MAX` samples keep resolving a leaf at a time."""
        base = self.view.base_samples(aset)
        if base is None or self._leaf_misses.get(aset) == -1:
            return
        if base.estimate_count() > _RESOLVE_ALL_MAX:
            return
        self._leaf_misses[aset] = -1  # resolved whole: never again
        if self.row_table(aset) is not None:
            return
        ents = self._ents
        want = [d for d in dict.fromkeys(base.flat().values()) if d not in ents]
        if not want:
            return
        try:
            found, e = self.reader.lookup(want)
        except IntegrityError:
            return  # the careful one-at-a-time path reports it
        self._keep(want, found, e)

    def row_table(self, aset: str) -> Mapping[str, np.ndarray] | None:
        """``{encoded key: array}`` of every sample of ``aset``, decoded once,
        in a read checkout: what key-by-key reads spread over an arrayset copy
        their arrays from (built on the first call, when reads have spread
        over the arrayset or a ``with aset:`` block begins).

        None, and key-by-key reads keep resolving entries and reading blocks,
        in a write checkout (its records change), and when the arrayset's
        payloads would take more than what is left of :data:`ROWS_BYTES`, are
        large, absent, damaged (the careful path reports which) or of a kind
        its schema refuses (reported on the sample read). The blocks are read
        with their checksums verified, as every read does; the arrays of the
        table are never handed out, only copies of them.
        """
        table = self.rows.get(aset)
        if table is not None or self.writer is not None or aset in self._rows_tried:
            return table
        self._rows_tried.add(aset)
        base = self.view.base_samples(aset)
        if base is None:
            return None
        schema = self.view.schema(aset)
        row = schema.dtype.itemsize * int(np.prod(schema.shape, dtype=np.int64))
        left = ROWS_BYTES - self._rows_bytes
        count = base.estimate_count()
        if count > _RESOLVE_ALL_MAX or count * row > left:
            return None  # its records alone would take much memory
        try:
            # (a stack of 0-d samples would hand out scalars, not 0-d arrays)
            if not schema.variable_shape and schema.shape:
                dense = self._dense_table(aset, base.key_table(), schema, left)
                if dense is not None:
                    return dense
            flat = base.flat()
            found, e = self._lookup_dedup(list(flat.values()))
            if not found.all() or (e["ioff"] == LARGE_IOFF).any():
                return None
            kinds, counts = np.unique(e["kind"], return_counts=True)
            size = sum(
                self.reader.kind_nbytes(k) * c
                for k, c in zip(kinds.tolist(), counts.tolist(), strict=True)
            )
            if size > left:
                return None
            arrays = self.view.check_payloads(aset, self.reader.gather(e))
        except (IntegrityError, ValueError):  # CorruptRecordError is a ValueError
            return None
        self._rows_bytes += size
        table = self.rows[aset] = dict(zip(flat, arrays, strict=True))
        self.int_rows[aset] = int_keyed(table)
        return table

    def _dense_table(
        self, aset: str, keys: KeyTable, schema: ArraysetSchema, left: int
    ) -> Mapping[str, np.ndarray] | None:
        """:meth:`row_table` of an arrayset whose keys are the ints ``0 ..
        n-1``, of payloads all of its schema's kind: one stacked array, in
        key order, read straight into place (:meth:`PackReader.gather_into`),
        whose rows are found by key with no dict (``int_rows`` is that array:
        no view of each row made before it is read).
        None for other arraysets (the general path builds theirs)."""
        order = keys.dense_order()
        if order is None:
            return None
        n = len(order)
        size = n * schema.dtype.itemsize * int(np.prod(schema.shape, dtype=np.int64))
        if size > left:
            return None
        e = self._table_entries(aset, keys, order)
        if e is None:
            return None
        stack = empty_huge((n, *schema.shape), schema.dtype)  # (few page faults)
        if not self.reader.gather_into(e, stack):
            return None  # large payloads or another kind: the general path
        self._rows_bytes += size
        self.int_rows[aset] = stack
        table = self.rows[aset] = DenseRows(stack)
        return table

    def _table_entries(self, aset: str, keys: KeyTable, pos: np.ndarray) -> np.ndarray | None:
        """Index entries of the digests at positions ``pos`` of the key table
        of ``aset``'s samples tree, in that order (or their places, see
        :func:`.store.reader.take_places`: what :meth:`PackReader.gather_into`
        reads); None when some is absent.
        For most of the table, through the places kept for the tree
        (:mod:`.records.entry_hints`: no index search in a later process)."""
        if len(pos) * 2 >= len(keys):
            base = self.view.base_samples(aset)
            oid = base.oid if base is not None else None
            return entry_hints.table_places(self.reader, self.view.base.repo, oid, keys, pos)
        joined = np.frombuffer(keys.digests, f"V{DIGEST_SIZE}")[pos].tobytes()
        found, e = self.reader.lookup_joined(joined)
        return e if found.all() else None

    def _keep(self, digests: Sequence[bytes], found: np.ndarray, e: np.ndarray) -> None:
        idx = np.flatnonzero(found)
        if len(idx):
            sub = e[idx]
            self._ents.update(
                zip(
                    [digests[i] for i in idx.tolist()],
                    zip(
                        sub["block"].tolist(),
                        sub["ioff"].tolist(),
                        sub["kind"].tolist(),
                        strict=True,
                    ),
                    strict=True,
                )
            )

    def _read_located(self, aset: str, enc: str, digest: bytes) -> np.ndarray:
        loc = self._resolve(aset, enc, digest)
        try:
            return self.reader.read(loc)
        except IntegrityError as exc:
            err: object = exc
            # gc may have moved the payload to a new pack since it was located:
            # locate it afresh, and only a failure at its current place is damage
            self.locs.pop(digest, None)
            try:
                self.reader.refresh()
                fresh = self.reader.locate(digest)
            except IntegrityError as exc2:
                raise _damaged(aset, enc, digest, exc2) from None
            if fresh is not None and fresh != loc:
                self.locs[digest] = fresh
                try:
                    return self.reader.read(fresh)
                except IntegrityError as exc2:
                    err = exc2
            elif fresh is None:
                self._absent(aset, enc, digest)
            raise _damaged(aset, enc, digest, err) from None

    def read_many(self, aset: str, pairs: Sequence[tuple[str, bytes]]) -> list[np.ndarray]:
        """The arrays of ``(encoded key, digest)`` pairs, in order."""
        return self.read_batch(aset, [d for _, d in pairs], [e for e, _ in pairs])

    def read_batch(
        self, aset: str, digests: Sequence[bytes], encs: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        """The arrays of ``digests`` (of samples ``encs``, found when needed)."""
        try:
            return self.view.check_payloads(aset, self._read_many(aset, digests, encs))
        except IntegrityError:
            # one at a time: re-locates moved payloads, names the damaged sample
            encs = encs if encs is not None else self._encs_of(aset, digests)
            return [self.read(aset, e, d) for e, d in zip(encs, digests, strict=True)]

    def read_into(
        self, aset: str, digests: Sequence[bytes], encs: Sequence[str], out: np.ndarray
    ) -> None:
        """Write the arrays of ``digests`` (of samples ``encs``) into the rows
        of ``out``, in order: straight from the blocks when every payload is
        small and of a row's kind, else through :meth:`read_batch`.

        Raises
        ------
        ValueError
            If a sample's shape or dtype differs from a row of ``out``.
        """
        if self.writer is not None and self.writer.has_pending():
            self.writer.flush()
        found, e = self._lookup_dedup(digests)
        if found.all():
            try:
                done = self.reader.gather_into(e, out)
            except IntegrityError:
                done = False  # the careful path below re-locates or reports it
            if done:
                if len(out):
                    self.view.check_payload(aset, encs[0], out[0])  # one kind for all
                return
        arrays = self.read_batch(aset, digests, encs)
        row_shape = out.shape[1:]
        for i, a in enumerate(arrays):
            if a.shape != row_shape or a.dtype != out.dtype:
                raise ValueError(
                    f"sample {aset}[{decode_key(encs[i])!r}] is {a.shape} {a.dtype}, "
                    f"a row of out {row_shape} {out.dtype}"
                )
            out[i] = a

    def read_range_into(self, aset: str, keys: range, out: np.ndarray) -> bool:
        """:meth:`read_into` of the int keys ``keys`` (a range of keys >= 0) of
        a read checkout's arrayset keyed ``0 .. n-1``, with no key encoded nor
        looked up one by one: their digests are taken from the records'
        :class:`KeyTable` by position. False (``out`` untouched) when it does
        not apply (a write checkout, other keys, a key past the end, absent
        or large payloads): read them with :meth:`read_into`."""
        if self.writer is not None or not len(keys) or keys.start < 0 or keys.step < 1:
            return False
        base = self.view.base_samples(aset)
        if base is None:
            return False
        table = base.key_table()
        order = table.dense_order()
        if order is None or keys[-1] >= len(order):
            return False
        pos = order[keys.start : keys.stop : keys.step]
        e = self._table_entries(aset, table, pos)
        if e is None:
            return False
        try:
            done = self.reader.gather_into(e, out)
        except IntegrityError:
            return False  # the careful path re-locates or reports it
        if done:
            self.view.check_payload(aset, f"i:{keys[0]}", out[0])  # one kind for all
        return done

    def _lookup_dedup(self, digests: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`PackReader.lookup`, each distinct digest searched once."""
        n = len(digests)
        if n > 4096:  # a strided probe says whether de-duplicating can pay
            probe = digests[:: n // 1024]
            if len(set(probe)) * 4 > len(probe) * 3:
                return self.reader.lookup(digests)
        uniq = dict.fromkeys(digests)
        if len(uniq) * 2 > len(digests):
            return self.reader.lookup(digests)
        keys = list(uniq)
        found, e = self.reader.lookup(keys)
        pos = {d: i for i, d in enumerate(keys)}
        inv = np.fromiter(map(pos.__getitem__, digests), np.intp, len(digests))
        return found[inv], np.take(e, inv)  # a plain take: cheaper than e[inv]

    def _encs_of(self, aset: str, digests: Sequence[bytes]) -> list[str]:
        """Encoded keys of samples holding ``digests`` (for error messages)."""
        by_digest: dict[bytes, str] = {}
        for e, d in self.view.iter_items(aset):
            by_digest.setdefault(d, e)
        return [by_digest.get(d, "s:?") for d in digests]

    def _read_many(
        self, aset: str, digests: Sequence[bytes], encs: Sequence[str] | None
    ) -> list[np.ndarray]:
        """All of ``digests`` through one vectorised lookup and one gather."""
        if self.writer is not None and self.writer.has_pending():
            self.writer.flush()
        found, e = self._lookup_dedup(digests)
        if not found.all():
            absent = list(dict.fromkeys(digests[i] for i in np.flatnonzero(~found).tolist()))
            if self.fetcher is not None:
                self.fetcher(absent, self._bound(aset))
                found, e = self.reader.lookup(digests)
            if not found.all():
                if encs is None:
                    encs = self._encs_of(aset, digests)
                i = int(np.flatnonzero(~found)[0])
                self._resolve(aset, encs[i], digests[i])  # raises the error that fits
                return self._read_many_located(aset, list(zip(encs, digests, strict=True)))
        return self.reader.gather(e)

    def _read_many_located(self, aset: str, pairs: Sequence[tuple[str, bytes]]) -> list[np.ndarray]:
        todo = [d for _, d in pairs if d not in self.locs]
        if todo:
            if self.writer is not None:
                for d in todo:
                    loc = self.writer.pending_location(d)
                    if loc is not None:
                        self.locs[d] = loc
                todo = [d for d in todo if d not in self.locs]
            if todo:
                self.locs.update(self.reader.locate_many(todo))
            absent = [d for d in todo if d not in self.locs]
            if absent and self.fetcher is not None:
                self.fetcher(absent, self._bound(aset))
                self.locs.update(self.reader.locate_many(absent))
        locs = [self._resolve(aset, e, d) for e, d in pairs]
        return self.reader.read_many(locs)

    def missing(self, digests: Iterable[bytes]) -> set[bytes]:
        want = [d for d in digests if d not in self._ents and d not in self.locs]
        if self.writer is not None:
            want = [d for d in want if d not in self.writer.known]
        found, e = self.reader.lookup(want)
        self._keep(want, found, e)
        return {want[i] for i in np.flatnonzero(~found).tolist()}


__all__ = ["PayloadAccess"]
